package proof

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aixblock/aixblock/gpu/challenge"
	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ProviderConfig is the provider's side. The zero value of each field
// but Workload is a working default.
type ProviderConfig struct {
	// Workload runs the challenges; required.
	Workload Workload
	// Store keeps the records verifiers send about this provider and is
	// what the records protocol serves; nil: none kept, none served.
	Store *Store
	// Limits bound the challenges per verifier and in all.
	Limits Limits
	// Admit, when set, may refuse a verifier before anything runs (the
	// daemon's policy, say peers it has an open offer from); its error is
	// the refusal's reason. Nil admits everyone the limits do.
	Admit func(ctx context.Context, verifier peer.ID) error
	// Idle is how long an open challenge waits for the verifier's next
	// step before its prover is closed; zero: 2 minutes.
	Idle time.Duration
	// Now is the provider's clock for the rate limits; zero: time.Now.
	Now func() time.Time
	// Log is the provider's logger; zero: slog.Default().
	Log *slog.Logger
}

// Provider answers challenges, one open challenge per verifier, and
// serves the records it keeps.
type Provider struct {
	h       host.Host
	network string
	cfg     ProviderConfig
	log     *slog.Logger

	mu       sync.Mutex
	limits   *limiter
	running  int // challenges computing
	sessions map[peer.ID]*session
	closed   bool
	// refused is the last challenge this provider refused for good, and
	// when: a verifier records that as a failure, so the provider's own
	// status must say so too.
	refused   string
	refusedAt time.Time
}

// Standing is how this provider stands in its own eyes: every verdict
// verifiers sent it, each counted once (a provider wants to know what
// any requester saw), or the last challenge it refused for good when
// that is newer: a verifier records a refusal as a failure it may never
// hand over (no commitment, no session).
func (p *Provider) Standing(now time.Time) string {
	st := Status{State: Unverified}
	if p.cfg.Store != nil {
		st = p.cfg.Store.Status(p.h.ID(), func(peer.ID) int { return 1 }, now)
	}
	p.mu.Lock()
	why, at := p.refused, p.refusedAt
	p.mu.Unlock()
	if why != "" && st.State != Failed && (st.LastAt.IsZero() || at.After(st.LastAt)) {
		return fmt.Sprintf("failed: refused the challenge: %s (at %s)", why, at.UTC().Format(time.RFC3339))
	}
	return st.String()
}

// session is one verifier's open challenge.
type session struct {
	ch     challenge.Challenge
	gpus   []string
	prover Prover
	state  string // the step it waits for; "" while a step runs
	opened int    // rows opened so far
	timer  *time.Timer
}

// NewProvider serves the challenge protocol, and the records protocol
// when cfg.Store is set, on h under network's prefix.
func NewProvider(h host.Host, network string, cfg ProviderConfig) (*Provider, error) {
	if cfg.Workload == nil {
		return nil, errors.New("proof: provider without a workload")
	}
	if cfg.Idle == 0 {
		cfg.Idle = 2 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	p := &Provider{h: h, network: network, cfg: cfg, log: cfg.Log.With("component", "proof"),
		limits: newLimiter(cfg.Limits, cfg.Now()), sessions: map[peer.ID]*session{}}
	p2p.Handle(h, p2p.ProtocolID(network, wireChallenge.name), wireChallenge.limits, p.log, p.handle)
	if cfg.Store != nil {
		p2p.Handle(h, p2p.ProtocolID(network, wireRecords.name), wireRecords.limits, p.log, p.serveRecords)
	}
	return p, nil
}

// Close stops serving and closes every open challenge's prover.
func (p *Provider) Close() error {
	p.h.RemoveStreamHandler(p2p.ProtocolID(p.network, wireChallenge.name))
	p.h.RemoveStreamHandler(p2p.ProtocolID(p.network, wireRecords.name))
	p.mu.Lock()
	p.closed = true
	var errs []error
	for from, s := range p.sessions {
		errs = append(errs, p.dropLocked(from, s))
	}
	p.mu.Unlock()
	return errors.Join(errs...)
}

// handle answers one step of a challenge.
func (p *Provider) handle(ctx context.Context, from peer.ID, raw []byte) ([]byte, error) {
	req, err := decodeRequest(raw)
	if err != nil {
		return nil, err
	}
	var rep reply
	switch req.Step {
	case stepChallenge:
		rep, err = p.start(ctx, from, req)
	case stepQuery:
		rep, err = p.answer(ctx, from, req)
	case stepOpen:
		rep, err = p.open(ctx, from, req)
	case stepRecord:
		err = p.keep(from, req)
	default:
		err = fmt.Errorf("%w: unknown step %q", ErrInvalid, req.Step)
	}
	if err != nil {
		p.log.Debug("challenge step refused", "peer_id", from, "step", req.Step, "err", err)
		return nil, err
	}
	rep.V = Version
	return encode(rep)
}

// start admits a challenge, runs the workload and returns its
// commitment. Refusals are replies, so the verifier can tell "later"
// from "never".
func (p *Provider) start(ctx context.Context, from peer.ID, req request) (reply, error) {
	ch, err := challenge.DecodeChallenge(req.Msg)
	if err != nil {
		return reply{}, err
	}
	if err := checkGPUs(req.GPUs); err != nil || len(req.GPUs) != int(ch.GPUs) {
		return reply{}, fmt.Errorf("%w: challenge of %d GPUs names %d UUIDs (%v)", ErrInvalid, ch.GPUs, len(req.GPUs), err)
	}
	if p.cfg.Admit != nil {
		if err := p.cfg.Admit(ctx, from); err != nil {
			return refusal(fmt.Sprintf("not admitted: %v", err), "", 0), nil
		}
	}
	s := &session{ch: ch, gpus: req.GPUs}
	if rep, ok := p.admit(from, s); !ok {
		return rep, nil
	}
	p.log.Info("challenge", "peer_id", from, "gpus", req.GPUs, "n", ch.N, "precision", ch.Precision)
	prover, err := p.cfg.Workload.Run(ctx, ch, req.GPUs)
	if err = p.computed(from, s, prover, err); err != nil {
		p.log.Warn("challenge not run", "peer_id", from, "gpus", req.GPUs, "err", err)
		p.end(from, s)
		if errors.Is(err, ErrBusy) {
			return refusal(err.Error(), codeBusy, time.Minute), nil
		}
		p.mu.Lock()
		p.refused, p.refusedAt = err.Error(), time.Now()
		p.mu.Unlock()
		return refusal(err.Error(), "", 0), nil
	}
	com, err := challenge.Encode(prover.Commitment())
	return reply{Msg: com}, err
}

func refusal(reason, code string, retry time.Duration) reply {
	return reply{Refused: clip(reason), Code: code, RetryS: uint32(retry.Round(time.Second) / time.Second)}
}

// admit opens from's session if its limits allow, or returns the
// refusal.
func (p *Provider) admit(from peer.ID, s *session) (reply, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return refusal("shutting down", codeBusy, time.Minute), false
	case p.sessions[from] != nil:
		return refusal("a challenge from you is open already: one at a time", codeRateLimit, p.cfg.Idle), false
	case p.running >= p.cfg.Limits.withDefaults().Concurrent:
		return refusal(fmt.Sprintf("%d challenges running", p.running), codeBusy, time.Minute), false
	}
	if why, wait := p.limits.Admit(from, p.cfg.Now()); why != "" {
		return refusal(why, codeRateLimit, wait), false
	}
	p.running++
	p.sessions[from] = s
	return reply{}, true
}

// computed ends the workload's run of s: with a prover, s waits for the
// query, unless the session ended meanwhile (the provider closed).
func (p *Provider) computed(from peer.ID, s *session, prover Prover, err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running--
	if err != nil {
		return err
	}
	if p.sessions[from] != s {
		return errors.Join(fmt.Errorf("%w: the provider is closing", ErrBusy), prover.Close())
	}
	s.prover, s.state = prover, stepQuery
	s.timer = time.AfterFunc(p.cfg.Idle, func() { p.end(from, s) })
	return nil
}

// take claims from's session for step: it must be open, for seed, and
// waiting for step (a record ends it at any step after the commitment).
// The caller hands it back with release, or ends it.
func (p *Provider) take(from peer.ID, seed []byte, step string) (*session, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sessions[from]
	switch {
	case s == nil || !bytes.Equal(s.ch.Seed, seed):
		return nil, fmt.Errorf("%w: no open challenge of yours with that seed", challenge.ErrProtocol)
	case s.state == "" || step != stepRecord && s.state != step:
		return nil, fmt.Errorf("%w: %s out of turn (waiting for %q)", challenge.ErrProtocol, step, s.state)
	case !s.timer.Stop():
		return nil, fmt.Errorf("%w: the challenge expired", challenge.ErrProtocol)
	}
	s.state = ""
	return s, nil
}

// release has s wait for next, for at most Idle.
func (p *Provider) release(from peer.ID, s *session, next string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.state = next
	s.timer.Reset(p.cfg.Idle)
}

// end closes from's session s if it is still open.
func (p *Provider) end(from peer.ID, s *session) {
	p.mu.Lock()
	err := p.dropLocked(from, s)
	p.mu.Unlock()
	if err != nil {
		p.log.Warn("close challenge", "peer_id", from, "err", err)
	}
}

func (p *Provider) dropLocked(from peer.ID, s *session) error {
	if p.sessions[from] != s {
		return nil
	}
	delete(p.sessions, from)
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.prover == nil {
		return nil
	}
	return s.prover.Close()
}

// answer returns y for the verifier's query.
func (p *Provider) answer(ctx context.Context, from peer.ID, req request) (reply, error) {
	s, err := p.take(from, req.Seed, stepQuery)
	if err != nil {
		return reply{}, err
	}
	q, err := challenge.DecodeQuery(req.Msg)
	if err != nil {
		p.end(from, s)
		return reply{}, err
	}
	a, err := s.prover.Answer(ctx, q)
	if err == nil {
		var b []byte
		if b, err = challenge.Encode(a); err == nil {
			p.release(from, s, stepOpen)
			return reply{Msg: b}, nil
		}
	}
	p.end(from, s)
	return reply{}, fmt.Errorf("answer: %w", err)
}

// open returns the rows asked, at most challenge.MaxRows in all.
func (p *Provider) open(ctx context.Context, from peer.ID, req request) (reply, error) {
	s, err := p.take(from, req.Seed, stepOpen)
	if err != nil {
		return reply{}, err
	}
	rep, err := p.openings(ctx, s, req.Msg)
	if err != nil {
		p.end(from, s)
		return reply{}, err
	}
	p.release(from, s, stepOpen)
	return rep, nil
}

func (p *Provider) openings(ctx context.Context, s *session, raw []byte) (reply, error) {
	o, err := challenge.DecodeOpen(raw, int(s.ch.N))
	if err != nil {
		return reply{}, err
	}
	if s.opened += len(o.Rows); s.opened > challenge.MaxRows {
		return reply{}, fmt.Errorf("%w: %d rows asked, at most %d", challenge.ErrProtocol, s.opened, challenge.MaxRows)
	}
	ops, err := s.prover.Open(ctx, o)
	if err != nil {
		return reply{}, fmt.Errorf("open: %w", err)
	}
	var rep reply
	for _, op := range ops {
		b, err := challenge.Encode(op)
		if err != nil {
			return reply{}, err
		}
		rep.Openings = append(rep.Openings, b)
	}
	return rep, nil
}

// keep takes the verifier's record of the challenge it just ran, which
// closes the challenge. A verifier may send it at any step after the
// commitment (it fails a provider at the first wrong answer).
func (p *Provider) keep(from peer.ID, req request) error {
	s, err := p.take(from, req.Seed, stepRecord)
	if err != nil {
		return err
	}
	defer p.end(from, s)
	rec, err := p.check(from, s, req.Msg)
	if err != nil {
		return err
	}
	if rec.Passed() {
		p.log.Info("challenge passed", "peer_id", from, "class", rec.Class, "gpus", rec.GPUs, "elapsed", rec.Elapsed(), "tflops", rec.TFLOPS())
	} else {
		p.log.Warn("challenge failed", "peer_id", from, "class", rec.Class, "gpus", rec.GPUs, "reason", rec.Reason, "detail", rec.Detail)
	}
	if p.cfg.Store == nil {
		return nil
	}
	_, err = p.cfg.Store.Add(req.Msg, p.cfg.Now())
	return err
}

// check reads a record sent to this provider: signed by the verifier
// that sent it, about this challenge, on this network and this host.
func (p *Provider) check(from peer.ID, s *session, raw []byte) (Record, error) {
	rec, err := DecodeRecord(raw)
	if err != nil {
		return Record{}, err
	}
	if err := rec.Check(p.network, p.h.ID(), p.cfg.Now()); err != nil {
		return Record{}, err
	}
	seed := sha256.Sum256(s.ch.Seed)
	if rec.Verifier != from.String() || !bytes.Equal(rec.SeedHash, seed[:]) || rec.N != s.ch.N {
		return Record{}, fmt.Errorf("%w: the record is not %s's of the challenge it ran", ErrInvalid, from)
	}
	return rec, nil
}

// serveRecords answers the records protocol with the newest records
// about this provider.
func (p *Provider) serveRecords(_ context.Context, _ peer.ID, raw []byte) ([]byte, error) {
	var req recordsRequest
	if err := decode("records request", raw, wireRecords.limits.MaxRequest, &req, func() uint8 { return req.V }); err != nil {
		return nil, err
	}
	recs := p.cfg.Store.Signed(p.h.ID())
	return encode(recordsReply{V: Version, Records: recs[:min(len(recs), maxServedRecords)]})
}
