package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// ForwardOptions tune a Forward; the zero value works.
type ForwardOptions struct {
	// Network names the network; zero means p2p.DefaultNetwork.
	Network string
	// SetupTimeout bounds opening a connection's stream and hearing the
	// provider's answer; zero means 10 s.
	SetupTimeout time.Duration
	// Logger is the parent logger; nil means slog.Default().
	Logger *slog.Logger
}

// RefusedError is the provider's reason for refusing a stream.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "provider refused: " + e.Reason }

// ForwardStats is what a Forwarder has done so far.
type ForwardStats struct {
	Accepted int // local connections accepted
	Open     int // carried now
	Failed   int // ended before they were carried (refused, unreachable)
	// LastError is the latest failure, and when it was.
	LastError   string
	LastErrorAt time.Time
}

// Forwarder publishes one port of a job on a local address.
type Forwarder struct {
	h        host.Host
	provider peer.ID
	hdr      []byte
	proto    protocol.ID
	opts     ForwardOptions
	log      *slog.Logger
	ln       net.Listener
	tag      string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
	once   sync.Once

	mu    sync.Mutex
	stats ForwardStats
}

// Forward listens on listenAddr and carries every connection it accepts
// to port of jobID on provider, each over its own stream. listenAddr is
// HOST:PORT; an empty host means 127.0.0.1, not every interface, and
// port 0 picks a free one (see Addr). "" means 127.0.0.1:0. It ends when
// ctx does or on Close.
func Forward(ctx context.Context, h host.Host, provider peer.ID, jobID string, port int, listenAddr string, opts ForwardOptions) (*Forwarder, error) {
	hdr := Header{Version: Version, JobID: jobID, Port: port}
	if err := hdr.validate(); err != nil {
		return nil, err
	}
	frame, err := encodeHeader(hdr)
	if err != nil {
		return nil, err
	}
	addr, err := localAddr(listenAddr)
	if err != nil {
		return nil, err
	}
	if opts.SetupTimeout == 0 {
		opts.SetupTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("forward: listen %s: %w", addr, err)
	}
	f := &Forwarder{h: h, provider: provider, hdr: frame, proto: Protocol(opts.Network), opts: opts, ln: ln,
		log:  opts.Logger.With("component", "overlay", "job_id", jobID, "port", port, "peer_id", provider, "local", ln.Addr().String()),
		tag:  fmt.Sprintf("overlay-forward-%s-%d-%s", jobID, port, ln.Addr()),
		done: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	// The connection manager would trim an idle-looking connection that
	// carries a long-lived forward.
	h.ConnManager().Protect(provider, f.tag)
	stop := context.AfterFunc(ctx, func() { f.Close() })
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer stop()
		f.accept()
	}()
	f.log.Info("forwarding")
	return f, nil
}

// localAddr defaults the host to loopback: a forward is published to the
// requester's own machine unless it names another address.
func localAddr(s string) (string, error) {
	if s == "" {
		return "127.0.0.1:0", nil
	}
	if !strings.Contains(s, ":") {
		s = ":" + s
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("forward: listen address %q: want [HOST:]PORT", s)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// Addr is the local address being listened on.
func (f *Forwarder) Addr() net.Addr { return f.ln.Addr() }

// Done is closed once the forward has ended and every connection with it.
func (f *Forwarder) Done() <-chan struct{} { return f.done }

// Stats is a snapshot of what the forward has done.
func (f *Forwarder) Stats() ForwardStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Close stops listening and ends every open connection.
func (f *Forwarder) Close() error {
	f.once.Do(func() {
		f.cancel()
		f.ln.Close()
		go func() {
			f.wg.Wait()
			f.h.ConnManager().Unprotect(f.provider, f.tag)
			f.log.Info("forward closed")
			close(f.done)
		}()
	})
	<-f.done
	return nil
}

func (f *Forwarder) accept() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if f.ctx.Err() == nil {
				f.fail(fmt.Errorf("accept: %w", err))
				go f.Close()
			}
			return
		}
		f.mu.Lock()
		f.stats.Accepted++
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.carry(c)
		}()
	}
}

// carry opens the connection's stream, waits for the provider's "ok" and
// pumps. A refusal reaches the local client as a closed connection; the
// reason is logged and kept in Stats.
func (f *Forwarder) carry(c net.Conn) {
	stop := context.AfterFunc(f.ctx, func() { c.Close() })
	s, err := f.open()
	stop()
	if err != nil {
		// Counted before the client sees its connection close: whoever
		// reads the stats after that sees why.
		if f.ctx.Err() == nil { // a Close mid-setup is no failure
			f.fail(err)
		}
		c.Close()
		return
	}
	f.mu.Lock()
	f.stats.Open++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.stats.Open--
		f.mu.Unlock()
	}()
	if err := pump(f.ctx, s, c); err != nil && f.ctx.Err() == nil {
		f.log.Debug("forwarded connection ended", "err", err)
	}
}

func (f *Forwarder) open() (network.Stream, error) {
	ctx, cancel := context.WithTimeout(f.ctx, f.opts.SetupTimeout)
	defer cancel()
	s, err := f.h.NewStream(ctx, f.provider, f.proto)
	if err != nil {
		return nil, fmt.Errorf("open a stream to the provider: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	if _, err := s.Write(f.hdr); err != nil {
		s.Reset()
		return nil, fmt.Errorf("send the port header: %w", err)
	}
	line, err := readLine(s, MaxReplyBytes)
	switch {
	case err != nil && ctx.Err() != nil:
		err = fmt.Errorf("no answer from the provider within %s", f.opts.SetupTimeout)
	case err != nil:
		err = fmt.Errorf("read the provider's answer: %w", err)
	case line == "ok":
	case strings.HasPrefix(line, "refused: "):
		err = &RefusedError{Reason: truncate(strings.TrimPrefix(line, "refused: "), MaxReplyBytes)}
	default:
		err = fmt.Errorf("provider answered %q", truncate(line, 80))
	}
	if !stop() || err != nil {
		s.Reset()
		if err == nil {
			err = errors.New("setup timed out")
		}
		return nil, err
	}
	return s, nil
}

func (f *Forwarder) fail(err error) {
	f.log.Warn("forwarded connection failed", "err", err)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Failed++
	f.stats.LastError = err.Error()
	f.stats.LastErrorAt = time.Now()
}
