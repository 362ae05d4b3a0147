package replica

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

func TestDecide(t *testing.T) {
	done := func(key string) Replica { return Replica{State: jobs.Completed, Key: key} }
	failed := Replica{State: jobs.Failed}
	running := Replica{State: jobs.Running}
	for _, tc := range []struct {
		name string
		reps []Replica
		want int
		v    verdict
	}{
		{"one still running", []Replica{done("a"), running}, 2, verdict{}},
		{"two agree", []Replica{done("a"), done("a")}, 2, verdict{key: "a"}},
		{"a split asks for a tie-breaker", []Replica{done("a"), done("b")}, 2, verdict{more: true}},
		{"the tie-breaker decides", []Replica{done("a"), done("b"), done("a")}, 2, verdict{key: "a"}},
		{"a failed run asks for another", []Replica{done("a"), failed}, 2, verdict{more: true}},
		{"three of three, one outvoted", []Replica{done("a"), done("a"), done("b")}, 3, verdict{key: "a"}},
		{"no majority in the runs allowed", []Replica{done("a"), done("b"), done("c"), done("d")}, 2,
			verdict{why: "no majority after 4 runs: 1 × a, 1 × b, 1 × c, 1 × d"}},
		{"nothing came back", []Replica{failed, failed, failed, failed}, 2, verdict{why: "no run of 4 returned a result"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decide(tc.reps, tc.want, tc.want+2); got != tc.v {
				t.Fatalf("decide = %+v, want %+v", got, tc.v)
			}
		})
	}
}

// fakeProv is a provider of the fake market.
type fakeProv struct{ id, wallet string }

// fakeLease is a market of providers, tried in order: a run goes to the
// first its apart lets through (as the market's awards do). A run ends at
// once with the result its provider's function gives, unless its
// provider is held: then it runs until finish.
type fakeLease struct {
	mu     sync.Mutex
	jobs   map[string]*api.Job
	provs  []fakeProv
	result func(provider string) string // "" fails the run
	hold   map[string]bool
	gets   map[string]int // reads of each run
	// holdback and verdicts are what each run was submitted and judged
	// with, by provider.
	holdback map[string]int
	verdicts map[string]string
}

func newFakeLease(result func(string) string) *fakeLease {
	f := &fakeLease{jobs: map[string]*api.Job{}, result: result, hold: map[string]bool{}, gets: map[string]int{},
		holdback: map[string]int{}, verdicts: map[string]string{}}
	for i := 1; i <= 6; i++ {
		f.provs = append(f.provs, fakeProv{fmt.Sprintf("prov%d", i), fmt.Sprintf("0xwallet%d", i)})
	}
	return f
}

func (f *fakeLease) Submit(_ context.Context, spec *jobs.Spec, apart Owners, holdback int) (*api.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.provs, func(p fakeProv) bool { return apart.Claim(p.id, p.wallet, "") == "" })
	if i < 0 {
		return nil, errors.New("no provider apart from the others")
	}
	p := f.provs[i]
	f.holdback[p.id] = holdback
	j := &api.Job{Job: jobs.Job{ID: fmt.Sprintf("job%d", len(f.jobs)+1), Spec: *spec, State: jobs.Running},
		Provider: p.id, ProviderWallet: p.wallet}
	f.jobs[j.ID] = j
	if !f.hold[p.id] {
		f.end(j, f.result(p.id))
	}
	return j, nil
}

func (f *fakeLease) SubmitTogether(ctx context.Context, spec *jobs.Spec, k int, apart Owners, holdback int) ([]*api.Job, error) {
	var out []*api.Job
	for range k {
		j, err := f.Submit(ctx, spec, apart, holdback)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

func (f *fakeLease) end(j *api.Job, cid string) {
	j.State, j.ResultCID = jobs.Completed, cid
	if cid == "" {
		j.State = jobs.Failed
	}
}

// finish ends the held run of provider with its result then.
func (f *fakeLease) finish(provider string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, j := range f.jobs {
		if j.Provider == provider && !j.State.Terminal() {
			f.end(j, f.result(provider))
		}
	}
}

// running says whether any run has not ended.
func (f *fakeLease) running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.ContainsFunc(slices.Collect(maps.Values(f.jobs)), func(j *api.Job) bool { return !j.State.Terminal() })
}

func (f *fakeLease) reads(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets[id]
}

func (f *fakeLease) Get(_ context.Context, id string) (*api.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets[id]++
	if j := f.jobs[id]; j != nil {
		v := *j
		return &v, nil
	}
	return nil, jobs.ErrNotFound
}

func (f *fakeLease) Settle(_ context.Context, id, verdict string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[id]
	if j == nil {
		return jobs.ErrNotFound
	}
	if _, twice := f.verdicts[j.Provider]; twice {
		return fmt.Errorf("run %s judged twice", id)
	}
	f.verdicts[j.Provider] = verdict
	return nil
}

// judged is the verdicts given so far, by provider.
func (f *fakeLease) judged() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.verdicts)
}

func (f *fakeLease) Cancel(_ context.Context, id string) (*api.Job, error) {
	return f.Get(context.Background(), id)
}

func newChecker(t *testing.T, l Lease, draw float64) (*Checker, *[]string) {
	t.Helper()
	var mu sync.Mutex
	outvoted := []string{}
	c, err := New(Config{Dir: t.TempDir(), Lease: l, Poll: 10 * time.Millisecond, Rand: func() float64 { return draw },
		Outvoted: func(p, _ string) { mu.Lock(); outvoted = append(outvoted, p); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, &outvoted
}

func waitDecided(t *testing.T, c *Checker, id string) *Group {
	t.Helper()
	var g *Group
	p2ptest.WaitFor(t, 10*time.Second, func() bool {
		g, _ = c.Get(id)
		return g.State.Terminal()
	}, "checked job %s never decided", id)
	return g
}

func spec(v jobs.Verify) *jobs.Spec {
	return &jobs.Spec{Image: "x", MaxPrice: "1", Verify: &v}
}

// Replicas on distinct providers: agreement completes the job; a
// tampering provider is outvoted by a tie-breaker and reported.
func TestReplicas(t *testing.T) {
	honest := func(string) string { return "bafyhonest" }
	tamper := func(p string) string {
		if p == "prov2" {
			return "bafytampered"
		}
		return "bafyhonest"
	}
	for _, tc := range []struct {
		name     string
		result   func(string) string
		runs     int
		outvoted []string
		reason   string
		verdicts map[string]string
	}{
		{"honest replicas agree", honest, 2, []string{}, "2 runs agree",
			map[string]string{"prov1": VerdictAgreed, "prov2": VerdictAgreed}},
		{"a tamperer is outvoted", tamper, 3, []string{"prov2"}, "2 runs agree, 1 outvoted",
			map[string]string{"prov1": VerdictAgreed, "prov2": VerdictOutvoted, "prov3": VerdictAgreed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeLease(tc.result)
			c, outvoted := newChecker(t, l, 0)
			g, err := c.Replicate(context.Background(), spec(jobs.Verify{Replicas: 2, Holdback: "20%"}))
			if err != nil {
				t.Fatal(err)
			}
			g = waitDecided(t, c, g.ID)
			if g.State != jobs.Completed || g.ResultCID != "bafyhonest" || len(g.Replicas) != tc.runs || g.Reason != tc.reason {
				t.Fatalf("group %+v", g)
			}
			if !slices.Equal(*outvoted, tc.outvoted) {
				t.Fatalf("outvoted %v, want %v", *outvoted, tc.outvoted)
			}
			if got := l.judged(); !maps.Equal(got, tc.verdicts) {
				t.Fatalf("verdicts %v, want %v", got, tc.verdicts)
			}
			for p, bps := range l.holdback {
				if bps != 2000 {
					t.Fatalf("run on %s submitted holding back %d bps, want the spec's 2000", p, bps)
				}
			}
			apartOwners(t, g)
		})
	}
}

// apartOwners fails t when two runs of g share a provider or a wallet.
func apartOwners(t *testing.T, g *Group) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range g.Replicas {
		if seen[r.Provider] || seen[r.Wallet] || r.Wallet == "" {
			t.Fatalf("runs %+v: two on one owner, or a wallet unknown", g.Replicas)
		}
		seen[r.Provider], seen[r.Wallet] = true, true
	}
}

// A spot check: drawn, the job runs again elsewhere and a mismatch is
// decided by a third run; not drawn, nothing runs again.
func TestSample(t *testing.T) {
	tamperFirst := func(p string) string {
		if p == "prov1" {
			return "bafytampered"
		}
		return "bafyhonest"
	}
	for _, tc := range []struct {
		name     string
		draw     float64
		runs     int
		checked  bool
		reason   string
		verdicts map[string]string
	}{
		{"not drawn", 0.5, 1, false, "not drawn for a check", map[string]string{"prov1": VerdictNone}},
		{"drawn, the tamperer caught", 0.01, 3, true, "2 runs agree, 1 outvoted",
			map[string]string{"prov1": VerdictSampledMismatch, "prov2": VerdictAgreed, "prov3": VerdictAgreed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeLease(tamperFirst)
			c, outvoted := newChecker(t, l, tc.draw)
			orig, _ := l.Submit(context.Background(), spec(jobs.Verify{Sample: "5%"}), &ownerSet{}, 0)
			if _, err := c.Sample(orig); err != nil {
				t.Fatal(err)
			}
			g := waitDecided(t, c, orig.ID)
			if len(g.Replicas) != tc.runs || g.Checked != tc.checked || g.Reason != tc.reason {
				t.Fatalf("group %+v", g)
			}
			if tc.checked && !slices.Equal(*outvoted, []string{"prov1"}) {
				t.Fatalf("outvoted %v", *outvoted)
			}
			if got := l.judged(); !maps.Equal(got, tc.verdicts) {
				t.Fatalf("verdicts %v, want %v", got, tc.verdicts)
			}
		})
	}
}
