package proof

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/aixblock/aixblock/gpu/challenge"
	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
)

// Why a challenge did not pass, besides gpu/challenge's ErrEnvelope,
// ErrWrongRow, ErrNotCommitted, ErrWrongY, ErrReplay and ErrProtocol.
// ErrRateLimited, ErrBusy and ErrUnreachable are no verdict on the
// provider and leave no record.
var (
	// ErrTimeout: no commitment by the end of the class's window (plus
	// the round trip), or no answer to a later step within its time.
	ErrTimeout = errors.New("timed out")
	// ErrRefused: the provider refused the challenge for good (its
	// workload could not run it, or it does not admit this verifier).
	ErrRefused = errors.New("refused the challenge")
	// ErrRateLimited: this verifier asked the provider too often.
	ErrRateLimited = errors.New("rate limited by the provider")
	// ErrBrokeOff: the provider answered a step with an error or closed
	// the stream.
	ErrBrokeOff = errors.New("the provider broke off the challenge")
	// ErrUnreachable: no connection to the provider.
	ErrUnreachable = errors.New("provider unreachable")
	// ErrClaim: the claim cannot be checked (an unknown class, an n or
	// GPUs that do not fit it); the verifier's mistake, not the
	// provider's.
	ErrClaim = errors.New("claim cannot be checked")
)

// Claim is what a verifier challenges: GPUs a provider advertises as
// one class.
type Claim struct {
	// Class is the class key of the advert ("nvidia-h100-80gb"), or a
	// mock class ("mock-cpu").
	Class string
	// GPUs are the UUIDs challenged together; the challenge is for
	// len(GPUs) of them.
	GPUs []string
	// Precision is what the provider is timed at; zero: fp16.
	Precision challenge.Precision
	// N is the side of the matrices; zero: the class's (it fills 80% of
	// the memory; challenge.TestnetN for a mock).
	N int
	// Rows is k, the rows opened; zero: challenge.DefaultRows.
	Rows int
}

func (c Claim) String() string { return fmt.Sprintf("%d %s", len(c.GPUs), c.Class) }

// VerifierConfig is the verifier's side; the zero value of each field is
// a working default.
type VerifierConfig struct {
	// Key signs the records; zero: the host's own key, from its
	// peerstore.
	Key crypto.PrivKey
	// Store keeps every record made; nil: none kept.
	Store *Store
	// Now is the verifier's clock, which times seed to commitment; zero:
	// time.Now.
	Now func() time.Time
	// RTT is the round trip to a provider credited against its time;
	// zero: the peerstore's latency, or one ping when it has none, or
	// nothing.
	RTT func(ctx context.Context, p peer.ID) time.Duration
	// Rand draws the seeds and the rows; zero: crypto/rand.
	Rand io.Reader
	// Workers are the goroutines of the verifier's sweeps; zero:
	// GOMAXPROCS.
	Workers int
	// StepTimeout bounds a step after the commitment; zero: a minute
	// plus the step's O(n²) work at 10^9 entries a second.
	StepTimeout time.Duration
	// Log is the verifier's logger; zero: slog.Default().
	Log *slog.Logger
}

// Verifier challenges providers and signs what it finds.
type Verifier struct {
	h       host.Host
	network string
	cfg     VerifierConfig
	log     *slog.Logger
}

// NewVerifier challenges from h under network's prefix.
func NewVerifier(h host.Host, network string, cfg VerifierConfig) (*Verifier, error) {
	if cfg.Key == nil {
		cfg.Key = h.Peerstore().PrivKey(h.ID())
	}
	if cfg.Key == nil {
		return nil, errors.New("proof: verifier without a key: the host's peerstore holds none")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Verifier{h: h, network: network, cfg: cfg, log: cfg.Log.With("component", "proof")}, nil
}

// run is one challenge under way.
type run struct {
	claim   Claim
	env     challenge.Envelope
	params  challenge.Params
	cv      *challenge.Verifier
	rows    int           // k
	hi      time.Duration // the window's end
	rtt     time.Duration
	elapsed time.Duration // seed to commitment, once it came
	commit  bool          // a commitment came
}

// Verify challenges provider on the GPUs of c, and returns the signed
// record of the verdict, with nil when the provider passed and the
// reason when it failed (errors.Is finds ErrTimeout, ErrRefused,
// ErrBrokeOff or gpu/challenge's ErrEnvelope, ErrWrongRow,
// ErrNotCommitted, ErrWrongY, ErrReplay, ErrProtocol). An error that is
// no verdict on the provider (ErrClaim, ErrUnreachable,
// ErrRateLimited, ErrBusy, ctx ending) comes with no record.
func (v *Verifier) Verify(ctx context.Context, provider peer.ID, c Claim) (Record, error) {
	r, err := v.plan(c)
	if err != nil {
		return Record{}, err
	}
	if err := v.reach(ctx, provider); err != nil {
		return Record{}, err
	}
	r.rtt = v.rtt(ctx, provider)
	verdict := v.exchange(ctx, provider, r)
	if ctx.Err() != nil || verdict != nil && reasonOf(verdict) == "" {
		return Record{}, fmt.Errorf("proof: challenge of %s on %s: %w", provider, c, errors.Join(ctx.Err(), verdict))
	}
	rec, raw, err := v.record(provider, r, verdict)
	if err != nil {
		return Record{}, err
	}
	v.finish(ctx, provider, r, rec, raw)
	if verdict != nil {
		return rec, fmt.Errorf("proof: %s failed the challenge on %s: %w", provider, c, verdict)
	}
	return rec, nil
}

// plan checks the claim and draws the challenge.
func (v *Verifier) plan(c Claim) (*run, error) {
	env, err := challenge.Lookup(c.Class)
	if err != nil {
		return nil, fmt.Errorf("proof: %w: %w", ErrClaim, err)
	}
	if err := checkGPUs(c.GPUs); err != nil {
		return nil, fmt.Errorf("proof: %w: %w", ErrClaim, err)
	}
	p := challenge.Params{N: c.N, GPUs: len(c.GPUs), Precision: c.Precision}
	if p.Precision == "" {
		p.Precision = challenge.FP16
	}
	if p.N == 0 {
		p.N = env.N(p.GPUs, p.Precision)
	}
	lo, hi := env.Window(p)
	// A time inside the window leaves only what is wrong with the claim
	// itself (an n that does not fit the class): the verifier's mistake,
	// which must not fail the provider.
	if err := env.Check(p, (lo+hi)/2, 0); err != nil {
		return nil, fmt.Errorf("proof: %w: %w", ErrClaim, err)
	}
	cv, err := challenge.NewVerifier(challenge.VerifierConfig{Params: p, Rows: c.Rows, Rand: v.cfg.Rand, Workers: v.cfg.Workers})
	if err != nil {
		return nil, fmt.Errorf("proof: %w: %w", ErrClaim, err)
	}
	rows := c.Rows
	if rows == 0 {
		rows = challenge.DefaultRows
	}
	return &run{claim: c, env: env, params: p, cv: cv, rows: rows, hi: hi}, nil
}

// reach connects to provider before the clock starts, so that dialing
// is not timed.
func (v *Verifier) reach(ctx context.Context, provider peer.ID) error {
	if v.h.Network().Connectedness(provider) == network.Connected {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := v.h.Connect(cctx, peer.AddrInfo{ID: provider}); err != nil {
		return fmt.Errorf("proof: %w: %s: %w", ErrUnreachable, provider, err)
	}
	return nil
}

// rtt is the round trip credited to provider.
func (v *Verifier) rtt(ctx context.Context, provider peer.ID) time.Duration {
	if v.cfg.RTT != nil {
		return v.cfg.RTT(ctx, provider)
	}
	if d := v.h.Peerstore().LatencyEWMA(provider); d > 0 {
		return d
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if res := <-ping.Ping(pctx, v.h, provider); res.Error == nil {
		return res.RTT
	}
	return 0
}

// exchange runs the steps and returns the verdict. The verifier
// prepares its expected answers while the provider computes.
func (v *Verifier) exchange(ctx context.Context, provider peer.ID, r *run) error {
	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = r.cv.Prepare(pctx) }) // a failure comes again from Answer
	defer wg.Wait()
	defer cancel()

	com, err := v.commitment(ctx, provider, r)
	if err != nil {
		return err
	}
	q, err := r.cv.Commit(com)
	if err != nil {
		return err
	}
	if err := r.env.Check(r.params, r.elapsed, r.rtt); err != nil {
		return err
	}
	a, err := v.answer(ctx, provider, r, q)
	if err != nil {
		return err
	}
	o, err := r.cv.Answer(ctx, a)
	if err != nil {
		return err
	}
	return v.open(ctx, provider, r, o)
}

// commitment sends the challenge and times the commitment.
func (v *Verifier) commitment(ctx context.Context, provider peer.ID, r *run) (challenge.Commitment, error) {
	msg, err := challenge.Encode(r.cv.Challenge())
	if err != nil {
		return challenge.Commitment{}, err
	}
	req := request{Step: stepChallenge, Msg: msg, GPUs: r.claim.GPUs}
	lim := p2p.StreamLimits{MaxResponse: challenge.MaxCommitmentBytes + maxReplyOverhead,
		Timeout: r.hi + min(r.rtt, challenge.MaxRTT) + time.Second}
	start := v.cfg.Now()
	rep, err := v.step(ctx, provider, req, lim)
	if err != nil {
		return challenge.Commitment{}, err
	}
	r.elapsed, r.commit = v.cfg.Now().Sub(start), true
	return challenge.DecodeCommitment(rep.Msg)
}

// answer sends the query and reads y.
func (v *Verifier) answer(ctx context.Context, provider peer.ID, r *run, q challenge.Query) (challenge.Answer, error) {
	msg, err := challenge.Encode(q)
	if err != nil {
		return challenge.Answer{}, err
	}
	n := r.params.N
	lim := p2p.StreamLimits{MaxResponse: challenge.MaxAnswerBytes(n) + maxReplyOverhead, Timeout: v.stepTimeout(n, 4)}
	rep, err := v.step(ctx, provider, request{Step: stepQuery, Seed: r.cv.Challenge().Seed, Msg: msg}, lim)
	if err != nil {
		return challenge.Answer{}, err
	}
	return challenge.DecodeAnswer(rep.Msg, n)
}

// open asks the rows in batches that fit a reply and checks each.
func (v *Verifier) open(ctx context.Context, provider peer.ID, r *run, o challenge.Open) error {
	n := r.params.N
	batch := max(1, maxOpenBatchBytes/challenge.MaxOpeningBytes(n))
	lim := p2p.StreamLimits{MaxResponse: batch*(challenge.MaxOpeningBytes(n)+8) + maxReplyOverhead, Timeout: v.stepTimeout(n, batch+2)}
	for rows := range chunks(o.Rows, batch) {
		msg, err := challenge.Encode(challenge.Open{V: o.V, Rows: rows})
		if err != nil {
			return err
		}
		rep, err := v.step(ctx, provider, request{Step: stepOpen, Seed: r.cv.Challenge().Seed, Msg: msg}, lim)
		if err != nil {
			return err
		}
		if len(rep.Openings) != len(rows) {
			return fmt.Errorf("%w: %d rows asked, %d opened", challenge.ErrProtocol, len(rows), len(rep.Openings))
		}
		for _, raw := range rep.Openings {
			op, err := challenge.DecodeOpening(raw, n)
			if err == nil {
				err = r.cv.Check(op)
			}
			if err != nil {
				return err
			}
		}
	}
	return r.cv.Verdict()
}

// chunks yields s in pieces of at most size.
func chunks[T any](s []T, size int) func(yield func([]T) bool) {
	return func(yield func([]T) bool) {
		for i := 0; i < len(s); i += size {
			if !yield(s[i:min(i+size, len(s))]) {
				return
			}
		}
	}
}

// stepTimeout is the time a step after the commitment may take: a
// minute plus work·n² entries at 10^9 a second.
func (v *Verifier) stepTimeout(n, work int) time.Duration {
	if v.cfg.StepTimeout > 0 {
		return v.cfg.StepTimeout
	}
	return time.Minute + time.Duration(float64(work)*float64(n)*float64(n)/1e9*float64(time.Second))
}

// step sends one request and reads its reply. A refusal of the first
// step may be for later; of any other step, it is final.
func (v *Verifier) step(ctx context.Context, provider peer.ID, req request, lim p2p.StreamLimits) (reply, error) {
	req.V = Version
	raw, err := encode(req)
	if err != nil {
		return reply{}, err
	}
	lim.MaxRequest = maxRequestBytes
	out, err := p2p.Request(ctx, v.h, provider, p2p.ProtocolID(v.network, wireChallenge.name), raw, lim)
	var remote *p2p.RemoteError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return reply{}, err
	case errors.Is(err, context.DeadlineExceeded):
		return reply{}, fmt.Errorf("%w: no answer to the %s within %v", ErrTimeout, req.Step, lim.Timeout)
	case errors.As(err, &remote):
		return reply{}, fmt.Errorf("%w: the %s: %v", ErrBrokeOff, req.Step, remote.Msg)
	default:
		return reply{}, fmt.Errorf("%w: the %s: %v", ErrBrokeOff, req.Step, err)
	}
	rep, err := decodeReply(out, lim.MaxResponse)
	if err != nil || rep.Refused == "" {
		return rep, err
	}
	retry := time.Duration(rep.RetryS) * time.Second
	switch {
	case req.Step == stepChallenge && rep.Code == codeRateLimit:
		return reply{}, fmt.Errorf("%w: %s (retry in %v)", ErrRateLimited, rep.Refused, retry)
	case req.Step == stepChallenge && rep.Code == codeBusy:
		return reply{}, fmt.Errorf("%w: %s (retry in %v)", ErrBusy, rep.Refused, retry)
	}
	return reply{}, fmt.Errorf("%w: %s", ErrRefused, rep.Refused)
}

// record makes and signs the verdict's record.
func (v *Verifier) record(provider peer.ID, r *run, verdict error) (Record, []byte, error) {
	ch := r.cv.Challenge()
	seed := sha256.Sum256(ch.Seed)
	rec := Record{
		Network: v.network, Provider: provider.String(), GPUs: r.claim.GPUs, Class: r.env.Class,
		N: ch.N, Precision: ch.Precision, Rows: uint32(r.rows), SeedHash: seed[:],
		At: v.cfg.Now().UnixMilli(), RTTUs: r.rtt.Microseconds(), Outcome: Pass,
	}
	if r.commit {
		rec.ElapsedUs = r.elapsed.Microseconds()
	}
	if verdict != nil {
		rec.Outcome, rec.Reason, rec.Detail = Fail, reasonOf(verdict), clip(verdict.Error())
	}
	raw, err := rec.Sign(v.cfg.Key)
	if err != nil {
		return Record{}, nil, err
	}
	rec, err = DecodeRecord(raw)
	return rec, raw, err
}

// finish logs the verdict, keeps the record, and hands it to the
// provider, which closes the challenge there.
func (v *Verifier) finish(ctx context.Context, provider peer.ID, r *run, rec Record, raw []byte) {
	log := v.log.With("peer_id", provider, "class", rec.Class, "gpus", rec.GPUs, "n", rec.N)
	if rec.Passed() {
		log.Info("provider passed the challenge", "elapsed", rec.Elapsed(), "tflops", rec.TFLOPS())
	} else {
		log.Warn("provider failed the challenge", "reason", rec.Reason, "detail", rec.Detail)
	}
	if v.cfg.Store != nil {
		if _, err := v.cfg.Store.Add(raw, v.cfg.Now()); err != nil {
			log.Warn("keep record", "err", err)
		}
	}
	if !r.commit {
		return // the provider holds no challenge to close
	}
	req := request{Step: stepRecord, Seed: r.cv.Challenge().Seed, Msg: raw}
	if _, err := v.step(ctx, provider, req, p2p.StreamLimits{MaxResponse: maxReplyOverhead, Timeout: 10 * time.Second}); err != nil {
		log.Debug("hand the record to the provider", "err", err)
	}
}
