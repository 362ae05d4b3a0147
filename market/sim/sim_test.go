package sim

import (
	"context"
	"os"
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
// SCALE_NODES (default 100,1000,10000), each in its own bubble, then the
// tables. It runs only when SCALE_NODES or SCALE_RUN is set.
func TestScale(t *testing.T) {
	sizes := os.Getenv("SCALE_NODES")
	if sizes == "" && os.Getenv("SCALE_RUN") == "" {
		t.Skip("make bench-scale runs it (SCALE_NODES=100,1000,10000)")
	}
	if sizes == "" {
		sizes = "100,1000,10000"
	}
	var all []Figures
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("SCALE_NODES: %v", err)
		}
		start := time.Now()
		synctest.Test(t, func(t *testing.T) {
			figs, err := Run(context.Background(), Config{Nodes: n, NATShare: envFloat(t, "SCALE_NAT", 0.2), Loss: envFloat(t, "SCALE_LOSS", 0)}, Scenario{
				Settle: time.Minute, Lookups: 200, LookupEvery: 50 * time.Millisecond, Gossiped: 10,
				Deals: 300, DealEvery: 500 * time.Millisecond, Churn: envFloat(t, "SCALE_CHURN", 0.1),
				ChurnWarmup: time.Duration(envFloat(t, "SCALE_CHURN_MINUTES", 20) * float64(time.Minute)),
			})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, figs...)
		})
		t.Logf("%d nodes: %s of wall time", n, time.Since(start).Round(time.Second))
		if err := Report(os.Stdout, all); err != nil {
			t.Fatal(err)
		}
	}
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
