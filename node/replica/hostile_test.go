package replica

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// fetchRecorder is a Digest that records each result it fetches, and
// whether a run was still going then.
type fetchRecorder struct {
	mu      sync.Mutex
	l       *fakeLease
	fetched []string
	early   []string // fetched while a run had not ended
}

func (f *fetchRecorder) digest(_ context.Context, cid string, _ []string) (string, error) {
	running := f.l.running()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetched = append(f.fetched, cid)
	if running {
		f.early = append(f.early, cid)
	}
	return "digest-of-" + strings.TrimPrefix(cid, "bafy"), nil
}

// seen is the first result fetched so far: what a provider connected
// to the requester learns from its wants.
func (f *fetchRecorder) seen() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.fetched) == 0 {
		return ""
	}
	return f.fetched[0]
}

// A copier runs a replica without computing and, at its end, claims the
// result CID it saw the requester fetch. No result of the group is
// fetched while a run is going, so it has seen none: its guess is
// outvoted by a tie-breaker, and it gains nothing from waiting.
func TestCopierSeesNoResultBeforeItCommits(t *testing.T) {
	var rec *fetchRecorder
	l := newFakeLease(func(p string) string {
		if p == "prov2" { // the copier
			return cmpOr(rec.seen(), "bafyguess")
		}
		return "bafyhonest"
	})
	l.hold["prov2"] = true
	rec = &fetchRecorder{l: l}
	var mu sync.Mutex
	var out []string
	c, err := New(Config{Dir: t.TempDir(), Lease: l, Poll: 10 * time.Millisecond, Digest: rec.digest,
		Outvoted: func(p, _ string) { mu.Lock(); out = append(out, p); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	g, err := c.Replicate(context.Background(), spec(jobs.Verify{Replicas: 2, Outputs: []string{"/outputs/metrics.json"}}))
	if err != nil {
		t.Fatal(err)
	}
	// The honest run ended; the checker goes on reading the copier's.
	p2ptest.WaitFor(t, 10*time.Second, func() bool { return l.reads("job2") >= 5 },
		"the copier's run was never read")
	if s := rec.seen(); s != "" {
		t.Fatalf("result %s fetched while the copier's run was going", s)
	}
	l.finish("prov2")
	g = waitDecided(t, c, g.ID)
	if len(rec.early) != 0 {
		t.Fatalf("fetched before every run ended: %v", rec.early)
	}
	if g.State != jobs.Completed || g.ResultCID != "bafyhonest" || len(g.Replicas) != 3 || g.Replicas[1].Outcome != Outvoted {
		t.Fatalf("group %+v: want the copier outvoted by a tie-breaker", g)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(out, []string{"prov2"}) {
		t.Fatalf("outvoted %v, want the copier", out)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Two providers with their own peer IDs and one wallet: the second run
// never goes to the first's colluder, nor does the tie-breaker.
func TestColludersOnOneWallet(t *testing.T) {
	l := newFakeLease(func(p string) string {
		if p == "prov3" {
			return "bafyother"
		}
		return "bafyhonest"
	})
	l.provs[1].wallet = l.provs[0].wallet // prov2 is prov1's colluder
	c, _ := newChecker(t, l, 0)
	g, err := c.Replicate(context.Background(), spec(jobs.Verify{Replicas: 2}))
	if err != nil {
		t.Fatal(err)
	}
	g = waitDecided(t, c, g.ID)
	var provs []string
	for _, r := range g.Replicas {
		provs = append(provs, r.Provider)
	}
	if !slices.Equal(provs, []string{"prov1", "prov3", "prov4"}) {
		t.Fatalf("runs on %v: want prov1, then prov3 and prov4 (prov2 shares prov1's wallet)", provs)
	}
	apartOwners(t, g)
}

// A comparator decides what agrees where result CIDs differ: its
// equivalence classes make the majority, and each comparison is run once
// and recorded with its cost.
func TestComparatorClasses(t *testing.T) {
	near := func(a, b string) bool { return strings.HasPrefix(a, "bafyclose") && strings.HasPrefix(b, "bafyclose") }
	for _, tc := range []struct {
		name        string
		results     map[string]string
		runs        int
		comparisons int
		reason      string
	}{
		{"equivalent results agree", map[string]string{"prov1": "bafyclose1", "prov2": "bafyclose2"}, 2, 1, "2 runs agree"},
		{"a different one is outvoted", map[string]string{"prov1": "bafyclose1", "prov2": "bafyfar", "prov3": "bafyclose3"},
			3, 2, "2 runs agree, 1 outvoted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeLease(func(p string) string { return tc.results[p] })
			var calls int
			cfg := Config{Dir: t.TempDir(), Lease: l, Poll: 10 * time.Millisecond,
				Compare: func(_ context.Context, _ *jobs.Comparator, a, b string) (bool, error) {
					calls++
					return near(a, b), nil
				}}
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			g, err := c.Replicate(context.Background(), spec(jobs.Verify{Replicas: 2, Comparator: &jobs.Comparator{Image: "cmp", Command: []string{"cmp"}}}))
			if err != nil {
				t.Fatal(err)
			}
			g = waitDecided(t, c, g.ID)
			if g.State != jobs.Completed || g.ResultCID != "bafyclose1" || len(g.Replicas) != tc.runs || g.Reason != tc.reason {
				t.Fatalf("group %+v", g)
			}
			if len(g.Comparisons) != tc.comparisons || calls != tc.comparisons {
				t.Fatalf("%d comparisons recorded, %d run: want %d", len(g.Comparisons), calls, tc.comparisons)
			}
		})
	}
}
