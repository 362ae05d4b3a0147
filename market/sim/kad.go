package sim

import (
	"math/rand"
	"slices"
	"sort"
	"time"
)

// Kademlia as kad-dht runs it (its defaults): buckets of k peers by
// common prefix length, iterative lookups with alpha requests in flight
// that end when the beta closest peers heard of have answered, then ask
// the rest of the k closest (the follow-up); provider records at the k
// peers closest to a key.
const (
	kadK     = 20
	kadAlpha = 10
	kadBeta  = 3
)

// fillTables gives every live node a routing table as kad-dht's refresh
// leaves it: up to k random peers in each bucket. The nodes sorted by key
// make each bucket a range.
//
// Only public nodes are put in: a node behind NAT enters the tables of
// the peers it dials (dialTable), as kad-dht adds a peer that connects.
func (w *lightWorld) fillTables() {
	var live []*lnode
	for _, n := range w.liveNodes() {
		if !n.nat {
			live = append(live, n)
		}
	}
	sort.Slice(live, func(i, j int) bool { return live[i].key.less(live[j].key) })
	for _, a := range w.liveNodes() {
		a.buckets = nil
		// Deeper buckets hold the peers that share more of a's key; past
		// the prefix only a has, there are none.
		self := 0
		if !a.nat {
			self = 1
		}
		for cpl := 0; cpl < 256 && countPrefix(live, a.key, cpl) > self; cpl++ {
			lo, hi := bucketRange(live, a.key, cpl)
			if hi == lo {
				continue
			}
			a.growBuckets(cpl)
			for _, j := range sample(w.rng, hi-lo, kadK) {
				if live[lo+j] != a {
					a.buckets[cpl] = append(a.buckets[cpl], live[lo+j].idx)
				}
			}
		}
	}
}

func (a *lnode) growBuckets(cpl int) {
	for len(a.buckets) <= cpl {
		a.buckets = append(a.buckets, nil)
	}
}

// bucketRange is the range of sorted nodes that share exactly cpl
// leading bits with key: those that share cpl and differ at the next.
func bucketRange(sorted []*lnode, key kkey, cpl int) (int, int) {
	flip := key
	word, bit := cpl/64, 63-uint(cpl%64)
	flip[word] ^= 1 << bit
	// keep cpl+1 bits of flip, the rest zero, then all ones
	lo, hi := flip, flip
	for b := cpl + 1; b < 256; b++ {
		lo[b/64] &^= 1 << (63 - uint(b%64))
		hi[b/64] |= 1 << (63 - uint(b%64))
	}
	i := sort.Search(len(sorted), func(i int) bool { return !sorted[i].key.less(lo) })
	j := sort.Search(len(sorted), func(i int) bool { return hi.less(sorted[i].key) })
	return i, j
}

// countPrefix is how many sorted nodes share the first n bits of key.
func countPrefix(sorted []*lnode, key kkey, n int) int {
	lo, hi := key, key
	for b := n; b < 256; b++ {
		lo[b/64] &^= 1 << (63 - uint(b%64))
		hi[b/64] |= 1 << (63 - uint(b%64))
	}
	i := sort.Search(len(sorted), func(i int) bool { return !sorted[i].key.less(lo) })
	j := sort.Search(len(sorted), func(i int) bool { return hi.less(sorted[i].key) })
	return j - i
}

// sample is up to k distinct indexes below n, at random.
func sample(rng *rand.Rand, n, k int) []int {
	if n <= k {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	seen := map[int]bool{}
	out := make([]int, 0, k)
	for len(out) < k {
		if i := rng.Intn(n); !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out
}

// learn adds p to a's routing table when its bucket has room, as
// kad-dht does for a peer that answers or connects.
func (w *lightWorld) learn(a, p *lnode) {
	if a == p || p.gone {
		return
	}
	cpl := a.key.cpl(p.key)
	a.growBuckets(cpl)
	if len(a.buckets[cpl]) < kadK && !slices.Contains(a.buckets[cpl], p.idx) {
		a.buckets[cpl] = append(a.buckets[cpl], p.idx)
	}
}

// forget drops p from a's routing table: it did not answer.
func (a *lnode) forget(p int32) {
	for i, b := range a.buckets {
		if j := slices.Index(b, p); j >= 0 {
			a.buckets[i] = slices.Delete(b, j, j+1)
			return
		}
	}
}

// closest is up to k peers of a's routing table closest to key. The
// bucket of key's common prefix with a holds the closest, the deeper
// buckets the next, then the shallower ones from the deepest.
func (w *lightWorld) closest(a *lnode, key kkey, k int) []int32 {
	c := a.key.cpl(key)
	var out []int32
	if c < len(a.buckets) {
		out = append(out, a.buckets[c]...)
		w.byDistance(out, key)
	}
	if len(out) < k {
		var deeper []int32
		for i := c + 1; i < len(a.buckets); i++ {
			deeper = append(deeper, a.buckets[i]...)
		}
		w.byDistance(deeper, key)
		out = append(out, deeper...)
	}
	for i := min(c, len(a.buckets)) - 1; i >= 0 && len(out) < k; i-- {
		b := append([]int32(nil), a.buckets[i]...)
		w.byDistance(b, key)
		out = append(out, b...)
	}
	return out[:min(k, len(out))]
}

func (w *lightWorld) byDistance(ps []int32, key kkey) {
	sort.Slice(ps, func(i, j int) bool {
		return w.net.nodes[ps[i]].key.xor(key).less(w.net.nodes[ps[j]].key.xor(key))
	})
}

// query is one iterative lookup of key from a node, as kad-dht's: the
// alpha closest peers not yet asked are asked at once, each answer names
// closer peers and the provider records its sender holds; the lookup
// ends when the k closest peers heard of have answered (or failed), when
// want providers came (want > 0), or at its deadline.
type query struct {
	w        *lightWorld
	from     *lnode
	key      kkey
	fam      string
	want     int
	deadline time.Duration

	depth    map[int32]int // hops from the asker; 0 for its own table
	state    map[int32]int // 0 heard, 1 asked, 2 answered, 3 failed
	heard    []int32       // by distance
	inflight int
	found    []int32
	seen     map[int32]bool
	followup bool
	done     bool
	// dry is set when the lookup ended for want of peers to ask, not at
	// its deadline or with want providers.
	dry bool
	// quorum, when set, ends the lookup once more holders of the key
	// than it answered; holders counts them.
	quorum  int
	holders int

	onProvider func(p int32, hops int)
	onDone     func(q *query)
	// onIdle runs once the lookup ended and its last request in flight
	// came back: when kad-dht's channel closes.
	onIdle func()
}

func (q *query) idle() {
	if q.done && q.inflight == 0 && q.onIdle != nil {
		q.onIdle()
		q.onIdle = nil
	}
}

const (
	heard = iota
	asked
	answered
	failed
)

// lookup starts a query; onProvider runs for each provider found,
// onDone once at the end.
func (w *lightWorld) lookup(from *lnode, key kkey, want int, limit time.Duration, onProvider func(int32, int), onDone func(*query)) *query {
	q := &query{w: w, from: from, key: key, fam: "dht", want: want, deadline: w.ev.now + limit,
		depth: map[int32]int{}, state: map[int32]int{}, seen: map[int32]bool{},
		onProvider: onProvider, onDone: onDone}
	for _, p := range w.closest(from, key, kadK) {
		q.hear(p, 1)
	}
	w.ev.after(limit, q.finish)
	w.ev.after(0, func() { // once the caller holds q
		q.own()
		q.step()
	})
	return q
}

// own passes on the records the asker holds itself.
func (q *query) own() {
	for _, p := range q.from.records[q.key] {
		q.provider(p, 0)
	}
}

func (q *query) hear(p int32, depth int) {
	if _, ok := q.state[p]; ok || p == q.from.idx {
		return
	}
	q.state[p] = heard
	q.depth[p] = depth
	q.heard = append(q.heard, p)
	q.w.byDistance(q.heard, q.key)
}

func (q *query) provider(p int32, hops int) {
	if q.done || q.seen[p] {
		return
	}
	q.seen[p] = true
	q.found = append(q.found, p)
	if q.onProvider != nil {
		q.onProvider(p, hops)
	}
	if q.want > 0 && len(q.found) >= q.want {
		q.finish()
	}
}

// step asks the closest peers not asked yet, alpha at a time, until the
// beta closest heard of have answered; then the rest of the k closest
// are asked at once, and the lookup ends when they have answered.
func (q *query) step() {
	if q.done {
		return
	}
	if !q.followup && q.closestAnswered(kadBeta, true) {
		q.followup = true
	}
	n := 0
	for _, p := range q.heard {
		if n == kadK {
			break
		}
		if q.state[p] == failed {
			continue
		}
		n++
		if q.state[p] == heard && (q.followup || q.inflight < kadAlpha) {
			q.ask(p)
		}
	}
	if q.inflight == 0 {
		q.dry = true
		q.finish()
	}
}

// closestAnswered says whether the k closest peers heard of that did not
// fail all answered (or, with none heard, true when starved is).
func (q *query) closestAnswered(k int, starved bool) bool {
	n := 0
	for _, p := range q.heard {
		switch q.state[p] {
		case failed:
			continue
		case heard, asked:
			return false
		}
		if n++; n == k {
			break
		}
	}
	return n > 0 || starved
}

func (q *query) ask(p int32) {
	q.state[p] = asked
	q.inflight++
	peer := q.w.net.nodes[p]
	hops := q.depth[p]
	// The market's lookups dial with its short timeout (market.LookupContext).
	q.w.net.requestDial(q.fam, q.from, peer, marketDial, func() func() {
		closer := q.w.closest(peer, q.key, kadK)
		// kad-dht's holders shuffle the records they return, so that
		// askers spread over a key's providers.
		recs := append([]int32(nil), peer.records[q.key]...)
		q.w.rng.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
		q.w.learn(peer, q.from)
		return func() {
			q.inflight--
			q.idle()
			q.state[p] = answered
			q.w.learn(q.from, peer)
			for _, r := range recs {
				q.provider(r, hops)
			}
			if len(recs) > 0 && q.quorum > 0 {
				// kad-dht's SearchValue with a quorum ends once more
				// than that many holders answered.
				if q.holders++; q.holders > q.quorum {
					q.finish()
				}
			}
			for _, c := range closer {
				q.hear(c, hops+1)
			}
			q.step()
		}
	}, func() {
		q.inflight--
		q.idle()
		q.state[p] = failed
		q.from.forget(p)
		q.step()
	})
}

func (q *query) finish() {
	if q.done {
		return
	}
	q.done = true
	if q.onDone != nil {
		q.onDone(q)
	}
	q.idle()
}

// answeredClosest is up to k peers closest to the key that answered.
func (q *query) answeredClosest(k int) []int32 {
	var out []int32
	for _, p := range q.heard {
		if q.state[p] == answered {
			out = append(out, p)
			if len(out) == k {
				break
			}
		}
	}
	return out
}
