package sim

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/aixblock/aixblock/market"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

// Lookup is one DHT provider-record lookup for up to the fanout's
// providers, as the market makes it (market.LookupContext): how long
// until the first provider and over how many links (sequential request
// rounds, 0 when the asking node held the record itself), until the
// fanout-th (what Negotiate waits for; zero when fewer came), and until
// the lookup ended.
type Lookup struct {
	First time.Duration
	Kth   time.Duration
	Took  time.Duration
	Hops  int
	Err   error
}

// Lookups runs count lookups of class's providers from random live
// nodes, one every every, and waits for them all.
func (w *World) Lookups(ctx context.Context, count int, every time.Duration, class string) []Lookup {
	out := make([]Lookup, count)
	var wg sync.WaitGroup
	for i := range count {
		n, done := w.requester()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer done()
			out[i] = w.lookup(ctx, n, class)
		}()
		time.Sleep(every)
	}
	wg.Wait()
	return out
}

// lookup finds up to the fanout's providers of class from n. The links are counted from
// the DHT's query events: the peers n asks first are one link away, a
// peer named in a response one more than its namer. The sender of the
// response that names the first provider is the peer asked whose round
// trip fits the time it came.
func (w *World) lookup(ctx context.Context, n *Node, class string) Lookup {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	qctx, events := routing.RegisterForQueryEvents(ctx)
	depth := map[peer.ID]int{}
	sent := map[peer.ID]time.Time{}
	var mu sync.Mutex
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for ev := range events {
			mu.Lock()
			switch ev.Type {
			case routing.SendingQuery:
				if depth[ev.ID] == 0 {
					depth[ev.ID] = 1
				}
				sent[ev.ID] = time.Now()
			case routing.PeerResponse:
				for _, r := range ev.Responses {
					if depth[r.ID] == 0 {
						depth[r.ID] = depth[ev.ID] + 1
					}
				}
			}
			mu.Unlock()
		}
	}()
	start := time.Now()
	var l Lookup
	found := 0
	for range n.P2P.DHT.FindProvidersAsync(market.LookupContext(qctx), market.ClassCID(netName, class), fanout) {
		if found++; found == 1 {
			l.First = time.Since(start)
		}
		if found == fanout {
			l.Kth = time.Since(start)
		}
	}
	l.Took = time.Since(start)
	cancel()
	<-drained
	if found == 0 {
		return Lookup{Took: l.Took, Err: context.DeadlineExceeded}
	}
	l.Hops = w.responder(n, depth, sent, start.Add(l.First))
	return l
}

// responder is the depth of the peer whose answer came at at, of those
// asked (sent); 0 when none was asked.
func (w *World) responder(n *Node, depth map[peer.ID]int, sent map[peer.ID]time.Time, at time.Time) int {
	best, hops := time.Duration(math.MaxInt64), 0
	for p, t := range sent {
		rtt := 2 * w.net.latency(n.P2P.Host.ID(), p)
		if off := at.Sub(t.Add(rtt)).Abs(); t.Before(at) && off < best {
			best, hops = off, depth[p]
		}
	}
	return hops
}

// Deal is one negotiation's outcome.
type Deal struct {
	Took  time.Duration
	Stats market.NegotiationStats
	Err   error
}

// jobTime is how long a simulated job holds its GPUs.
const jobTime = 5 * time.Second

// Deals negotiates count one-GPU deals for class, one every every, each
// from a random live node that sells nothing; each deal's provider
// releases its GPUs jobTime later. It waits for them all.
func (w *World) Deals(ctx context.Context, count int, every time.Duration, class string) []Deal {
	out := make([]Deal, count)
	var wg sync.WaitGroup
	for i := range count {
		n, done := w.requester()
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			d, st, err := n.Market.Negotiate(ctx, market.OfferRequest{
				Req: market.Requirements{GPUClass: class, GPUs: 1}, Token: "native", MaxPrice: "5000",
				MaxDuration: time.Hour, SpecHash: "5d41402abc4b2a76b9719d911017c592ae5d41402abc4b2a76b9719d911017c5",
			})
			out[i] = Deal{Took: time.Since(start), Stats: st, Err: err}
			done()
			if err == nil {
				time.Sleep(jobTime)
				if p := w.byPeer(d.Provider); p != nil && !p.Gone() {
					p.Market.Release(d.ID)
				}
			}
		}()
		time.Sleep(every)
	}
	wg.Wait()
	return out
}

func (w *World) byPeer(id string) *Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.nodes {
		if n.P2P.Host.ID().String() == id {
			return n
		}
	}
	return nil
}

// observer follows the offers topic on every node: when each offer
// reached each node.
type observer struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	got    map[string][]time.Time // message ID -> arrivals, the publisher's first
}

// Observe starts following the offers topic on every live node (and on
// those that join later).
func (w *World) Observe() {
	ctx, cancel := context.WithCancel(context.Background())
	w.mu.Lock()
	w.obs = &observer{ctx: ctx, cancel: cancel, got: map[string][]time.Time{}}
	w.mu.Unlock()
	for _, n := range w.Live() {
		w.observe(n)
	}
}

func (w *World) observe(n *Node) {
	w.mu.Lock()
	o := w.obs
	w.mu.Unlock()
	if o == nil {
		return
	}
	// A second subscription to the topic the market joined: the node's
	// mesh is the same, its messages are delivered to both. Join would
	// fail (the market holds the topic's handle), so the old call it is.
	//lint:ignore SA1019 the only way to a second handle on a joined topic
	sub, err := n.P2P.PubSub.Subscribe(n.P2P.TopicName("offers/1"))
	if err != nil {
		return
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		defer sub.Cancel()
		for {
			msg, err := sub.Next(o.ctx)
			if err != nil {
				return
			}
			o.mu.Lock()
			o.got[msg.ID] = append(o.got[msg.ID], time.Now())
			o.mu.Unlock()
		}
	}()
}

func (o *observer) close() {
	if o != nil {
		o.cancel()
		o.wg.Wait()
	}
}

// Spread is how long each offer gossiped since the last call took to
// reach share of the nodes live now (from its publication, which its
// publisher hears first), and how many never did.
func (w *World) Spread(share float64) (took []time.Duration, short int) {
	live := len(w.Live())
	need := int(math.Ceil(share * float64(live)))
	o := w.obs
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, at := range o.got {
		if len(at) >= need {
			took = append(took, at[need-1].Sub(at[0]))
		} else {
			short++
		}
		delete(o.got, id)
	}
	return took, short
}
