package lease

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// The best-ranked set whose every pair is direct, or none.
func TestChooseDirect(t *testing.T) {
	// a–c has no direct path; every other pair does.
	notDirect := map[string]bool{"a|c": true, "c|d": true}
	direct := func(x, y string) bool { return !notDirect[pairKey(x, y)] }
	for _, tc := range []struct {
		bidders []string
		count   int
		want    []string
	}{
		{[]string{"a", "b", "c"}, 2, []string{"a", "b"}},
		{[]string{"a", "c", "b"}, 2, []string{"a", "b"}}, // c is cheaper than b, but a–c is relayed
		{[]string{"a", "c", "b", "d"}, 3, []string{"a", "b", "d"}},
		{[]string{"c", "a", "d"}, 2, []string{"a", "d"}},
		{[]string{"a", "c"}, 2, nil},
		{[]string{"a"}, 2, nil},
	} {
		got, ok := chooseDirect(tc.bidders, tc.count, direct)
		if !slices.Equal(got, tc.want) || ok != (tc.want != nil) {
			t.Errorf("chooseDirect(%v, %d) = %v, %v; want %v", tc.bidders, tc.count, got, ok, tc.want)
		}
	}
}

// reachRig is a requester and three bidders on a mocknet where bidders
// 0 and 1 have no link between them (two NATs that cannot punch).
type reachRig struct {
	rq      *Requester
	bidders []string
	sellers []*fakeSeller
}

func newReachRig(t *testing.T) *reachRig {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	var hs []host.Host
	for range 4 {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	for i, a := range hs {
		for j, b := range hs[i+1:] {
			if i == 1 && j+i+1 == 2 { // bidders 0 and 1 are hosts 1 and 2
				continue
			}
			if _, err := mn.LinkPeers(a.ID(), b.ID()); err != nil {
				t.Fatal(err)
			}
		}
		for _, b := range hs {
			if a != b {
				a.Peerstore().AddAddrs(b.ID(), b.Addrs(), peerstore.PermanentAddrTTL)
			}
		}
	}
	r := &reachRig{rq: testRequester(t, Config{P2P: &p2p.Node{Host: hs[0]}})}
	for _, h := range hs[1:] {
		pv := testProvider(t, Config{P2P: &p2p.Node{Host: h}})
		s := &fakeSeller{bidFor: map[string]string{"offer-1": hs[0].ID().String()}}
		pv.market = s
		pv.register()
		r.bidders = append(r.bidders, h.ID().String())
		r.sellers = append(r.sellers, s)
	}
	return r
}

// A gang of two among three bidders, the two best of which cannot reach
// each other directly: the placer measures it and takes the best and
// the third; with relay deny and no direct set at all, it refuses.
func TestPlacerAvoidsUndirectPairs(t *testing.T) {
	r := newReachRig(t)
	var got api.Placement
	order, err := r.rq.placer(false, &got)(t.Context(), "offer-1", r.bidders, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{r.bidders[0], r.bidders[2], r.bidders[1]}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want the best and the third first, the second a stand-in: %v", short3(order), short3(want))
	}
	if !got.Direct || len(got.Pairs) != 3 || !strings.Contains(got.Note, "reach each other directly") {
		t.Fatalf("placement %+v", got)
	}
	for _, p := range got.Pairs {
		relayed := (p.A == r.bidders[0] || p.B == r.bidders[0]) && (p.A == r.bidders[1] || p.B == r.bidders[1])
		if (p.Path == "direct") == relayed {
			t.Fatalf("pair %+v measured wrong", p)
		}
	}

	for _, deny := range []bool{false, true} {
		// No direct pair: the best bids, the pairs named; relay: deny
		// waits for the gang's start, after hole punching.
		order, err = r.rq.placer(deny, &got)(t.Context(), "offer-1", r.bidders[:2], 2)
		if err != nil || got.Direct || !slices.Equal(order, r.bidders[:2]) || !strings.Contains(got.Note, "the best bids were taken") ||
			!strings.Contains(got.Note, "unreachable") || strings.Contains(got.Note, "relay: deny") != deny {
			t.Fatalf("relay deny %v and no direct pair: order %v, %v, placement %+v", deny, order, err, got)
		}
	}
}

// A bidder reaches peers only for a requester it bid for, at most
// maxReachPeers of them: a stranger cannot make it dial the network.
func TestReachOnlyForABidsRequester(t *testing.T) {
	r := newReachRig(t)
	var got api.Placement
	r.sellers[0].mu.Lock()
	r.sellers[0].bidFor = nil // bidder 0 holds no bid for this requester
	r.sellers[0].mu.Unlock()
	start := time.Now()
	if _, err := r.rq.placer(false, &got)(t.Context(), "offer-1", r.bidders, 2); err != nil {
		t.Fatal(err)
	}
	for _, p := range got.Pairs {
		if p.A == r.bidders[0] || p.B == r.bidders[0] {
			// Only the others' word on bidder 0 stands; it said nothing.
			if p.Path != "direct" && p.Path != "unreachable" {
				t.Fatalf("pair %+v", p)
			}
		}
	}
	t.Logf("placement without bidder 0's answer took %s", time.Since(start).Round(time.Millisecond))
	id, _ := peer.Decode(r.bidders[1])
	many := make([]string, maxReachPeers+1)
	for i := range many {
		many[i] = r.bidders[2]
	}
	raw := []byte(`{"offer_id":"offer-1","peers":["` + strings.Join(many, `","`) + `"]}`)
	if _, err := r.rq.request(t.Context(), id, wireReach, raw); err == nil || !strings.Contains(err.Error(), "at most 16") {
		t.Fatalf("a reach request naming %d peers: %v", len(many), err)
	}
	raw = []byte(`{"offer_id":"offer-2","peers":["` + r.bidders[2] + `"]}`)
	if _, err := r.rq.request(t.Context(), id, wireReach, raw); err == nil || !strings.Contains(err.Error(), "no bid of this provider") {
		t.Fatalf("a reach request for an offer it did not bid on: %v", err)
	}
}

func short3(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return out
}

// FuzzReachRequest: a bidder's handling of jobs/reach/1 from its
// requester, whatever the request: it answers within its limits or
// refuses, and never reaches more than maxReachPeers peers.
func FuzzReachRequest(f *testing.F) {
	hs := p2ptest.MockHosts(f, 2)
	req := hs[0].ID().String()
	pv := testProvider(f, Config{P2P: &p2p.Node{Host: hs[1]}})
	pv.market = &fakeSeller{bidFor: map[string]string{"offer-1": req}}
	f.Add([]byte(`{"offer_id":"offer-1","peers":["` + req + `"]}`))
	f.Add([]byte(`{"offer_id":"offer-1","peers":["x","` + hs[1].ID().String() + `"]}`))
	f.Add([]byte(`{"offer_id":"offer-2","peers":[]}`))
	f.Add([]byte(`{"offer_id":"offer-1","peers":null}`))
	f.Add([]byte(`{"peers":"a"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > wireReach.limits.MaxRequest {
			return
		}
		resp, err := pv.handleReach(t.Context(), hs[0].ID(), b)
		if err != nil {
			return
		}
		if len(resp) > wireReach.limits.MaxResponse {
			t.Fatalf("a reach answer of %d bytes, over the wire's %d", len(resp), wireReach.limits.MaxResponse)
		}
		var got map[string]api.PairReach
		if err := json.Unmarshal(resp, &got); err != nil || len(got) > maxReachPeers {
			t.Fatalf("answer %s: %v", resp, err)
		}
	})
}
