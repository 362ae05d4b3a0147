package sim

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/aixblock/aixblock/market"
)

// The market's defaults (market.Config's zero values), which the light
// tier's negotiation follows.
const (
	bidWindow      = time.Second
	enoughBids     = 3
	fanout         = 5
	awardTimeout   = 3 * time.Second
	reserveFor     = 10 * time.Second
	refreshEvery   = 30 * time.Second
	refreshLimit   = 2 * fanout
	republishDelay = 2 * time.Second
	marketDial     = market.LookupDialTimeout
)

var errNoProvider = errors.New("sim: no provider found")

// lneg is one negotiation on the requester's side, as
// market.NegotiateMany runs it for one deal.
type lneg struct {
	w       *lightWorld
	r       *lnode
	id      uint64
	start   time.Duration
	targets []int32
	nat     []int32 // found behind NAT, not asked yet
	q       *query  // the providers' lookup; nil when the cache had enough
	pending int
	// pendingNAT of the pending were asked behind NAT
	pendingNAT int
	open       bool // gossip bids invited
	gossiped   bool // the offer went out by gossip
	bids       []lbid
	closed     bool
	deadline   time.Duration
	done       func(Deal)
}

type lbid struct {
	p     int32
	price int
	lat   time.Duration
}

// negotiate runs one deal for an H100 from r; done gets its outcome.
// As market.lookup and its search: the cache first; else the DHT until
// the fanout is full of providers that can be dialled, half the bid
// window passed with one found, the DHT ran dry, or the whole window
// passed, those behind NAT filling the room left; the lookup goes on
// after the offer, its providers asked directly (those behind NAT once
// it ended).
func (w *lightWorld) negotiate(r *lnode, done func(Deal)) {
	w.offers++
	g := &lneg{w: w, r: r, id: uint64(w.offers), start: w.ev.now, done: done}
	g.targets = w.cachedCandidates(r)
	w.refresh(r)
	if len(g.targets) >= fanout {
		g.targets = g.targets[:fanout]
		g.offer()
		return
	}
	skip := map[int32]bool{r.idx: true}
	for _, p := range g.targets {
		skip[p] = true
	}
	g.q = w.lookup(r, w.classKey[classH100], 4*fanout, bidWindow/2+bidWindow, func(p int32, _ int) {
		if skip[p] || len(g.targets) >= fanout || g.closed {
			return
		}
		skip[p] = true
		g.found(p)
	}, func(q *query) {
		switch {
		case g.deadline == 0:
			g.offer()
		case g.closed:
		case q.dry && g.open && !g.gossiped:
			g.gossip() // the DHT showed the class thin
			fallthrough
		default:
			g.askNAT()
		}
		g.check()
	})
	w.ev.after(bidWindow/2, func() {
		if g.deadline == 0 && len(g.targets)+len(g.nat) > 0 {
			g.offer()
		}
	})
	w.ev.after(bidWindow, func() {
		if g.deadline == 0 {
			g.offer()
		}
	})
}

// found takes provider p, named by the lookup: one that can be dialled
// is a target, asked at once when the offer is out, and ends the lookup
// when the fanout is full; one behind NAT waits (see askNAT).
func (g *lneg) found(p int32) {
	if g.w.behindNAT(g.r, g.w.net.nodes[p]) {
		g.nat = append(g.nat, p)
		return
	}
	g.targets = append(g.targets, p)
	if g.deadline > 0 { // found after the offer went out
		g.ask(g.w.net.nodes[p])
	}
	if len(g.targets) == fanout {
		g.q.finish()
	}
}

// askNAT asks the providers found behind NAT, as many as the fanout has
// room for, as market's search passes them on when its lookup ends.
func (g *lneg) askNAT() {
	for len(g.targets) < fanout && len(g.nat) > 0 {
		p := g.nat[0]
		g.nat = g.nat[1:]
		g.targets = append(g.targets, p)
		if g.deadline > 0 {
			g.ask(g.w.net.nodes[p])
		}
	}
}

// behindNAT is market.Market.relayed: p is behind NAT (its DHT records
// carry its relay client's circuit address) and not connected to r.
func (w *lightWorld) behindNAT(r, p *lnode) bool {
	return p.nat && !w.net.connected(r, p)
}

// cachedCandidates are the providers whose adverts r holds, those that
// can be dialled first, then cheapest first.
func (w *lightWorld) cachedCandidates(r *lnode) []int32 {
	var out []int32
	nat := map[int32]bool{}
	for p := range r.cache {
		out = append(out, p)
		nat[p] = w.behindNAT(r, w.net.nodes[p])
	}
	sort.Slice(out, func(i, j int) bool {
		if nat[out[i]] != nat[out[j]] {
			return nat[out[j]]
		}
		pi, pj := r.cache[out[i]], r.cache[out[j]]
		return pi < pj || pi == pj && w.net.nodes[out[i]].key.less(w.net.nodes[out[j]].key)
	})
	return out
}

// refresh re-reads the H100 adverts into r's cache, from r's second
// negotiation on and at most once per refreshEvery: a provider lookup
// for refreshLimit, then a value search for each one's advert that ends
// when two holders answered.
func (w *lightWorld) refresh(r *lnode) {
	first := !r.refreshOK
	if !first && w.ev.now-r.refreshed < refreshEvery {
		return
	}
	r.refreshed, r.refreshOK = w.ev.now, true
	if first {
		return
	}
	w.lookup(r, w.classKey[classH100], refreshLimit, 10*time.Second, func(p int32, _ int) {
		prov := w.net.nodes[p]
		if p == r.idx {
			return
		}
		q := w.lookup(r, advertKey(prov), 0, 5*time.Second, nil, func(*query) {
			if !prov.gone {
				r.cache[p] = prov.price
			}
		})
		q.quorum = 1
	}, nil)
}

// advertKey is where a provider's advert is stored in the DHT.
func advertKey(n *lnode) kkey { return n.key.xor(kkey{0x5a5a5a5a5a5a5a5a}) }

// offer sends the offer to the targets, inviting gossip bids when they
// are fewer than the fanout, and gossips it when the DHT showed fewer
// than the fanout or named none; the bid window starts now.
func (g *lneg) offer() {
	w := g.w
	g.askNAT()
	g.deadline = w.ev.now + bidWindow
	g.open = len(g.targets) < fanout
	for _, p := range g.targets {
		g.ask(w.net.nodes[p])
	}
	if len(g.targets) == 0 || g.open && g.q != nil && g.q.dry {
		g.gossip()
	}
	w.ev.after(bidWindow, g.close)
	g.check()
}

// gossip publishes the offer; the providers that hear it bid back.
func (g *lneg) gossip() {
	w := g.w
	g.gossiped = true
	w.gossiped++
	g.r.msgs++
	w.gossip(g.r, func(n *lnode) {
		if n != g.r && n.class == classH100 && !g.asked(n.idx) {
			g.bidBack(n)
		}
	})
}

func (g *lneg) asked(p int32) bool {
	for _, t := range g.targets {
		if t == p {
			return true
		}
	}
	return false
}

// ask sends the offer to provider p directly; its answer is a bid or a
// refusal.
func (g *lneg) ask(p *lnode) {
	w := g.w
	g.r.msgs++
	sent := w.ev.now
	nat := w.behindNAT(g.r, p)
	g.pending++
	if nat {
		g.pendingNAT++
	}
	answered := func() {
		g.pending--
		if nat {
			g.pendingNAT--
		}
	}
	w.net.request("market", g.r, p, func() func() {
		ok := w.decide(p, g.id)
		return func() {
			answered()
			if ok {
				g.take(lbid{p: p.idx, price: p.price, lat: w.ev.now - sent})
			}
			g.check()
		}
	}, func() {
		answered()
		g.check()
	})
}

// bidBack is a provider that heard the offer by gossip bidding on it
// over a request of its own.
func (g *lneg) bidBack(p *lnode) {
	w := g.w
	if !w.decide(p, g.id) {
		return
	}
	p.msgs++
	sent := w.ev.now
	w.net.request("market", p, g.r, func() func() {
		g.take(lbid{p: p.idx, price: p.price, lat: w.ev.now - sent})
		g.check()
		return nil
	}, func() { delete(p.held, g.id) })
}

// decide is the provider's bid decision: a free GPU is reserved for
// reserveFor, or it does not bid.
func (w *lightWorld) decide(p *lnode, offer uint64) bool {
	if p.class != classH100 {
		return false
	}
	if _, ok := p.held[offer]; ok {
		return true
	}
	used := 0
	for _, until := range p.held {
		if until > w.ev.now {
			used++
		}
	}
	if used >= p.gpus {
		return false
	}
	p.held[offer] = w.ev.now + reserveFor
	w.bids++
	return true
}

// take keeps a bid that came in the window; one that came late is
// released at once.
func (g *lneg) take(b lbid) {
	if g.closed {
		g.release(b.p)
		return
	}
	g.bids = append(g.bids, b)
}

func (g *lneg) release(p int32) {
	w := g.w
	prov := w.net.nodes[p]
	if w.net.connected(g.r, prov) {
		g.r.msgs++
	}
	w.net.send("market", g.r, prov, func() { delete(prov.held, g.id) })
}

// check ends the window when enough bids came, or, the lookup ended and
// the offer not gossiped, every provider asked answered (once a bid
// came, every one asked that was not behind NAT), as market's
// negotiation.waiting.
func (g *lneg) check() {
	if g.closed || g.deadline == 0 {
		return
	}
	waiting := g.pending > 0
	if len(g.bids) > 0 {
		waiting = g.pending > g.pendingNAT
	}
	looking := g.q != nil && !g.q.done
	if len(g.bids) >= enoughBids || !waiting && !g.gossiped && !looking {
		g.close()
	}
}

// close ends the bid window and awards the best bid.
func (g *lneg) close() {
	if g.closed {
		return
	}
	g.closed = true
	if g.q != nil {
		g.q.finish()
	}
	sort.SliceStable(g.bids, func(i, j int) bool {
		a, b := g.bids[i], g.bids[j]
		return a.price < b.price || a.price == b.price && a.lat < b.lat
	})
	g.award(g.bids)
}

// award offers the deal to the first of ranked; one not confirmed within
// awardTimeout goes to the next.
func (g *lneg) award(ranked []lbid) {
	w := g.w
	if len(ranked) == 0 {
		g.done(Deal{Took: w.ev.now - g.start, Err: fmt.Errorf("%w: no bid confirmed (%d asked)", market.ErrNoDeal, len(g.targets))})
		return
	}
	b, rest := ranked[0], ranked[1:]
	p := w.net.nodes[b.p]
	settled := false
	next := func() {
		if !settled {
			settled = true
			g.award(rest)
		}
	}
	w.ev.after(awardTimeout, next)
	g.r.msgs++
	w.net.request("market", g.r, p, func() func() {
		until, ok := p.held[g.id]
		if !ok || until <= w.ev.now {
			return next
		}
		p.held[g.id] = w.ev.now + time.Hour // the job's
		w.republish(p)
		return func() {
			if settled {
				return
			}
			settled = true
			g.won(b, rest)
		}
	}, next)
}

// won ends the negotiation with a deal with b's provider: the other
// bidders are released, and the job frees its GPU jobTime later.
func (g *lneg) won(b lbid, rest []lbid) {
	w := g.w
	for _, o := range rest {
		g.release(o.p)
	}
	g.done(Deal{Took: w.ev.now - g.start, Stats: market.NegotiationStats{Contacted: len(g.targets), Bids: len(g.bids), Awards: 1}})
	p := w.net.nodes[b.p]
	w.ev.after(jobTime, func() {
		delete(p.held, g.id)
		if !p.gone {
			w.republish(p)
		}
	})
}

// deals negotiates count deals, one every every, and waits for them.
func (w *lightWorld) deals(count int, every time.Duration) []Deal {
	out := make([]Deal, count)
	left := count
	for i := range count {
		w.ev.after(time.Duration(i)*every, func() {
			r, done := w.requester()
			w.negotiate(r, func(d Deal) {
				out[i] = d
				done()
				left--
			})
		})
	}
	w.ev.runUntil(func() bool { return left == 0 })
	return out
}

// publish stores n's advert and, for a provider, its records under its
// classes, as market.publish does: a value put and three provides, each
// a lookup of the key and a store at the k closest that answered.
func (w *lightWorld) publish(n *lnode) {
	if n.class == "" {
		return
	}
	for _, k := range []kkey{advertKey(n), w.classKey[market.CPU], w.classKey[market.AnyGPU], w.classKey[n.class]} {
		w.store(n, k)
	}
}

// store puts n's record under k at the k closest peers that answered a
// lookup of k.
func (w *lightWorld) store(n *lnode, k kkey) {
	w.lookup(n, k, 0, 30*time.Second, nil, func(q *query) {
		for _, p := range q.answeredClosest(kadK) {
			holder := w.net.nodes[p]
			w.net.request("dht", n, holder, func() func() {
				if !containsIdx(holder.records[k], n.idx) {
					holder.records[k] = append(holder.records[k], n.idx)
				}
				return nil
			}, func() {})
		}
	})
}

// republish is the advert's on an allocation change, republishDelay
// after the first of a burst; the class records stand (the daemon
// announces them again every AdvertTTL/3).
func (w *lightWorld) republish(n *lnode) {
	if n.republishing {
		return
	}
	n.republishing = true
	w.ev.after(republishDelay, func() {
		n.republishing = false
		if !n.gone {
			w.store(n, advertKey(n))
		}
	})
}

func containsIdx(s []int32, v int32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
