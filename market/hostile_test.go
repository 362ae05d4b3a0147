package market

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	ma "github.com/multiformats/go-multiaddr"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// hostileOffer is an offer signed by from's key, sent straight to the
// provider over a real stream as any peer could: it returns the bid, or
// the no-bid's code and detail.
func hostileOffer(t *testing.T, from, to *tnode, now time.Time, mut func(*JobOffer)) (*Bid, *NoBid) {
	t.Helper()
	id := from.p2p.Host.ID()
	o := JobOffer{Version: ProtocolVersion, Requester: id.String(), Wallet: from.signer.Wallet(),
		Req: Requirements{GPUClass: h100, GPUs: 1}, Token: "native", MaxPrice: "5000", MaxDurationS: 3600,
		SpecHash: specHash, DeadlineMs: now.Add(time.Minute).UnixMilli(), Nonce: uint64(now.UnixNano())}
	if mut != nil {
		mut(&o)
	}
	// The requester's wallet signs the offer, as Negotiate does; a mut
	// that sets WalletSig (empty: none) keeps its own.
	if o.WalletSig == nil {
		proof, err := walletProof(&o)
		if err != nil {
			t.Fatal(err)
		}
		if o.WalletSig, err = from.signer.SignDeal(proof); err != nil {
			t.Fatal(err)
		}
	}
	raw, body, err := seal("offer", &o, from.p2p.Host.Peerstore().PrivKey(id))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := from.m.request(context.Background(), to.p2p.Host.ID(), protoOffer, raw, p2p.StreamLimits{MaxRequest: MaxOfferBytes, MaxResponse: MaxBidBytes})
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	if envelopeKind(resp) == "nobid" {
		nb, err := decodeNoBid(resp, hashID(body), to.p2p.Host.ID())
		if err != nil {
			t.Fatal(err)
		}
		return nil, nb
	}
	var b Bid
	if _, err := open("bid", resp, MaxBidBytes, &b); err != nil {
		t.Fatal(err)
	}
	return &b, nil
}

func freeH100(n *tnode, now time.Time) int {
	a := n.m.buildAdvert(now)
	for _, g := range a.GPUs {
		if g.Class == h100 {
			return g.Free
		}
	}
	return -1
}

// An offer from a throwaway key asks for every GPU with a deadline an hour
// away and never awards: the GPUs are reserved for reserve_for at most,
// not until the offer's deadline, and are free again when it lapses.
func TestReservationLastsReserveForAtMost(t *testing.T) {
	clk := &testClock{t: time.Now()}
	nodes := startMarket(t, "marketgrief", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil}, // the attacker
		{"", nil}, // an honest requester
	}, Config{ReserveFor: 10 * time.Second, Now: clk.Now})
	prov, evil, honest := nodes[0], nodes[1], nodes[2]

	b, nb := hostileOffer(t, evil, prov, clk.Now(), func(o *JobOffer) {
		o.Req.GPUs = 8
		o.DeadlineMs = clk.Now().Add(59 * time.Minute).UnixMilli()
	})
	if nb != nil {
		t.Fatalf("no bid: %+v", nb)
	}
	if limit := clk.Now().Add(10 * time.Second).UnixMilli(); b.ReservedUntilMs > limit {
		t.Fatalf("reserved until %s, past reserve_for (%s)", time.UnixMilli(b.ReservedUntilMs), time.UnixMilli(limit))
	}
	if f := freeH100(prov, clk.Now()); f != 0 {
		t.Fatalf("%d GPUs free while reserved", f)
	}
	clk.Add(11 * time.Second)
	prov.m.sweep(clk.Now())
	if f := freeH100(prov, clk.Now()); f != 8 {
		t.Fatalf("%d of 8 GPUs free after the reservation lapsed", f)
	}
	if b, nb := hostileOffer(t, honest, prov, clk.Now(), func(o *JobOffer) { o.Req.GPUs = 8 }); b == nil {
		t.Fatalf("an honest requester gets no bid after the lapse: %+v", nb)
	}
}

// One requester peer may hold only a few unawarded reservations at a time,
// and one whose reservations keep lapsing unawarded gets no more for a
// while; others are not affected.
func TestReservationsLimitedPerRequester(t *testing.T) {
	clk := &testClock{t: time.Now()}
	nodes := startMarket(t, "marketgrieflimit", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil},
		{"", nil},
	}, Config{ReserveFor: 10 * time.Second, MaxReservations: 4, MaxLapses: 3, LapseWindow: 10 * time.Minute, Now: clk.Now})
	prov, evil, honest := nodes[0], nodes[1], nodes[2]
	for i := 0; i < 4; i++ {
		if b, nb := hostileOffer(t, evil, prov, clk.Now().Add(time.Duration(i)), nil); b == nil {
			t.Fatalf("offer %d: %+v", i, nb)
		}
	}
	_, nb := hostileOffer(t, evil, prov, clk.Now().Add(5), nil)
	if nb == nil || nb.Code != NoBidLimit || nb.Detail != "you hold 4 unawarded reservations here, the most allowed; award or release them" {
		t.Fatalf("fifth reservation: %+v", nb)
	}
	if b, nb := hostileOffer(t, honest, prov, clk.Now(), nil); b == nil {
		t.Fatalf("another requester is refused too: %+v", nb)
	}
	// The four lapse unawarded: the attacker is refused for the window.
	clk.Add(11 * time.Second)
	prov.m.sweep(clk.Now())
	_, nb = hostileOffer(t, evil, prov, clk.Now(), nil)
	if nb == nil || nb.Code != NoBidLimit || nb.Detail != "4 reservations of yours lapsed unawarded here in the last 10m0s; try again later" {
		t.Fatalf("after four lapses: %+v", nb)
	}
	if f := freeH100(prov, clk.Now()); f != 8 {
		t.Fatalf("%d GPUs free after every reservation lapsed", f)
	}
	clk.Add(10*time.Minute + time.Second)
	if b, nb := hostileOffer(t, evil, prov, clk.Now(), nil); b == nil {
		t.Fatalf("still refused after the window: %+v", nb)
	}
}

// A gossiped offer names an address that is not its requester's (a victim
// the test listens on): providers bid back to the requester's peer ID and
// never dial the address.
func TestGossipedOfferAddressesAreNotDialled(t *testing.T) {
	nodes := startMarket(t, "marketreflect", []nodeSpec{
		{"", nil}, // bootstrap and relay
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil}, // requester with a hostile offer
	}, Config{})
	prov, evil := nodes[1], nodes[2]
	victim, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	dialled := make(chan struct{}, 1)
	go func() {
		for {
			c, err := victim.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case dialled <- struct{}{}:
			default:
			}
		}
	}()
	// The provider neither is connected to the requester nor knows an
	// address of it, so a dial goes where the provider is told.
	eid := evil.p2p.Host.ID()
	prov.p2p.Host.Network().ClosePeer(eid)
	prov.p2p.Host.Peerstore().ClearAddrs(eid)

	port := victim.Addr().(*net.TCPAddr).Port
	bids := make(chan receivedBid, 64)
	// A fresh offer each round: a provider bids once per offer, and the
	// first may come before its DHT can find the requester.
	offer := func(nonce uint64) []byte {
		o := JobOffer{Version: ProtocolVersion, Requester: eid.String(), Wallet: evil.signer.Wallet(),
			Addrs: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port)},
			Req:   Requirements{GPUClass: h100, GPUs: 1}, Token: "native", MaxPrice: "5000", MaxDurationS: 3600,
			SpecHash: specHash, DeadlineMs: time.Now().Add(59 * time.Minute).UnixMilli(), Nonce: nonce, OpenBids: true}
		raw, body, err := seal("offer", &o, evil.p2p.Host.Peerstore().PrivKey(eid))
		if err != nil {
			t.Fatal(err)
		}
		evil.m.mu.Lock()
		evil.m.pending[hashID(body)] = &openOffer{offer: &o, start: time.Now(), bids: bids}
		evil.m.mu.Unlock()
		return raw
	}

	// Gossip until the provider's bid arrives (the mesh may still be
	// forming): the bid is the event the check is ordered after.
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	// Generous: under load the provider finds the requester through the
	// DHT slowly; the bid is what the check waits for, not a time.
	deadline := time.After(60 * time.Second)
	for nonce := uint64(7); ; nonce++ {
		if err := evil.m.topic.Publish(context.Background(), offer(nonce)); err != nil {
			t.Fatal(err)
		}
		select {
		case <-dialled:
			t.Fatal("the provider dialled the address named in a gossiped offer")
		case b := <-bids:
			if b.bid.Provider != prov.p2p.Host.ID().String() {
				t.Fatalf("bid from %s", b.bid.Provider)
			}
			select {
			case <-dialled:
				t.Fatal("the provider dialled the address named in a gossiped offer")
			default:
			}
			if addrs := prov.p2p.Host.Peerstore().Addrs(eid); containsPort(addrs, port) {
				t.Fatalf("the offer's address went into the provider's peerstore: %v", addrs)
			}
			return
		case <-deadline:
			t.Fatal("no bid came back to the requester's peer ID")
		case <-tick.C:
		}
	}
}

func containsPort(addrs []ma.Multiaddr, port int) bool {
	for _, a := range addrs {
		if strings.HasSuffix(a.String(), fmt.Sprintf("/tcp/%d", port)) {
			return true
		}
	}
	return false
}

// An award replayed after the deal's job started must not re-arm the
// sweep of unstarted deals, which would free the GPUs and forget the deal
// while the job runs. The replay gets the deal as signed the first time.
func TestAwardReplayAfterStart(t *testing.T) {
	clk := &testClock{t: time.Now()}
	nodes := startMarket(t, "marketreplay", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil},
	}, Config{ReserveFor: 10 * time.Second, StartWindow: time.Minute, Now: clk.Now})
	prov, evil := nodes[0], nodes[1]
	var off JobOffer
	b, nb := hostileOffer(t, evil, prov, clk.Now(), func(o *JobOffer) { off = *o })
	if nb != nil {
		t.Fatalf("no bid: %+v", nb)
	}
	d, err := evil.m.award(t.Context(), &off, b)
	if err != nil {
		t.Fatal(err)
	}
	prov.m.Started(d.ID) // the job runs
	again, err := evil.m.award(t.Context(), &off, b)
	if err != nil || again.ID != d.ID || string(again.ProviderSig) != string(d.ProviderSig) {
		t.Fatalf("replayed award: %v, %+v", err, again)
	}
	clk.Add(2 * time.Minute)
	prov.m.sweep(clk.Now())
	found := false
	for _, x := range prov.m.Deals() {
		found = found || x.ID == d.ID
	}
	if !found || freeH100(prov, clk.Now()) != 7 {
		t.Fatalf("after a replayed award and the start window: deal kept %v, %d GPUs free (want the job's one held)", found, freeH100(prov, clk.Now()))
	}
	// Once the job ended and the deal was released, a replay is refused.
	prov.m.Release(d.ID)
	if _, err := evil.m.award(t.Context(), &off, b); err == nil {
		t.Fatal("an award replayed after the deal ended was accepted")
	}
	if f := freeH100(prov, clk.Now()); f != 8 {
		t.Fatalf("%d GPUs free after the deal ended and its award was replayed", f)
	}
}

// An awarded deal that never starts held its GPUs for the start window
// without counting against its requester: a requester with an empty
// wallet could award and never start, over and over. Such deals count as
// reservations while they wait, as lapses when they expire, and a start
// that comes after the sweep freed the GPUs is refused.
func TestUnstartedDealsCountAgainstTheRequester(t *testing.T) {
	clk := &testClock{t: time.Now()}
	nodes := startMarket(t, "marketunstarted", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil},
	}, Config{ReserveFor: 10 * time.Second, StartWindow: time.Minute, MaxReservations: 2, MaxLapses: 2, LapseWindow: time.Hour, Now: clk.Now})
	prov, evil := nodes[0], nodes[1]
	var deals []*Deal
	for i := range 2 {
		var off JobOffer
		b, nb := hostileOffer(t, evil, prov, clk.Now().Add(time.Duration(i)), func(o *JobOffer) { off = *o })
		if nb != nil {
			t.Fatalf("offer %d: %+v", i, nb)
		}
		d, err := evil.m.award(t.Context(), &off, b)
		if err != nil {
			t.Fatal(err)
		}
		deals = append(deals, d)
	}
	_, nb := hostileOffer(t, evil, prov, clk.Now().Add(5), nil)
	if nb == nil || nb.Code != NoBidLimit {
		t.Fatalf("a third reservation while two awarded deals wait unstarted: %+v", nb)
	}
	clk.Add(2 * time.Minute)
	prov.m.sweep(clk.Now())
	if err := prov.m.Claim(deals[0].ID); err == nil {
		t.Fatal("a start after the start window was claimed")
	}
	_, nb = hostileOffer(t, evil, prov, clk.Now(), nil)
	if nb == nil || nb.Code != NoBidLimit || !strings.Contains(nb.Detail, "lapsed") {
		t.Fatalf("after two deals lapsed unstarted: %+v", nb)
	}
}
