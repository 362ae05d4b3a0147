package receipt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ServerConfig is the serving side. The zero value of each field but
// Store is a working default.
type ServerConfig struct {
	// Store holds the receipts served: those this node signed; required,
	// and its Self must be the host's ID.
	Store *Store
	// Limits bound the requests per asking peer and in all.
	Limits Limits
	// Now is the clock of the rate limits; zero: time.Now.
	Now func() time.Time
	// Log is the server's logger; zero: slog.Default().
	Log *slog.Logger
}

// Server answers /aixblock/<network>/receipts/1: the receipts this node
// signed about the provider asked, newest first.
type Server struct {
	h       host.Host
	network string
	cfg     ServerConfig
	log     *slog.Logger

	mu     sync.Mutex
	limits *limiter
}

// NewServer serves the receipts protocol on h under network's prefix.
func NewServer(h host.Host, network string, cfg ServerConfig) (*Server, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("receipt: server without a store")
	case cfg.Store.cfg.Self != h.ID():
		return nil, fmt.Errorf("receipt: server on %s with the store of %s", h.ID(), cfg.Store.cfg.Self)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Server{h: h, network: network, cfg: cfg, log: cfg.Log.With("component", "receipt"), limits: newLimiter(cfg.Limits, cfg.Now())}
	p2p.Handle(h, p2p.ProtocolID(network, protocolName), limits, s.log, s.handle)
	return s, nil
}

// Close stops serving.
func (s *Server) Close() error {
	s.h.RemoveStreamHandler(p2p.ProtocolID(s.network, protocolName))
	return nil
}

// handle answers one request, or refuses it for now.
func (s *Server) handle(_ context.Context, from peer.ID, raw []byte) ([]byte, error) {
	req, err := decodeRequest(raw)
	if err != nil {
		return nil, err
	}
	prov, err := peer.Decode(req.Provider)
	if err != nil {
		return nil, fmt.Errorf("%w: provider %q: %v", ErrInvalid, clip(req.Provider), err)
	}
	s.mu.Lock()
	why, retry := s.limits.Admit(from, s.cfg.Now())
	s.mu.Unlock()
	if why != "" {
		s.log.Debug("receipts request refused", "peer_id", from, "reason", why)
		return encode(reply{V: Version, Refused: why, RetryS: uint32(retry / time.Second)})
	}
	return encode(reply{V: Version, Receipts: s.cfg.Store.Served(prov)})
}

// FetchReceipts asks provider for the receipts it signed about itself
// (Fetch, on this machine's clock).
func FetchReceipts(ctx context.Context, h host.Host, network string, provider peer.ID) ([]Signed, error) {
	return Fetch(ctx, h, network, provider, provider, time.Now())
}

// Fetch asks from for the receipts it signed about provider (a provider
// about itself, a requester about a provider it dealt with) and returns
// those that verify, are of network, not dated ahead of now, about
// provider and signed by from. The error says why the request failed
// (ErrRateLimited: from refused for now), or why each other receipt was
// refused; the receipts that passed come with it.
func Fetch(ctx context.Context, h host.Host, network string, from, provider peer.ID, now time.Time) ([]Signed, error) {
	req, err := encode(request{V: Version, Provider: provider.String()})
	if err != nil {
		return nil, err
	}
	out, err := p2p.Request(ctx, h, from, p2p.ProtocolID(network, protocolName), req, limits)
	if err != nil {
		return nil, fmt.Errorf("receipt: receipts of %s from %s: %w", provider, from, err)
	}
	rep, err := decodeReply(out)
	if err != nil {
		return nil, fmt.Errorf("receipt: receipts of %s from %s: %w", provider, from, err)
	}
	if rep.Refused != "" {
		return nil, fmt.Errorf("receipt: receipts of %s from %s: %w: %s (retry in %ds)", provider, from, ErrRateLimited, rep.Refused, rep.RetryS)
	}
	var got []Signed
	var refused []error
	for i, raw := range rep.Receipts {
		r, err := checkServed(raw, network, from, provider, now)
		if err != nil {
			refused = append(refused, fmt.Errorf("receipt %d: %w", i, err))
			continue
		}
		got = append(got, r)
	}
	if len(refused) > 0 {
		return got, fmt.Errorf("receipt: receipts of %s from %s: %d of %d refused: %w", provider, from, len(refused), len(rep.Receipts), errors.Join(refused...))
	}
	return got, nil
}

// checkServed decodes and checks one receipt from's reply carried.
func checkServed(raw []byte, network string, from, provider peer.ID, now time.Time) (Signed, error) {
	r, err := Decode(raw)
	if err != nil {
		return Signed{}, err
	}
	if err := r.Check(network, now); err != nil {
		return Signed{}, err
	}
	switch {
	case r.Provider != provider.String():
		return Signed{}, fmt.Errorf("%w: deal %s: about %s, not %s", ErrInvalid, r.Deal, r.Provider, provider)
	case !r.SignedBy(from):
		return Signed{}, fmt.Errorf("%w: deal %s: served by %s, which did not sign it", ErrInvalid, r.Deal, from)
	}
	return r, nil
}
