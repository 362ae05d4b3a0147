package market

import (
	"context"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// LookupDialTimeout bounds each dial the market's DHT lookups make. A peer
// that can be reached connects within three round trips (TCP, then the
// security handshake with the muxer agreed inside it), under a second on
// the slowest links between regions; one behind NAT, or gone, never
// answers, and libp2p's own timeout (15 s a dial) would hold the lookup
// that long.
const LookupDialTimeout = 1500 * time.Millisecond

// firstAnswers ends a value search once the first holders of the value
// answered, rather than when the whole lookup did.
var firstAnswers = dht.Quorum(1)

// LookupContext is ctx for a DHT lookup as the market makes one: its
// dials give up on an unreachable peer after LookupDialTimeout.
func LookupContext(ctx context.Context) context.Context {
	return network.WithDialPeerTimeout(ctx, LookupDialTimeout)
}

// search is the DHT lookup of an offer's providers. It hands the offer
// what it found within half the bid window; when that deadline, not the
// DHT, ended it, it goes on during the bid window, and the providers it
// finds then are asked directly too (more). An offer to fewer than the
// fanout invites gossip bids as before, but it is gossiped only once the
// DHT showed the class to be thin (the lookup ran dry), or when it found
// no one: a copy to every node per deal grows with the network, and
// every free provider that hears it bids.
type search struct {
	m     *Market
	r     OfferRequest
	ctx   context.Context // the lookup's
	skip  map[string]bool
	ch    <-chan peer.AddrInfo
	stop  context.CancelFunc
	found []peer.ID
	poor  []peer.ID // found, with a poor record: asked only when no others are
	// relayed were found behind NAT (see Market.relayed): asked after the
	// providers that can be dialled, before those with a poor record.
	relayed []peer.ID
	refuse  []Refusal // found, unable to serve by their adverts
	// dry is set when the DHT had no more providers to give (read it
	// once more is closed).
	dry bool
	// gossip is whether to gossip the offer when it goes out; more, when
	// not nil, delivers providers found after it went out.
	gossip bool
	more   chan peer.ID
}

// searchProviders looks up providers of class that could serve r, not
// in skip, until the fanout is full with the have this node knew of;
// the lookup lives on for the bid window after its first half, unless
// stopped.
func (m *Market) searchProviders(ctx context.Context, class string, r OfferRequest, skip map[string]bool, have int) *search {
	ctx, stop := context.WithTimeout(LookupContext(ctx), m.cfg.BidWindow/2+m.cfg.BidWindow)
	s := &search{m: m, r: r, ctx: ctx, skip: skip, stop: stop}
	s.ch = m.n.DHT.FindProvidersAsync(ctx, classCID(m.n.Network(), class), 4*m.cfg.Fanout)
	half := time.NewTimer(m.cfg.BidWindow / 2)
	defer half.Stop()
	s.until(half.C, m.cfg.Fanout-have)
	if have+len(s.found)+len(s.relayed) == 0 && !s.dry {
		// Nothing yet, and the DHT has more to ask: wait for the first
		// rather than flood the network with the offer.
		half.Reset(m.cfg.BidWindow / 2)
		s.until(half.C, 1)
	}
	return s
}

// until takes providers from the lookup until n were found in all, the
// DHT ran dry, or deadline.
func (s *search) until(deadline <-chan time.Time, n int) {
	for len(s.found) < n {
		select {
		case ai, ok := <-s.ch:
			if !ok {
				s.dry = s.ctx.Err() == nil
				return
			}
			s.take(ai)
		case <-deadline:
			return
		}
	}
}

// take keeps a provider the DHT named, unless it is skipped, its advert
// says it cannot serve, its record is poor, or it sits behind NAT (kept
// aside); it reports whether it kept it. The DHT's holders return their
// records in random order, and one answer names up to the 4 fanouts
// asked for, so setting aside the providers behind NAT seldom costs the
// lookup time.
func (s *search) take(ai peer.AddrInfo) bool {
	m := s.m
	if s.skip[ai.ID.String()] {
		return false
	}
	s.skip[ai.ID.String()] = true
	if a := m.cachedAdvert(ai.ID); a != nil {
		if nb := a.whyNot(s.r); nb != nil {
			s.refuse = append(s.refuse, m.advertRefusal(a, nb, s.r))
			return false
		}
	}
	if len(ai.Addrs) > 0 {
		m.n.Host.Peerstore().AddAddrs(ai.ID, ai.Addrs, 10*time.Minute)
	}
	if m.rep.Get(ai.ID.String()).Score() < 0.25 {
		s.poor = append(s.poor, ai.ID)
		return false
	}
	if m.relayed(ai.ID) {
		s.relayed = append(s.relayed, ai.ID)
		return false
	}
	s.found = append(s.found, ai.ID)
	return true
}

// settle decides, with have (the providers the offer goes to), whether
// the offer is gossiped now and whether the lookup goes on: it does when
// its deadline cut it short of the fanout and follow is set.
func (s *search) settle(have int, follow bool) {
	fanout := s.m.cfg.Fanout
	s.gossip = have == 0 || have < fanout && s.dry
	if !follow || s.dry || have >= fanout {
		s.stop()
		return
	}
	s.more = make(chan peer.ID)
	left := fanout - have
	s.m.spawn(context.Background(), func(ctx context.Context) { s.follow(ctx, left) })
}

// follow passes on up to left more providers as the lookup finds them,
// and those behind NAT once it ends, until it ends or is stopped; it
// sets dry, then closes more.
func (s *search) follow(ctx context.Context, left int) {
	defer close(s.more)
	for left > 0 {
		ai, ok := <-s.ch
		if !ok {
			s.dry = s.ctx.Err() == nil
			for _, p := range s.relayed[:min(left, len(s.relayed))] {
				if !s.pass(ctx, p) {
					return
				}
			}
			return
		}
		if !s.take(ai) {
			continue
		}
		if !s.pass(ctx, ai.ID) {
			return
		}
		left--
	}
}

// pass hands p to the negotiation; false when it, or the search, ended.
func (s *search) pass(ctx context.Context, p peer.ID) bool {
	select {
	case s.more <- p:
		return true
	case <-ctx.Done():
		return false
	case <-s.ctx.Done():
		return false
	}
}

// gossip publishes the offer to the network, for gossip bids.
func (n *negotiation) gossip(ctx context.Context) {
	n.gossiped = true
	n.m.gossipOffer(ctx, n.raw)
}

// lookupEnded is the search's end during the bid window: a class the DHT
// showed to have fewer than the fanout, of an offer that invites gossip
// bids, is gossiped now.
func (n *negotiation) lookupEnded() {
	if n.search.dry && n.o.OpenBids && !n.gossiped {
		n.gossip(n.wctx)
	}
}

// refreshRepeat is refresh for a negotiation of class: the first one
// only notes the class, and the later ones refresh the cache (at most
// once per refreshEvery). A node that asks once needs no cache, and the
// value searches of the adverts are most of a deal's DHT traffic.
func (m *Market) refreshRepeat(ctx context.Context, class string) {
	m.mu.Lock()
	_, before := m.refreshed[class]
	if !before {
		m.refreshed[class] = time.Now()
	}
	m.mu.Unlock()
	if before {
		m.refresh(ctx, class)
	}
}
