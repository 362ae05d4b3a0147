package proof

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// SchedulerConfig is a requester's schedule of challenges; the zero
// value of each field but Verifier, Store and Self is a working default.
type SchedulerConfig struct {
	Verifier *Verifier
	Store    *Store
	// Self is this node: its own records decide when a provider is due.
	Self peer.ID
	// Repeat is the mean time between challenges of a provider this node
	// keeps seeing, drawn at random (exponential, within Repeat/10 and
	// 3·Repeat) so that a provider cannot tell when the next comes; zero:
	// 24 h.
	Repeat time.Duration
	// Retry is the wait after a challenge that gave no verdict (the
	// provider unreachable or rate limiting); zero: 10 min. A busy
	// provider (its GPUs taken by a deal) is asked again after Busy;
	// zero: 30 s.
	Retry time.Duration
	Busy  time.Duration
	// Parallel bounds the challenges under way at once; zero: 2.
	Parallel int
	// Timeout bounds one challenge; zero: 5 min.
	Timeout time.Duration
	// MaxProviders bounds the providers scheduled; zero: 4096.
	MaxProviders int
	Log          *slog.Logger
}

// Scheduler challenges providers on a requester's behalf: each once when
// first seen, then again at random times while it keeps being seen; and
// at once, when a job asks for verified providers only (Check).
type Scheduler struct {
	cfg SchedulerConfig
	log *slog.Logger

	mu    sync.Mutex
	plans map[peer.ID]*plan
	wake  chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// plan is one provider's next challenge.
type plan struct {
	claim Claim
	due   time.Time
	// running is closed when the challenge under way ends; nil: none.
	running chan struct{}
}

// NewScheduler starts the schedule; Close stops it.
func NewScheduler(cfg SchedulerConfig) *Scheduler {
	if cfg.Repeat == 0 {
		cfg.Repeat = 24 * time.Hour
	}
	if cfg.Retry == 0 {
		cfg.Retry = 10 * time.Minute
	}
	if cfg.Busy == 0 {
		cfg.Busy = 30 * time.Second
	}
	if cfg.Parallel == 0 {
		cfg.Parallel = 2
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.MaxProviders == 0 {
		cfg.MaxProviders = 4096
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{cfg: cfg, log: cfg.Log.With("component", "proof"), plans: map[peer.ID]*plan{},
		wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
	s.wg.Add(1)
	go s.loop()
	return s
}

// Close stops the schedule and waits for the challenges under way.
func (s *Scheduler) Close() {
	s.cancel()
	s.wg.Wait()
}

// Want schedules provider for a challenge on c: now when this node holds
// no verdict of its own on c's class, else at a random time after the
// last. A provider already scheduled keeps its time; its claim is
// updated (its free GPUs change).
func (s *Scheduler) Want(provider peer.ID, c Claim) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.plans[provider]; p != nil {
		p.claim = c
		return
	}
	if len(s.plans) >= s.cfg.MaxProviders && !s.evictLocked() {
		return
	}
	due := time.Now()
	if last, ok := s.lastOwn(provider, c.Class); ok {
		due = last.Add(s.draw())
	}
	s.plans[provider] = &plan{claim: c, due: due}
	s.poke()
}

// Check challenges provider on c now, or joins the challenge of it under
// way, and returns when that has ended or ctx has.
func (s *Scheduler) Check(ctx context.Context, provider peer.ID, c Claim) {
	s.mu.Lock()
	p := s.plans[provider]
	if p == nil {
		p = &plan{claim: c}
		s.plans[provider] = p
	}
	if p.running == nil {
		p.claim = c
		s.startLocked(provider, p)
	}
	done := p.running
	s.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// lastOwn is the time of this node's newest record on provider for
// class.
func (s *Scheduler) lastOwn(provider peer.ID, class string) (time.Time, bool) {
	for _, r := range s.cfg.Store.Records(provider) {
		if r.Verifier == s.cfg.Self.String() && r.Class == class {
			return r.Time(), true
		}
	}
	return time.Time{}, false
}

// draw is the wait to a repeat: exponential around Repeat, clamped.
func (s *Scheduler) draw() time.Duration {
	d := time.Duration(-math.Log(1-rand.Float64()) * float64(s.cfg.Repeat))
	return min(max(d, s.cfg.Repeat/10), 3*s.cfg.Repeat)
}

// evictLocked drops the plan due last that is not running, to make room.
func (s *Scheduler) evictLocked() bool {
	var victim peer.ID
	var latest time.Time
	for id, p := range s.plans {
		if p.running == nil && (victim == "" || p.due.After(latest)) {
			victim, latest = id, p.due
		}
	}
	if victim == "" {
		return false
	}
	delete(s.plans, victim)
	return true
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop starts the challenges that are due, Parallel at a time, and sleeps
// until the next is.
func (s *Scheduler) loop() {
	defer s.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		t.Reset(s.startDue(time.Now()))
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
	}
}

// startDue starts what is due now, room permitting, and returns the wait
// until the next plan is due.
func (s *Scheduler) startDue(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	running := 0
	for _, p := range s.plans {
		if p.running != nil {
			running++
		}
	}
	next := time.Hour
	for id, p := range s.plans {
		switch {
		case p.running != nil:
		case !p.due.After(now) && running < s.cfg.Parallel:
			s.startLocked(id, p)
			running++
		case p.due.After(now):
			next = min(next, p.due.Sub(now))
		default:
			next = min(next, time.Second) // due, waiting for room
		}
	}
	return next
}

// startLocked runs the challenge of p on its own goroutine.
func (s *Scheduler) startLocked(provider peer.ID, p *plan) {
	done := make(chan struct{})
	p.running = done
	c := p.claim
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		next := s.challenge(provider, c)
		s.mu.Lock()
		p.running, p.due = nil, time.Now().Add(next)
		s.mu.Unlock()
		close(done)
		s.poke()
	}()
}

// challenge runs one challenge and says when the next is due.
func (s *Scheduler) challenge(provider peer.ID, c Claim) time.Duration {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	rec, err := s.cfg.Verifier.Verify(ctx, provider, c)
	switch {
	case err == nil:
		s.log.Info("provider verified", "peer_id", provider, "claim", c.String(),
			"elapsed", rec.Elapsed().Round(time.Millisecond), "tflops", rec.TFLOPS())
	case rec.Verifier != "":
		s.log.Warn("provider failed its challenge", "peer_id", provider, "claim", c.String(), "err", err)
	case errors.Is(err, ErrClaim):
		s.log.Debug("claim cannot be checked", "peer_id", provider, "err", err)
		return 3 * s.cfg.Repeat
	case errors.Is(err, ErrBusy):
		s.log.Debug("provider busy; asking again soon", "peer_id", provider, "err", err)
		return s.cfg.Busy
	default:
		s.log.Debug("challenge gave no verdict; retrying later", "peer_id", provider, "err", err)
		return s.cfg.Retry
	}
	return s.draw()
}
