package sim

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// Report writes the figures of each run as the tables of the closing
// note: DHT lookups, gossip, deals, and memory.
func Report(out io.Writer, figs []Figures) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	sections := []struct {
		title, head string
		row         func(Figures) string
	}{
		{"DHT provider-record lookup (up to 5 providers of a class, as the market looks)", "nodes\ttier\tchurn/h\tlookups\tfailed\thops p50\thops p95\t1st ms p50\t1st ms p95\t5th ms p50\t5th ms p95\tend ms p50\tend ms p95\t", lookupRow},
		{"Offer gossip (offers for a class with fewer providers than the fanout)", "nodes\ttier\tchurn/h\toffers\tto 99% p50 ms\tto 99% p95 ms\tto 99% max ms\tnever 99%\t", gossipRow},
		{"Offer to signed deal (one H100)", "nodes\ttier\tchurn/h\tdeals\tfailed\tp50 ms\tp99 ms\tgossiped\tmarket msgs/deal\tdht msgs/deal\tgossip msgs/deal\tbids/deal\twasted bids/deal\t", dealRow},
		{"Cost per node (settled, before churn)", "nodes\ttier\theap MiB/node\tgoroutines/node\t", costRow},
	}
	for _, s := range sections {
		fmt.Fprintf(tw, "\n%s\n%s\n", s.title, s.head)
		for _, f := range figs {
			if s.row != nil && (f.Churn == 0 || s.title[:4] != "Cost") {
				fmt.Fprintln(tw, s.row(f))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, f := range figs {
		for why, n := range failures(f) {
			fmt.Fprintf(out, "failed deals at %d nodes (%s), churn %s: %d× %s\n", f.Nodes, f.Tier, churn(f), n, why)
		}
	}
	return nil
}

// failures counts the failed deals of f by the start of their error.
func failures(f Figures) map[string]int {
	out := map[string]int{}
	for _, d := range f.Deals {
		if d.Err != nil {
			why := d.Err.Error()
			out[why[:min(len(why), 160)]]++
		}
	}
	return out
}

// pct is the p-th percentile (0 to 100) of ds, nearest rank.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }

func churn(f Figures) string {
	if f.Churn == 0 {
		return "0"
	}
	return fmt.Sprintf("%.0f%% (%d)", 100*f.Churn, f.Replaced)
}

func lookupRow(f Figures) string {
	var first, kth, took, hops []time.Duration
	failed := 0
	for _, l := range f.Lookups {
		if l.Err != nil {
			failed++
			continue
		}
		first = append(first, l.First)
		if l.Kth > 0 {
			kth = append(kth, l.Kth)
		}
		took = append(took, l.Took)
		hops = append(hops, time.Duration(l.Hops))
	}
	return fmt.Sprintf("%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t", f.Nodes, f.Tier, churn(f), len(f.Lookups), failed,
		pct(hops, 50), pct(hops, 95), ms(pct(first, 50)), ms(pct(first, 95)), ms(pct(kth, 50)), ms(pct(kth, 95)), ms(pct(took, 50)), ms(pct(took, 95)))
}

func gossipRow(f Figures) string {
	return fmt.Sprintf("%d\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t", f.Nodes, f.Tier, churn(f), len(f.Spread)+f.Short,
		ms(pct(f.Spread, 50)), ms(pct(f.Spread, 95)), ms(pct(f.Spread, 100)), f.Short)
}

func dealRow(f Figures) string {
	var took []time.Duration
	failed := 0
	for _, d := range f.Deals {
		if d.Err != nil {
			failed++
			continue
		}
		took = append(took, d.Took)
	}
	ok := float64(max(len(took), 1))
	per := func(fam string) string { return fmt.Sprintf("%.1f", float64(f.Messages[fam])/ok) }
	return fmt.Sprintf("%d\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%.1f\t%.1f\t", f.Nodes, f.Tier, churn(f), len(f.Deals), failed,
		ms(pct(took, 50)), ms(pct(took, 99)), f.Gossiped, per("market-own"), per("dht"), per("gossip"),
		float64(f.Bids)/ok, float64(f.Bids-int64(len(took)))/ok)
}

func costRow(f Figures) string {
	return fmt.Sprintf("%d\t%s\t%.2f\t%.1f\t", f.Nodes, f.Tier, f.HeapMiB, f.Goroutines)
}
