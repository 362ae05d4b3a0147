package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// StreamLimits bound one request/response exchange. The zero value means a
// 1 MiB request, a 1 MiB response and a 10 s deadline.
type StreamLimits struct {
	// MaxRequest caps the request in bytes; zero means 1 MiB.
	MaxRequest int
	// MaxResponse caps the response in bytes; zero means 1 MiB.
	MaxResponse int
	// Timeout bounds the whole exchange when the context has no earlier
	// deadline; zero means 10 s.
	Timeout time.Duration
	// Memory caps the bytes of the requests being served at once, all
	// peers together: the memory limit of the protocol's service
	// (HandleStream). Each request holds its size from when its length is
	// read until it is answered; one that finds no room is answered with
	// an error. Zero means 64 requests of MaxRequest, and at least 1 MiB.
	// Only the serving side uses it.
	Memory int64
}

func (l StreamLimits) withDefaults() StreamLimits {
	if l.MaxRequest == 0 {
		l.MaxRequest = 1 << 20
	}
	if l.MaxResponse == 0 {
		l.MaxResponse = 1 << 20
	}
	if l.Timeout == 0 {
		l.Timeout = 10 * time.Second
	}
	if l.Memory == 0 {
		l.Memory = max(64*int64(l.MaxRequest), 1<<20)
	}
	return l
}

// ErrTooLarge is returned when a frame is over its limit.
var ErrTooLarge = errors.New("message too large")

// RemoteError is an error that the handler on the other side returned.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return "remote: " + e.Msg }

// Handler answers one request from a peer. An error is sent back as a
// RemoteError, so it must not leak anything private.
type Handler func(ctx context.Context, from peer.ID, req []byte) ([]byte, error)

// A response frame starts with a status byte.
const (
	statusOK  byte = 0
	statusErr byte = 1
)

// Handle serves a request/response protocol: one length-prefixed request,
// one status byte and one length-prefixed response per stream, each stream
// in the protocol's service (HandleStream) with lim.Memory.
func Handle(h host.Host, id protocol.ID, lim StreamLimits, log *slog.Logger, fn Handler) {
	lim = lim.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	HandleStream(h, id, lim.Memory, log, func(s network.Stream) { serve(s, id, lim, log, fn) })
}

// serve answers the one request on s.
func serve(s network.Stream, id protocol.ID, lim StreamLimits, log *slog.Logger, fn Handler) {
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), lim.Timeout)
	defer cancel()
	_ = s.SetDeadline(time.Now().Add(lim.Timeout))
	from := s.Conn().RemotePeer()
	release := func() {}
	defer func() { release() }()
	req, err := readFrame(bufio.NewReader(s), lim.MaxRequest, func(n int) error {
		r, err := Reserve(s, n)
		if err == nil {
			release = r
		}
		return err
	})
	var resp []byte
	herr := err
	switch {
	case errors.Is(err, ErrTooLarge), errors.Is(err, network.ErrResourceLimitExceeded):
		// Say why, so an honest peer with a bug (or one that came at a
		// busy moment) can tell.
		log.Debug("request over limit", "protocol", id, "peer_id", from, "err", err)
	case err != nil:
		log.Debug("bad request", "protocol", id, "peer_id", from, "err", err)
		s.Reset()
		return
	default:
		resp, herr = fn(ctx, from, req)
	}
	if err := respond(s, resp, herr); err != nil {
		log.Debug("write response", "protocol", id, "peer_id", from, "err", err)
		s.Reset()
		return
	}
	// Closing with unread bytes resets the stream, which would throw
	// away the answer; read what is left, but no more than a request.
	_ = s.CloseWrite()
	_, _ = io.Copy(io.Discard, io.LimitReader(s, int64(lim.MaxRequest)))
}

// respond writes the status byte and the response, or the handler's
// error in its place.
func respond(w io.Writer, resp []byte, herr error) error {
	status := statusOK
	if herr != nil {
		status, resp = statusErr, []byte(herr.Error())
	}
	if _, err := w.Write([]byte{status}); err != nil {
		return err
	}
	return writeFrame(w, resp)
}

// Request opens a stream to p, sends req and returns the response.
func Request(ctx context.Context, h host.Host, p peer.ID, id protocol.ID, req []byte, lim StreamLimits) ([]byte, error) {
	lim = lim.withDefaults()
	if len(req) > lim.MaxRequest {
		return nil, fmt.Errorf("request %s: %d bytes: %w", id, len(req), ErrTooLarge)
	}
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()
	s, err := h.NewStream(ctx, p, id)
	if err != nil {
		return nil, fmt.Errorf("open %s to %s: %w", id, p, err)
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	// Closing the stream when ctx ends unblocks reads and writes at once.
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()

	if err := writeFrame(s, req); err != nil {
		return nil, fmt.Errorf("send %s: %w", id, ctxErr(ctx, err))
	}
	if err := s.CloseWrite(); err != nil {
		return nil, fmt.Errorf("send %s: %w", id, ctxErr(ctx, err))
	}
	r := bufio.NewReader(s)
	status, err := r.ReadByte()
	if err != nil {
		return nil, fmt.Errorf("read %s status: %w", id, ctxErr(ctx, err))
	}
	resp, err := readFrame(r, lim.MaxResponse, nil)
	if err != nil {
		return nil, fmt.Errorf("read %s response: %w", id, ctxErr(ctx, err))
	}
	switch status {
	case statusOK:
		return resp, nil
	case statusErr:
		return nil, &RemoteError{Msg: string(resp)}
	default:
		return nil, fmt.Errorf("read %s: unknown status %d", id, status)
	}
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

func writeFrame(w io.Writer, b []byte) error {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	if _, err := w.Write(hdr[:n]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// readFrame reads one frame of at most max bytes; reserve, when set, is
// asked for the frame's bytes before they are allocated.
func readFrame(r *bufio.Reader, max int, reserve func(int) error) ([]byte, error) {
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("frame length: %w", err)
	}
	if size > uint64(max) {
		return nil, fmt.Errorf("frame of %d bytes over the %d limit: %w", size, max, ErrTooLarge)
	}
	if reserve != nil {
		if err := reserve(int(size)); err != nil {
			return nil, fmt.Errorf("frame of %d bytes: %w", size, err)
		}
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("frame body: %w", err)
	}
	return b, nil
}
