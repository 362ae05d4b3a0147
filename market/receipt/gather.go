package receipt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// GatherConfig is whom a Gatherer asks and how often. The zero value of
// each field but Host and Store is a working default.
type GatherConfig struct {
	// Host asks; Store keeps what passes (its network is the protocol's).
	Host  host.Host
	Store *Store
	// Peers are whom to ask about a provider besides the provider
	// itself: the peers this node dealt with, best first; nil: the
	// store's (Store.Dealt).
	Peers func() []peer.ID
	// MaxPeers is the most of Peers asked about one provider; zero: 8.
	MaxPeers int
	// Every is how long what was gathered about a provider stands before
	// it is asked again; zero: 10 minutes.
	Every time.Duration
	// Timeout bounds one gathering; zero: 10 s.
	Timeout time.Duration
	// Limits bound the requests sent to each peer and in all, as a
	// Server bounds those it answers (the same defaults): a request
	// beyond them is not sent.
	Limits Limits
	// Now is the clock; zero: time.Now.
	Now func() time.Time
	// Log is the gatherer's logger; zero: slog.Default().
	Log *slog.Logger
}

// Gatherer fetches the receipts about a provider from the provider and
// from the peers this node dealt with, so that receipts others signed
// count in this node's View: at most MaxPeers asked at a time, each
// within its rate limit, a provider at most once every Every.
type Gatherer struct {
	cfg GatherConfig
	log *slog.Logger

	mu      sync.Mutex
	limits  *limiter
	last    map[peer.ID]time.Time // when a provider was last gathered
	running map[peer.ID]chan struct{}

	queue  chan peer.ID
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// maxRemembered bounds the providers whose last gathering is
// remembered; beyond it, those gathered longest ago are forgotten.
const maxRemembered = 4096

// NewGatherer starts a gatherer, with a worker for Soon; Close stops it.
func NewGatherer(cfg GatherConfig) (*Gatherer, error) {
	if cfg.Host == nil || cfg.Store == nil {
		return nil, errors.New("receipt: gatherer without a host or a store")
	}
	if cfg.Peers == nil {
		cfg.Peers = cfg.Store.Dealt
	}
	if cfg.MaxPeers == 0 {
		cfg.MaxPeers = 8
	}
	if cfg.Every == 0 {
		cfg.Every = 10 * time.Minute
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gatherer{cfg: cfg, log: cfg.Log.With("component", "receipt"), limits: newLimiter(cfg.Limits, cfg.Now()),
		last: map[peer.ID]time.Time{}, running: map[peer.ID]chan struct{}{}, queue: make(chan peer.ID, 64), cancel: cancel}
	g.wg.Go(func() { g.work(ctx) })
	return g, nil
}

// Close stops the worker and waits for it.
func (g *Gatherer) Close() {
	g.cancel()
	g.wg.Wait()
}

// Soon gathers about provider in the background, unless the queue is
// full (then it is dropped: the next look asks again).
func (g *Gatherer) Soon(provider peer.ID) {
	select {
	case g.queue <- provider:
	default:
	}
}

func (g *Gatherer) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-g.queue:
			if err := g.Gather(ctx, p); err != nil {
				g.log.Debug("receipts gathered in part", "peer_id", p, "err", err)
			}
		}
	}
}

// Gather fetches, unless it did within Every, the receipts about
// provider that the provider and the peers this node dealt with signed,
// and keeps those that pass. A gathering of provider under way is
// waited for rather than repeated. The error says what was not
// gathered: a peer that did not answer, a receipt refused, a request
// not sent for its rate limit.
func (g *Gatherer) Gather(ctx context.Context, provider peer.ID) error {
	if provider == g.cfg.Host.ID() {
		return nil
	}
	done, mine := g.begin(provider)
	if !mine {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer g.end(provider, done)
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	return g.gather(ctx, provider)
}

// begin claims provider's gathering: mine is false, with the channel to
// wait on, when one is under way; a closed channel when one was done
// within Every.
func (g *Gatherer) begin(provider peer.ID) (done chan struct{}, mine bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ch, ok := g.running[provider]; ok {
		return ch, false
	}
	if at, ok := g.last[provider]; ok && g.cfg.Now().Sub(at) < g.cfg.Every {
		ch := make(chan struct{})
		close(ch)
		return ch, false
	}
	ch := make(chan struct{})
	g.running[provider] = ch
	return ch, true
}

func (g *Gatherer) end(provider peer.ID, done chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.running, provider)
	g.last[provider] = g.cfg.Now()
	close(done)
	if len(g.last) > maxRemembered {
		g.forget()
	}
}

// forget drops the providers gathered longest ago, down to three
// quarters of maxRemembered.
func (g *Gatherer) forget() {
	cut := g.cfg.Now().Add(-g.cfg.Every)
	for p, at := range g.last {
		if at.Before(cut) {
			delete(g.last, p)
		}
	}
	for p := range g.last {
		if len(g.last) <= maxRemembered*3/4 {
			break
		}
		delete(g.last, p)
	}
}

// gather asks the provider and up to MaxPeers dealt peers at once.
func (g *Gatherer) gather(ctx context.Context, provider peer.ID) error {
	ask := g.whom(provider)
	errs := make([]error, len(ask))
	var wg sync.WaitGroup
	for i, from := range ask {
		g.mu.Lock()
		why, _ := g.limits.Admit(from, g.cfg.Now())
		g.mu.Unlock()
		if why != "" {
			errs[i] = fmt.Errorf("receipt: not asking %s: %s", from, why)
			continue
		}
		wg.Go(func() { errs[i] = g.fetch(ctx, from, provider) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// whom is the provider, then the dealt peers other than it and this
// node, at most MaxPeers of them.
func (g *Gatherer) whom(provider peer.ID) []peer.ID {
	ask := []peer.ID{provider}
	for _, p := range g.cfg.Peers() {
		if len(ask) > g.cfg.MaxPeers {
			break
		}
		if p != provider && p != g.cfg.Host.ID() {
			ask = append(ask, p)
		}
	}
	return ask
}

// fetch asks from about provider and keeps what passes.
func (g *Gatherer) fetch(ctx context.Context, from, provider peer.ID) error {
	now := g.cfg.Now()
	got, ferr := Fetch(ctx, g.cfg.Host, g.cfg.Store.Network(), from, provider, now)
	raws := make([][]byte, len(got))
	for i, r := range got {
		raws[i] = r.Raw
	}
	var aerr error
	if len(raws) > 0 {
		_, aerr = g.cfg.Store.AddAll(raws, now)
	}
	return errors.Join(ferr, aerr)
}
