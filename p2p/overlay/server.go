package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// ProtocolName is the port protocol under the network's prefix.
const ProtocolName = "port/1"

// Protocol is the port protocol's ID on a network: /aixblock/<network>/port/1.
func Protocol(network string) protocol.ID {
	if network == "" {
		network = p2p.DefaultNetwork
	}
	return p2p.ProtocolID(network, ProtocolName)
}

// Dialer connects to one port of one job.
type Dialer func(ctx context.Context) (net.Conn, error)

// Authorizer decides whether peer from may reach port of jobID and, if so,
// returns how to connect to it. Its error is sent to the peer as the
// reason, so it must say why without saying anything private.
type Authorizer func(ctx context.Context, from peer.ID, jobID string, port int) (Dialer, error)

// ServerConfig configures a Server. Authorize is required.
type ServerConfig struct {
	// Network names the network; zero means p2p.DefaultNetwork.
	Network   string
	Authorize Authorizer
	// HeaderTimeout bounds the wait for a stream's header; zero means 10 s.
	HeaderTimeout time.Duration
	// DialTimeout bounds authorizing and connecting to the port; zero means 10 s.
	DialTimeout time.Duration
	// MaxStreams caps the authorized streams open at once; zero means
	// 1024. MaxPerPeer caps one peer's (zero: MaxStreams/4), so one
	// requester cannot lock the others out. The port protocol's
	// resource-manager service (p2p.HandleStream) has room for the copy
	// buffers of MaxStreams streams (pumpMemory each).
	MaxStreams int
	MaxPerPeer int
	// MaxPendingPerPeer caps one peer's streams that have not been
	// authorized yet (zero: 64): a stranger's silent streams cannot fill
	// the provider, however many it opens.
	MaxPendingPerPeer int
	// Logger is the parent logger; nil means slog.Default().
	Logger *slog.Logger
}

// Server is the provider's side: it answers port streams.
type Server struct {
	h   host.Host
	id  protocol.ID
	cfg ServerConfig
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	open   map[*session]struct{}
	closed bool
}

// session is one accepted stream; cancel ends it.
type session struct {
	peer       peer.ID
	authorized bool   // counted against MaxStreams once its port is dialed
	jobID      string // empty until the header is read
	ctx        context.Context
	cancel     context.CancelFunc
}

// NewServer registers the port protocol's handler on h.
func NewServer(h host.Host, cfg ServerConfig) (*Server, error) {
	if cfg.Authorize == nil {
		return nil, errors.New("overlay: ServerConfig.Authorize is required")
	}
	if cfg.Network != "" {
		if err := p2p.ValidateNetwork(cfg.Network); err != nil {
			return nil, fmt.Errorf("overlay: %w", err)
		}
	}
	if cfg.HeaderTimeout == 0 {
		cfg.HeaderTimeout = 3 * time.Second
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = 1024
	}
	if cfg.MaxPerPeer == 0 {
		cfg.MaxPerPeer = max(cfg.MaxStreams/4, 1)
	}
	if cfg.MaxPendingPerPeer == 0 {
		cfg.MaxPendingPerPeer = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{h: h, id: Protocol(cfg.Network), cfg: cfg, log: cfg.Logger.With("component", "overlay"),
		ctx: ctx, cancel: cancel, open: map[*session]struct{}{}}
	p2p.HandleStream(h, s.id, int64(cfg.MaxStreams)*pumpMemory, s.log, s.handle)
	return s, nil
}

// Open is the number of streams open now (being carried, or waiting for
// their header or their port).
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// CloseJob ends every open stream to jobID's ports (the job ended) and
// returns how many it ended. New streams are up to the Authorizer.
func (s *Server) CloseJob(jobID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for ss := range s.open {
		if ss.jobID == jobID && jobID != "" {
			ss.cancel()
			n++
		}
	}
	return n
}

// Close removes the handler and ends every open stream.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.h.RemoveStreamHandler(s.id)
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Server) handle(st network.Stream) {
	from := st.Conn().RemotePeer()
	log := s.log.With("peer_id", from)
	ss, err := s.admit(from)
	if err != nil {
		log.Info("port stream refused", "reason", err)
		refuse(st, err.Error())
		return
	}
	defer s.wg.Done()
	defer s.drop(ss)

	_ = st.SetReadDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	hdr, err := readHeader(st)
	if err != nil {
		// Strangers' garbage: not worth more than a debug line each.
		log.Debug("port stream refused", "reason", err)
		refuse(st, err.Error())
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	log = log.With("job_id", hdr.JobID, "port", hdr.Port)
	s.mu.Lock()
	ss.jobID = hdr.JobID
	s.mu.Unlock()

	dctx, dcancel := context.WithTimeout(ss.ctx, s.cfg.DialTimeout)
	conn, err := s.dial(dctx, from, hdr)
	dcancel()
	release := func() {}
	if err == nil {
		if err = s.authorized(ss); err == nil {
			release, err = p2p.Reserve(st, pumpMemory)
		}
		if err != nil {
			conn.Close()
		}
	}
	if err != nil {
		log.Info("port stream refused", "reason", err)
		refuse(st, err.Error())
		return
	}
	defer release()
	_ = st.SetWriteDeadline(time.Now().Add(s.cfg.HeaderTimeout))
	if _, err := st.Write([]byte("ok\n")); err != nil {
		st.Reset()
		conn.Close()
		return
	}
	_ = st.SetWriteDeadline(time.Time{})
	log.Debug("port stream open")
	if err := pump(ss.ctx, st, conn); err != nil && ss.ctx.Err() == nil {
		log.Debug("port stream ended", "err", err)
	}
}

// admit counts a stream in while its header and its authorization are
// to come (at most MaxPendingPerPeer a peer, each for HeaderTimeout), or
// says why not.
func (s *Server) admit(from peer.ID) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("shutting down")
	}
	pending := 0
	for ss := range s.open {
		if ss.peer == from && !ss.authorized {
			pending++
		}
	}
	if pending >= s.cfg.MaxPendingPerPeer {
		return nil, fmt.Errorf("%d port streams of yours are waiting for their header or port: finish those first", pending)
	}
	ss := &session{peer: from}
	ss.ctx, ss.cancel = context.WithCancel(s.ctx)
	s.open[ss] = struct{}{}
	s.wg.Add(1)
	return ss, nil
}

// authorized moves an admitted stream into the carried ones, within
// MaxStreams and the peer's MaxPerPeer.
func (s *Server) authorized(ss *session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, mine := 0, 0
	for o := range s.open {
		if o.authorized {
			all++
			if o.peer == ss.peer {
				mine++
			}
		}
	}
	switch {
	case all >= s.cfg.MaxStreams:
		return fmt.Errorf("%d port streams open, the most this provider carries", all)
	case mine >= s.cfg.MaxPerPeer:
		return fmt.Errorf("%d port streams of yours open, the most one peer may have", mine)
	}
	ss.authorized = true
	return nil
}

func (s *Server) drop(ss *session) {
	ss.cancel()
	s.mu.Lock()
	delete(s.open, ss)
	s.mu.Unlock()
}

func (s *Server) dial(ctx context.Context, from peer.ID, hdr Header) (net.Conn, error) {
	d, err := s.cfg.Authorize(ctx, from, hdr.JobID, hdr.Port)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, errors.New("no way to the port")
	}
	c, err := d(ctx)
	if err != nil {
		// The dial error names this host's sockets; the peer needs less.
		return nil, fmt.Errorf("port %d of job %s is not answering", hdr.Port, hdr.JobID)
	}
	return c, nil
}

// refuse answers one line saying why and closes the stream.
func refuse(st network.Stream, reason string) {
	reason = truncate(reason, MaxReplyBytes-len("refused: \n"))
	_ = st.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := st.Write([]byte("refused: " + reason + "\n")); err != nil {
		st.Reset()
		return
	}
	_ = st.CloseWrite()
	// Closing with unread bytes would reset and lose the reply; read a
	// little of what is left, bounded in bytes and time.
	_ = st.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 512)
	for range 8 {
		if _, err := st.Read(buf); err != nil {
			break
		}
	}
	st.Close()
}
