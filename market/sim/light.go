package sim

import (
	"github.com/aixblock/aixblock/market"
	"math/rand"
	"runtime"
	"time"
)

// lightWorld is the light tier: the network of Config's shape as a
// discrete-event model (see the package doc for what it keeps and what
// it leaves out).
type lightWorld struct {
	cfg      Config
	ev       *events
	net      *lnet
	rng      *rand.Rand
	classKey map[string]kkey
	busy     map[int32]bool
	offers   int
	gossiped int // offers opened to gossip bids
	bids     int64
	replaced int
}

// newLightWorld builds cfg's nodes with full routing tables, gossip
// meshes and the providers' records in place, as after the full tier's
// settling.
func newLightWorld(cfg Config) *lightWorld {
	cfg.withDefaults()
	ev := &events{}
	w := &lightWorld{cfg: cfg, ev: ev, net: &lnet{ev: ev, counts: map[string]int64{}, scale: cfg.RTTScale, handshake: cfg.HandshakeRTTs, cpu: newCPUs(ev, cfg.Cost)},
		rng: rand.New(rand.NewSource(cfg.Seed)), classKey: map[string]kkey{}, busy: map[int32]bool{}}
	for _, c := range []string{classH100, classA100, classRare, market.CPU, market.AnyGPU} {
		w.classKey[c] = randKey(w.rng)
	}
	for i := range cfg.Nodes {
		w.add(cfg.classOf(i), i >= 2 && w.rng.Float64() < cfg.NATShare)
	}
	w.fillTables()
	for _, n := range w.net.nodes {
		w.joinMesh(n)
		w.dialBootstrap(n)
		w.dialTable(n)
	}
	for _, n := range w.net.nodes {
		w.publish(n)
	}
	return w
}

// add makes the next node, selling class when not empty, and marks it up.
func (w *lightWorld) add(class string, nat bool) *lnode {
	n := &lnode{idx: int32(len(w.net.nodes)), key: randKey(w.rng), region: w.rng.Intn(len(regionNames)), nat: nat,
		class: class, price: 1000 + w.rng.Intn(1000), conns: map[int32]time.Duration{},
		records: map[kkey][]int32{}, held: map[uint64]time.Duration{}, cache: map[int32]int{}, up: true}
	if class != "" {
		n.gpus = 8
	}
	w.net.nodes = append(w.net.nodes, n)
	return n
}

// dialBootstrap connects n to Degree random public nodes, as a joining
// daemon dials its bootstrap peers.
func (w *lightWorld) dialBootstrap(n *lnode) {
	for _, p := range w.pick(w.cfg.Degree, func(o *lnode) bool { return !o.nat && o != n }) {
		w.net.connect(n, p)
	}
}

// dialTable connects n to the peers of its routing table, as its walk
// and refresh of the DHT did; they learn n.
func (w *lightWorld) dialTable(n *lnode) {
	for _, b := range n.buckets {
		for _, p := range b {
			o := w.net.nodes[p]
			w.net.connect(n, o)
			w.learn(o, n)
		}
	}
}

// pick is up to k distinct live nodes that ok accepts, at random.
func (w *lightWorld) pick(k int, ok func(*lnode) bool) []*lnode {
	var out []*lnode
	for tries := 0; len(out) < k && tries < 50*k; tries++ {
		o := w.net.nodes[w.rng.Intn(len(w.net.nodes))]
		if o.up && !o.gone && ok(o) && !containsNode(out, o) {
			out = append(out, o)
		}
	}
	return out
}

func containsNode(ns []*lnode, n *lnode) bool {
	for _, o := range ns {
		if o == n {
			return true
		}
	}
	return false
}

func (w *lightWorld) liveNodes() []*lnode {
	var out []*lnode
	for _, n := range w.net.nodes {
		if n.up && !n.gone {
			out = append(out, n)
		}
	}
	return out
}

// requester is a random live node that sells nothing and is not busy,
// marked busy until done runs.
func (w *lightWorld) requester() (*lnode, func()) {
	for {
		n := w.net.nodes[w.rng.Intn(len(w.net.nodes))]
		if n.class == "" && n.up && !n.gone && !w.busy[n.idx] {
			w.busy[n.idx] = true
			return n, func() { delete(w.busy, n.idx) }
		}
	}
}

// RunLight is Run on the light tier: cfg's network as a discrete-event
// model, in virtual time of its own (no synctest bubble needed). Loss
// and Config.Market are not modelled.
func RunLight(cfg Config, sc Scenario) []Figures {
	w := newLightWorld(cfg)
	w.ev.runFor(sc.Settle)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	live := float64(len(w.liveNodes()))
	calm := Figures{Nodes: len(w.liveNodes()), Tier: "light", HeapMiB: float64(ms.HeapInuse) / live / (1 << 20), Goroutines: float64(runtime.NumGoroutine()) / live}
	w.round(sc, &calm)
	out := []Figures{calm}
	if sc.Churn > 0 {
		stop := w.churn(sc.Churn)
		w.ev.runFor(sc.ChurnWarmup)
		churned := Figures{Nodes: calm.Nodes, Tier: calm.Tier, Churn: sc.Churn}
		w.round(sc, &churned)
		stop()
		churned.Replaced = w.replaced
		out = append(out, churned)
	}
	return out
}

// round measures lookups, gossip and deals into f, as World.round.
func (w *lightWorld) round(sc Scenario, f *Figures) {
	f.Lookups = w.lookups(sc.Lookups, sc.LookupEvery)
	f.Spread, f.Short = w.gossipRound(sc.Gossiped, time.Second)
	before, bids, own, gossiped := cloneCounts(w.net.counts), w.bids, w.marketMessages(), w.gossiped
	f.Deals = w.deals(sc.Deals, sc.DealEvery)
	f.Gossiped = w.gossiped - gossiped
	f.Messages = map[string]int64{"market-own": w.marketMessages() - own}
	for fam, c := range w.net.counts {
		f.Messages[fam] = c - before[fam]
	}
	f.Bids = w.bids - bids
}

func cloneCounts(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (w *lightWorld) marketMessages() (s int64) {
	for _, n := range w.net.nodes {
		s += n.msgs
	}
	return s
}

// lookups runs count lookups of the H100 providers, as World.Lookups,
// one every every, from random requesters, and waits for them all.
func (w *lightWorld) lookups(count int, every time.Duration) []Lookup {
	out := make([]Lookup, count)
	left := count
	for i := range count {
		w.ev.after(time.Duration(i)*every, func() {
			n, done := w.requester()
			start := w.ev.now
			var l Lookup
			found := 0
			// kad-dht's lookup ends, and its channel closes, when it has
			// the providers asked for or its follow-up is done; requests
			// still in flight are cancelled then.
			w.lookup(n, w.classKey[classH100], fanout, 30*time.Second, func(_ int32, h int) {
				if found++; found == 1 {
					l.First, l.Hops = w.ev.now-start, h
				}
				if found == fanout {
					l.Kth = w.ev.now - start
				}
			}, func(*query) {
				l.Took = w.ev.now - start
				if found == 0 {
					l = Lookup{Took: l.Took, Err: errNoProvider}
				}
				out[i] = l
				done()
				left--
			})
		})
	}
	w.ev.runUntil(func() bool { return left == 0 })
	return out
}
