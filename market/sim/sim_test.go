package sim

import (
	"cmp"
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestSmoke runs a small network through every phase in virtual time:
// the DHT finds providers, gossip reaches the nodes, deals are signed,
// and churn replaces nodes without stopping them.
func TestSmoke(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		figs, err := Run(context.Background(), Config{Nodes: 20, NATShare: 0.2, ProviderShare: 0.3}, Scenario{
			Settle: 30 * time.Second, Lookups: 5, LookupEvery: 100 * time.Millisecond, Gossiped: 2,
			Deals: 10, DealEvery: 200 * time.Millisecond, Churn: 2, ChurnWarmup: 2 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := Report(&b, figs); err != nil {
			t.Fatal(err)
		}
		t.Log(b.String())
		for _, f := range figs {
			for _, l := range f.Lookups {
				if l.Err != nil {
					t.Errorf("lookup (churn %v): %v", f.Churn, l.Err)
				}
			}
			for _, d := range f.Deals {
				if d.Err != nil {
					t.Errorf("deal (churn %v): %v", f.Churn, d.Err)
				}
			}
			if len(f.Spread) == 0 {
				t.Errorf("churn %v: no gossiped offer reached 99%% of the nodes", f.Churn)
			}
		}
		if figs[1].Replaced == 0 {
			t.Error("churn replaced no node")
		}
	})
}

// TestScale is make bench-scale: the figures at each size of
// SCALE_NODES (default 100,1000,10000) on each tier of SCALE_TIER (full,
// light, or both, the default: the full tier where a size is at most
// SCALE_FULL_MAX, default 300, and the light tier at every size), then
// the tables. It runs only when SCALE_NODES or SCALE_RUN is set.
func TestScale(t *testing.T) {
	sizes := os.Getenv("SCALE_NODES")
	if sizes == "" && os.Getenv("SCALE_RUN") == "" {
		t.Skip("make bench-scale runs it (SCALE_NODES=100,1000,10000)")
	}
	if sizes == "" {
		sizes = "100,1000,10000"
	}
	tier := cmp.Or(os.Getenv("SCALE_TIER"), "both")
	fullMax := int(envFloat(t, "SCALE_FULL_MAX", 300))
	var all []Figures
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("SCALE_NODES: %v", err)
		}
		cfg, sc := scaleRun(t, n)
		if r := requesters(cfg); sc.DealEvery == 0 && sc.Deals > r {
			// Each deal at once needs a requester of its own.
			t.Fatalf("SCALE_DEALS=%d at once: %d nodes have only %d requesters", sc.Deals, n, r)
		}
		if tier == "full" || tier == "both" && n <= fullMax {
			start := time.Now()
			synctest.Test(t, func(t *testing.T) {
				figs, err := Run(context.Background(), cfg, sc)
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, figs...)
			})
			t.Logf("%d nodes, full tier: %s of wall time", n, time.Since(start).Round(time.Second))
		}
		if tier == "light" || tier == "both" {
			start := time.Now()
			all = append(all, RunLight(cfg, sc)...)
			t.Logf("%d nodes, light tier: %s of wall time", n, time.Since(start).Round(time.Second))
		}
		if err := Report(os.Stdout, all); err != nil {
			t.Fatal(err)
		}
	}
}

// scaleRun is the network and workload of make bench-scale at n nodes.
func scaleRun(t *testing.T, n int) (Config, Scenario) {
	cfg := Config{Nodes: n, NATShare: envFloat(t, "SCALE_NAT", 0.2), Loss: envFloat(t, "SCALE_LOSS", 0),
		ProviderShare: envFloat(t, "SCALE_PROVIDERS", 0), RTTScale: envFloat(t, "SCALE_RTT", 1),
		HandshakeRTTs: int(envFloat(t, "SCALE_HANDSHAKE_RTTS", 1)),
		Cost:          Cost{Proc: envMs(t, "SCALE_PROC_MS", 0), Cores: int(envFloat(t, "SCALE_CORES", 0))}}
	return cfg, Scenario{
		Settle: time.Minute, Lookups: 200, LookupEvery: 50 * time.Millisecond, Gossiped: 10,
		Deals: int(envFloat(t, "SCALE_DEALS", 300)), DealEvery: envMs(t, "SCALE_DEAL_EVERY_MS", 500),
		Churn:       envFloat(t, "SCALE_CHURN", 0.1),
		ChurnWarmup: time.Duration(envFloat(t, "SCALE_CHURN_MINUTES", 20) * float64(time.Minute)),
	}
}

// requesters is how many of cfg's nodes sell nothing.
func requesters(cfg Config) int {
	cfg.withDefaults()
	r := 0
	for i := range cfg.Nodes {
		if cfg.classOf(i) == "" {
			r++
		}
	}
	return r
}

// envMs is the environment's name in milliseconds (fractions allowed),
// def when unset.
func envMs(t *testing.T, name string, def float64) time.Duration {
	return time.Duration(envFloat(t, name, def) * float64(time.Millisecond))
}

func envFloat(t *testing.T, name string, def float64) float64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

// TestLightSmoke runs the light tier small: lookups find providers,
// gossip reaches the nodes, deals are signed, churn replaces nodes.
func TestLightSmoke(t *testing.T) {
	figs := RunLight(Config{Nodes: 200, NATShare: 0.2}, Scenario{
		Settle: 10 * time.Second, Lookups: 20, LookupEvery: 50 * time.Millisecond, Gossiped: 2,
		Deals: 20, DealEvery: 500 * time.Millisecond, Churn: 2, ChurnWarmup: time.Minute,
	})
	for _, f := range figs {
		for _, d := range f.Deals {
			if d.Err != nil {
				t.Errorf("deal (churn %v): %v", f.Churn, d.Err)
			}
		}
		if len(f.Spread) == 0 {
			t.Errorf("churn %v: no gossiped offer reached 99%% of the nodes", f.Churn)
		}
	}
	for _, l := range figs[0].Lookups {
		if l.Err != nil {
			t.Errorf("lookup: %v", l.Err)
		}
	}
	if len(figs) != 2 || figs[1].Replaced == 0 {
		t.Error("churn replaced no node")
	}
}

// TestClosest checks the routing table's closest peers against a sort
// of the whole table.
func TestClosest(t *testing.T) {
	w := newLightWorld(Config{Nodes: 500})
	for _, tc := range []struct {
		name string
		key  kkey
	}{{"random key", randKey(w.rng)}, {"a node's own key", w.net.nodes[7].key}, {"a class", w.classKey[classH100]}} {
		t.Run(tc.name, func(t *testing.T) {
			a := w.net.nodes[3]
			var all []int32
			for _, b := range a.buckets {
				all = append(all, b...)
			}
			w.byDistance(all, tc.key)
			got := w.closest(a, tc.key, kadK)
			if !slices.Equal(got, all[:kadK]) {
				t.Errorf("closest = %v, want %v", got, all[:kadK])
			}
		})
	}
}
