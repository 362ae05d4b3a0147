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
// one status byte and one length-prefixed response per stream.
func Handle(h host.Host, id protocol.ID, lim StreamLimits, log *slog.Logger, fn Handler) {
	lim = lim.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	h.SetStreamHandler(id, func(s network.Stream) {
		defer s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), lim.Timeout)
		defer cancel()
		_ = s.SetDeadline(time.Now().Add(lim.Timeout))
		from := s.Conn().RemotePeer()
		req, err := readFrame(bufio.NewReader(s), lim.MaxRequest)
		var resp []byte
		herr := err
		switch {
		case errors.Is(err, ErrTooLarge):
			// Say why, so an honest peer with a bug can tell.
			log.Debug("request over limit", "protocol", id, "peer_id", from, "err", err)
		case err != nil:
			log.Debug("bad request", "protocol", id, "peer_id", from, "err", err)
			s.Reset()
			return
		default:
			resp, herr = fn(ctx, from, req)
		}
		status := statusOK
		if herr != nil {
			status, resp = statusErr, []byte(herr.Error())
		}
		_, werr := s.Write([]byte{status})
		if werr == nil {
			werr = writeFrame(s, resp)
		}
		if werr != nil {
			log.Debug("write response", "protocol", id, "peer_id", from, "err", werr)
			s.Reset()
			return
		}
		// Closing with unread bytes resets the stream, which would throw
		// away the answer; read what is left, but no more than a request.
		_ = s.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(s, int64(lim.MaxRequest)))
	})
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
	resp, err := readFrame(r, lim.MaxResponse)
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

func readFrame(r *bufio.Reader, max int) ([]byte, error) {
	size, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, fmt.Errorf("frame length: %w", err)
	}
	if size > uint64(max) {
		return nil, fmt.Errorf("frame of %d bytes over the %d limit: %w", size, max, ErrTooLarge)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("frame body: %w", err)
	}
	return b, nil
}
