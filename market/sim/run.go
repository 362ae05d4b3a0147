package sim

import (
	"context"
	"errors"
	"runtime"
	"time"
)

// Scenario is the workload of a run, in virtual time.
type Scenario struct {
	// Settle is how long the network runs before anything is measured:
	// the providers publish their adverts and announce their classes.
	Settle time.Duration
	// Lookups of H100 providers, one every LookupEvery.
	Lookups     int
	LookupEvery time.Duration
	// Gossiped offers: deals for a class nobody sells, which the DHT
	// cannot name a provider of, one a second.
	Gossiped int
	// Deals for an H100, one every DealEvery.
	Deals     int
	DealEvery time.Duration
	// Churn is the share of the nodes replaced per hour in the second
	// round of measurements, after ChurnWarmup of it; zero skips it.
	Churn       float64
	ChurnWarmup time.Duration
}

// Figures are one round of measurements on one network.
type Figures struct {
	Nodes int
	// Tier is "full" (libp2p hosts on mocknet) or "light" (the
	// discrete-event model).
	Tier     string
	Churn    float64 // share per hour; zero without
	Replaced int     // nodes replaced by churn before and during the round
	Lookups  []Lookup
	// Spread is how long each gossiped offer took to reach 99% of the
	// nodes; Short counts those that never did.
	Spread []time.Duration
	Short  int
	Deals  []Deal
	// Gossiped counts the deals' offers that went out by gossip.
	Gossiped int
	// Messages sent during the deals, by protocol family ("market" counts
	// requests; "market-own" is the markets' own count), and bids made.
	Messages map[string]int64
	Bids     int64
	// HeapMiB and Goroutines per node, once the network settled.
	HeapMiB    float64
	Goroutines float64
}

// Run builds cfg's network, lets it settle, measures a round, and, with
// sc.Churn, another under churn. Call it inside a synctest bubble.
func Run(ctx context.Context, cfg Config, sc Scenario) ([]Figures, error) {
	w, err := NewWorld(ctx, cfg)
	if err != nil {
		return nil, err
	}
	time.Sleep(sc.Settle)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	n := float64(len(w.Live()))
	calm := Figures{Nodes: len(w.Live()), Tier: "full", HeapMiB: float64(ms.HeapInuse) / n / (1 << 20), Goroutines: float64(runtime.NumGoroutine()) / n}
	w.Observe()
	w.round(ctx, sc, &calm)
	out := []Figures{calm}
	var churnErr error
	if sc.Churn > 0 {
		cctx, stop := context.WithCancel(ctx)
		done := make(chan int)
		go func() {
			r, err := w.Churn(cctx, sc.Churn)
			churnErr = err
			done <- r
		}()
		time.Sleep(sc.ChurnWarmup)
		churned := Figures{Nodes: calm.Nodes, Tier: calm.Tier, Churn: sc.Churn}
		w.round(ctx, sc, &churned)
		stop()
		churned.Replaced = <-done
		out = append(out, churned)
	}
	return out, errors.Join(churnErr, w.Close())
}

// round measures lookups, gossip and deals into f.
func (w *World) round(ctx context.Context, sc Scenario, f *Figures) {
	f.Lookups = w.Lookups(ctx, sc.Lookups, sc.LookupEvery, classH100)
	w.Spread(0.99) // forget what came before
	w.Deals(ctx, sc.Gossiped, time.Second, classUnsold)
	time.Sleep(5 * time.Second)
	f.Spread, f.Short = w.Spread(0.99)
	msgs, own, bids := w.Net().Counts(), w.marketMessages(), w.bids()
	f.Deals = w.Deals(ctx, sc.Deals, sc.DealEvery, classH100)
	time.Sleep(5 * time.Second)
	took, short := w.Spread(0.99)
	f.Gossiped = len(took) + short
	f.Messages = map[string]int64{"market-own": w.marketMessages() - own}
	for fam, c := range w.Net().Counts() {
		f.Messages[fam] = c - msgs[fam]
	}
	f.Bids = w.bids() - bids
}

// Net is the simulated network.
func (w *World) Net() *Net { return w.net }

func (w *World) all() []*Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*Node(nil), w.nodes...)
}

func (w *World) marketMessages() (s int64) {
	for _, n := range w.all() {
		s += n.Market.MessagesSent()
	}
	return s
}

func (w *World) bids() (s int64) {
	for _, n := range w.all() {
		b, _ := n.Market.BidCounts()
		s += b
	}
	return s
}
