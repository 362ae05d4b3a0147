package market

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
)

// A requester whose candidates include providers behind NAT (their
// addresses go through a relay) that never answer asks those it can
// dial first, and, once a bid came, does not wait for the ones behind
// NAT: each negotiation ends while their asks are still open, so no
// refusal names them (the old rule waited for every provider asked,
// until its request timed out, and listed it as unanswered).
func TestProvidersBehindNATDoNotHoldTheWindow(t *testing.T) {
	specs := []nodeSpec{
		{"dgxh100", map[string]string{h100: "2000"}},
		{"dgxh100", map[string]string{h100: "2100"}},
		{"dgxh100", map[string]string{h100: "2200"}},
		{"", nil}, // requester with a fanout of 3
		{"", nil}, // requester with a fanout of 5 that waits for 5 bids
	}
	// A long window, and bids that hold their GPUs for most of it: only
	// the rules that end it early can end it before the offers to the
	// providers behind NAT time out.
	nodes := startMarketEach(t, "nattest", specs, func(i int, c *Config) {
		c.BidWindow, c.ReserveFor = 30*time.Minute, 20*time.Minute
		if i == 3 {
			c.Fanout = 3
		}
		if i == 4 {
			c.Fanout, c.Enough = 5, 5
		}
	})
	nat := newSilentProviders(t, "nattest", 2)
	for _, c := range []struct {
		name  string
		req   *tnode
		asked int // providers asked directly, those behind NAT last
	}{
		{"asks those it can dial first", nodes[3], 3},
		{"does not wait for those behind NAT", nodes[4], 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := nat.offers.Load()
			cacheAll(t, c.req, nodes[:3], nat)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			d, st, err := c.req.m.Negotiate(ctx, OfferRequest{
				Req: Requirements{GPUClass: h100, GPUs: 1}, Token: "native", MaxPrice: "5000",
				MaxDuration: time.Hour, SpecHash: specHash,
			})
			if err != nil {
				t.Fatal(err)
			}
			if d.Provider != nodes[0].p2p.Host.ID().String() || st.Contacted != c.asked || st.Bids != 3 {
				t.Fatalf("deal with %s, stats %+v: want the cheapest of the 3 that can be dialled, %d asked, 3 bids", short(d.Provider), st, c.asked)
			}
			for _, r := range st.Refusals {
				if nat.ids[r.Provider] {
					t.Fatalf("refusal %s: the window waited for a provider behind NAT", r)
				}
			}
			// Asked only when the fanout has room for them: with the
			// room, an ask may not have reached them before the window
			// closed.
			if got := nat.offers.Load() - before; c.asked == 3 && got != 0 {
				t.Fatalf("providers behind NAT got %d offers, with 3 that can be dialled for a fanout of 3", got)
			}
		})
	}
}

// silentProviders are providers behind NAT as a requester sees them:
// their addresses include a relay's, and they take offers and never
// answer (until the test ends).
type silentProviders struct {
	nodes  []*p2p.Node
	ids    map[string]bool
	offers atomic.Int64
}

func newSilentProviders(t *testing.T, netName string, n int) *silentProviders {
	t.Helper()
	sp := &silentProviders{nodes: p2ptest.Start(t, n, testP2PConfig(netName)), ids: map[string]bool{}}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) }) // before the nodes close
	for _, pn := range sp.nodes {
		sp.ids[pn.Host.ID().String()] = true
		pn.Host.SetStreamHandler(pn.ProtocolID(protoOffer), func(s network.Stream) {
			sp.offers.Add(1)
			io.Copy(io.Discard, s)
			<-done
			s.Reset()
		})
	}
	return sp
}

// cacheAll puts into req's advert cache the providers' adverts and, for
// the silent ones, cheaper copies of the first one's under their IDs,
// with their addresses and a relay's.
func cacheAll(t *testing.T, req *tnode, providers []*tnode, sp *silentProviders) {
	t.Helper()
	now := time.Now()
	for _, p := range providers {
		req.m.cacheAdvert(p.m.buildAdvert(now))
	}
	relay := relayAddr(t)
	for _, pn := range sp.nodes {
		a := providers[0].m.buildAdvert(now)
		a.PeerID = pn.Host.ID().String()
		a.Prices = []Price{{Token: "native", PerGPUHour: "1000"}}
		req.m.cacheAdvert(a)
		ps := req.p2p.Host.Peerstore()
		ps.AddAddrs(pn.Host.ID(), pn.Host.Addrs(), peerstore.TempAddrTTL)
		ps.AddAddr(pn.Host.ID(), relay, peerstore.TempAddrTTL)
	}
}

// relayAddr is a circuit address through a relay that is not there.
func relayAddr(t *testing.T) ma.Multiaddr {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ma.NewMultiaddr(fmt.Sprintf("/ip4/127.0.0.1/tcp/1/p2p/%s/p2p-circuit", relay))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The window waits for a provider behind NAT while no bid came: with
// nothing else bidding, it can still win.
func TestWindowWaitsForNATOnlyWithoutBids(t *testing.T) {
	for _, c := range []struct {
		name                   string
		bids, pending, natOnes int
		gossiped, looking      bool
		want                   bool
	}{
		{"no bid, one behind NAT to answer", 0, 1, 1, false, false, true},
		{"a bid, one behind NAT to answer", 1, 1, 1, false, false, false},
		{"a bid, one that can be dialled to answer", 1, 2, 1, false, false, true},
		{"a bid, all answered", 1, 0, 0, false, false, false},
		{"a bid, gossip bids invited", 1, 1, 1, true, false, true},
		{"a bid, the lookup goes on", 1, 1, 1, false, true, true},
		{"no bid, all answered", 0, 0, 0, false, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := &negotiation{pending: c.pending, pendingNAT: c.natOnes, gossiped: c.gossiped}
			if got := n.waiting(c.bids, c.looking); got != c.want {
				t.Fatalf("waiting = %v, want %v", got, c.want)
			}
		})
	}
}
