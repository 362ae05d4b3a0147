package proof

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/gpu/challenge"
)

// An honest CPU provider passes a mock class over libp2p; both sides
// keep the signed record.
func TestHonestCPUProviderPasses(t *testing.T) {
	w := newWorld(t, 1, CPU{}, Limits{})
	v := w.verifier(t, 1)
	rec, err := verify(t, v, w.provider(), mockClaim())
	if err != nil {
		t.Fatalf("honest provider failed: %v", err)
	}
	if !rec.Passed() || rec.Class != mockClass || rec.N != challenge.TestnetN || rec.Rows != challenge.DefaultRows {
		t.Fatalf("record %+v, want a pass of %s at n=%d with %d rows", rec, mockClass, challenge.TestnetN, challenge.DefaultRows)
	}
	if rec.Verifier != w.hosts[1].ID().String() || rec.Provider != w.provider().String() || rec.TFLOPS() <= 0 || rec.WorkingSet() == 0 {
		t.Fatalf("record %+v: wrong parties, or no throughput or working set", rec)
	}
	for name, s := range map[string]*Store{"verifier": v.cfg.Store, "provider": w.store} {
		if got := s.Records(w.provider()); len(got) != 1 || got[0].ID() != rec.ID() {
			t.Errorf("the %s keeps %d records, want the one made", name, len(got))
		}
	}
}

// hostile is one way of failing a challenge.
type hostile struct {
	name  string
	claim Claim
	// workload is the provider's, in world w.
	workload func(t *testing.T, w *world) Workload
	// cfg changes the verifier's configuration.
	cfg    func(*VerifierConfig)
	want   error  // what errors.Is finds
	reason string // the record's reason; "" for no record
	detail string // a part of the error
	// unkept: the provider does not get the record (it committed to
	// nothing, or is still in a step).
	unkept bool
}

func hostiles() []hostile {
	h100 := Claim{Class: "nvidia-h100-80gb", GPUs: []string{"GPU-h100-0"}}
	return []hostile{
		{name: "cpu claiming an h100", claim: h100, workload: cpuClaiming,
			want: challenge.ErrEnvelope, reason: ReasonEnvelope, detail: "slower than 1 nvidia-h100-80gb"},
		{name: "commitment sooner than an h100 can compute it", claim: h100, workload: prepared,
			want: challenge.ErrEnvelope, reason: ReasonEnvelope, detail: "faster than 1 nvidia-h100-80gb can go"},
		{name: "commits before computing", claim: mockClaim(), workload: commitsFirst,
			want: challenge.ErrNotCommitted, reason: ReasonNotCommitted, detail: "does not hash to the committed root"},
		{name: "half the rows wrong", claim: mockClaim(), workload: halfWrong,
			want: challenge.ErrWrongRow, reason: ReasonWrongRow, detail: "A·B gives"},
		{name: "wrong y", claim: mockClaim(), workload: wrongY,
			want: challenge.ErrWrongY, reason: ReasonWrongY, detail: "A·B·r gives"},
		{name: "commitment of another challenge", claim: mockClaim(), workload: replays,
			want: challenge.ErrReplay, reason: ReasonReplay, detail: "the challenge was seed"},
		{name: "refuses", claim: mockClaim(), workload: refuses(errors.New("GPU-mock-0 is not mine")),
			want: ErrRefused, reason: ReasonRefused, detail: "GPU-mock-0 is not mine", unkept: true},
		{name: "never answers y", claim: mockClaim(), workload: stalls,
			cfg:  func(c *VerifierConfig) { c.StepTimeout = 100 * time.Millisecond },
			want: ErrTimeout, reason: ReasonTimeout, detail: "no answer to the query", unkept: true},
		{name: "busy for now", claim: mockClaim(), workload: refuses(fmt.Errorf("%w: leased", ErrBusy)),
			want: ErrBusy, detail: "leased"},
	}
}

// Each cheat fails with its reason, in the error and in the signed
// record both sides keep; a refusal for now leaves no record.
func TestHostileProvidersFail(t *testing.T) {
	for _, c := range hostiles() {
		t.Run(c.name, func(t *testing.T) {
			var wl Workload // made once the world is, for its clock
			w := newWorld(t, 1, workloadFunc(func(ctx context.Context, ch challenge.Challenge, gpus []string) (Prover, error) {
				return wl.Run(ctx, ch, gpus)
			}), Limits{})
			wl = c.workload(t, w)
			v := w.verifier(t, 1)
			if c.cfg != nil {
				c.cfg(&v.cfg)
			}
			rec, err := verify(t, v, w.provider(), c.claim)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("error %v, want %v with %q", err, c.want, c.detail)
			}
			if c.reason == "" {
				if rec.Outcome != "" || len(v.cfg.Store.Records(w.provider())) > 0 {
					t.Fatalf("record %+v for a refusal for now", rec)
				}
				return
			}
			if rec.Passed() || rec.Reason != c.reason || !strings.Contains(rec.Detail, c.detail) {
				t.Fatalf("record %s %s %q, want a failure for %s with %q", rec.Outcome, rec.Reason, rec.Detail, c.reason, c.detail)
			}
			if got := v.cfg.Store.Records(w.provider()); len(got) != 1 || got[0].ID() != rec.ID() {
				t.Errorf("the verifier keeps %d records, want the one made", len(got))
			}
			if got := w.store.Records(w.provider()); len(got) != map[bool]int{false: 1, true: 0}[c.unkept] {
				t.Errorf("the provider keeps %d records (unkept %v)", len(got), c.unkept)
			}
			st := v.cfg.Store.Status(w.provider(), Trust(w.hosts[1].ID(), nil), w.clock.Now())
			if st.State != Failed || !strings.Contains(st.String(), c.detail) {
				t.Errorf("status %q, want failed with %q", st, c.detail)
			}
		})
	}
}

// cpuClaiming computes on a CPU: at a generous 1 TFLOPS, the H100's n
// takes some 24 minutes of the verifier's clock, after which it sends
// a root (of nothing: the test does not spend those minutes).
func cpuClaiming(_ *testing.T, w *world) Workload {
	return workloadFunc(func(_ context.Context, ch challenge.Challenge, _ []string) (Prover, error) {
		w.clock.Advance(time.Duration(challenge.Ops(int(ch.N)) / 1e12 * float64(time.Second)))
		return rootOnly{randomRoot(ch)}, nil
	})
}

// prepared answers at once, as with a product made elsewhere or a root
// of nothing: the verifier's clock sees no time pass.
func prepared(_ *testing.T, w *world) Workload {
	return workloadFunc(func(_ context.Context, ch challenge.Challenge, _ []string) (Prover, error) {
		w.clock.Advance(-w.clock.step)
		return rootOnly{randomRoot(ch)}, nil
	})
}

func randomRoot(ch challenge.Challenge) challenge.Commitment {
	root := make([]byte, 32)
	rand.Read(root)
	return challenge.Commitment{V: challenge.Version, Seed: ch.Seed, N: ch.N, Root: root}
}

// commitsFirst commits to a product of zeros and computes the rows only
// when they are opened.
func commitsFirst(t *testing.T, _ *world) Workload {
	return workloadFunc(func(_ context.Context, ch challenge.Challenge, _ []string) (Prover, error) {
		n := int(ch.N)
		return committedTo(t, ch, make([]int32, n*n), challenge.Recomputed{Seed: [32]byte(ch.Seed), N: n}), nil
	})
}

// halfWrong does half the work: every other row of its product is off.
func halfWrong(t *testing.T, _ *world) Workload {
	return workloadFunc(func(_ context.Context, ch challenge.Challenge, _ []string) (Prover, error) {
		n := int(ch.N)
		c := product(t, ch)
		for i := 0; i < n; i += 2 {
			c[i*n+i]++
		}
		return committedTo(t, ch, c, nil), nil
	})
}

// wrongY computes honestly and answers a wrong y.
func wrongY(*testing.T, *world) Workload {
	return workloadFunc(func(ctx context.Context, ch challenge.Challenge, gpus []string) (Prover, error) {
		p, err := CPU{}.Run(ctx, ch, gpus)
		return withAnswer{p, func(a challenge.Answer) challenge.Answer { a.Y[0] ^= 1; return a }}, err
	})
}

// replays answers with the commitment of an earlier challenge.
func replays(*testing.T, *world) Workload {
	return workloadFunc(func(ctx context.Context, ch challenge.Challenge, gpus []string) (Prover, error) {
		old := ch
		old.Seed = make([]byte, 32)
		return CPU{}.Run(ctx, old, gpus)
	})
}

func refuses(err error) func(*testing.T, *world) Workload {
	return func(*testing.T, *world) Workload {
		return workloadFunc(func(context.Context, challenge.Challenge, []string) (Prover, error) {
			return nil, err
		})
	}
}

// stalls commits honestly and never answers y (until the test ends).
func stalls(t *testing.T, _ *world) Workload {
	return workloadFunc(func(ctx context.Context, ch challenge.Challenge, gpus []string) (Prover, error) {
		p, err := CPU{}.Run(ctx, ch, gpus)
		return stalling{p, t.Context()}, err
	})
}

type stalling struct {
	Prover
	done context.Context
}

func (s stalling) Answer(ctx context.Context, _ challenge.Query) (challenge.Answer, error) {
	select {
	case <-ctx.Done():
	case <-s.done.Done():
	}
	return challenge.Answer{}, errors.New("stalled")
}

// A verifier that floods one provider is refused by the rate limit with
// the reason and when to come back; others are not.
func TestFloodIsRateLimited(t *testing.T) {
	w := newWorld(t, 2, CPU{}, Limits{Burst: 2, PerHour: 1})
	a, b := w.verifier(t, 1), w.verifier(t, 2)
	for i := range 2 {
		if _, err := verify(t, a, w.provider(), mockClaim()); err != nil {
			t.Fatalf("challenge %d within the burst: %v", i, err)
		}
	}
	rec, err := verify(t, a, w.provider(), mockClaim())
	if !errors.Is(err, ErrRateLimited) || !strings.Contains(err.Error(), "2 challenges, then 1 an hour") || !strings.Contains(err.Error(), "retry in 5") {
		t.Fatalf("third challenge: %v, want rate limited", err)
	}
	if rec.Outcome != "" || len(a.cfg.Store.Records(w.provider())) != 2 {
		t.Fatalf("a refusal for flooding left a record (%+v)", rec)
	}
	if _, err := verify(t, b, w.provider(), mockClaim()); err != nil {
		t.Fatalf("another verifier: %v", err)
	}
}

// A verifier has one challenge open at a time, and the provider runs
// Concurrent at once in all.
func TestOneChallengeAtATime(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	gate := workloadFunc(func(ctx context.Context, ch challenge.Challenge, gpus []string) (Prover, error) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return CPU{}.Run(ctx, ch, gpus)
	})
	w := newWorld(t, 2, gate, Limits{})
	a, b := w.verifier(t, 1), w.verifier(t, 2)
	first := make(chan error, 1)
	go func() {
		_, err := verify(t, a, w.provider(), mockClaim())
		first <- err
	}()
	<-entered
	if _, err := verify(t, a, w.provider(), mockClaim()); !errors.Is(err, ErrRateLimited) || !strings.Contains(err.Error(), "one at a time") {
		t.Errorf("a second challenge from the same verifier: %v, want one at a time", err)
	}
	if _, err := verify(t, b, w.provider(), mockClaim()); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "1 challenges running") {
		t.Errorf("a challenge beyond Concurrent: %v, want busy", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the first challenge: %v", err)
	}
}

// A challenge the workload refused frees the provider: the next one,
// from the same verifier, runs; a refusal for now says when to return.
func TestRefusalFreesTheProvider(t *testing.T) {
	refusals := []error{fmt.Errorf("%w: leased", ErrBusy), errors.New("not now, not ever")}
	wl := workloadFunc(func(ctx context.Context, ch challenge.Challenge, gpus []string) (Prover, error) {
		if len(refusals) > 0 {
			err := refusals[0]
			refusals = refusals[1:]
			return nil, err
		}
		return CPU{}.Run(ctx, ch, gpus)
	})
	w := newWorld(t, 1, wl, Limits{})
	v := w.verifier(t, 1)
	if _, err := verify(t, v, w.provider(), mockClaim()); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "retry in 1m0s") {
		t.Fatalf("first challenge: %v, want busy for a minute", err)
	}
	if _, err := verify(t, v, w.provider(), mockClaim()); !errors.Is(err, ErrRefused) {
		t.Fatalf("second challenge: %v, want refused", err)
	}
	if _, err := verify(t, v, w.provider(), mockClaim()); err != nil {
		t.Fatalf("the challenge after the refusals: %v", err)
	}
}

// A claim that cannot be checked is the verifier's mistake: an error
// with no record, and no challenge sent.
func TestBadClaimsLeaveNoRecord(t *testing.T) {
	w := newWorld(t, 1, workloadFunc(func(context.Context, challenge.Challenge, []string) (Prover, error) {
		t.Error("a challenge ran")
		return nil, errors.New("no")
	}), Limits{})
	v := w.verifier(t, 1)
	for _, c := range []struct {
		claim Claim
		want  string
	}{
		{Claim{Class: "nvidia-h100-800gb", GPUs: []string{"GPU-0"}}, `no envelope for class "nvidia-h100-800gb"`},
		{Claim{Class: "nvidia-h100-80gb", GPUs: []string{"GPU-0"}, N: 4096}, "too small to tell it from a card with less"},
		{Claim{Class: "nvidia-h100-80gb", GPUs: []string{"GPU-0"}, N: 200000}, "needs"},
		{Claim{Class: mockClass, GPUs: []string{"GPU-0", "GPU-0"}}, "twice"},
		{Claim{Class: mockClass}, "0 GPUs"},
	} {
		rec, err := verify(t, v, w.provider(), c.claim)
		if !errors.Is(err, ErrClaim) || !strings.Contains(err.Error(), c.want) || rec.Outcome != "" {
			t.Errorf("%+v: %v (record %q), want ErrClaim with %q and no record", c.claim, err, rec.Outcome, c.want)
		}
	}
}
