package market

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/gpu"
)

const h100 = "mock-h100-80gb"

func tenNodes(t *testing.T) []*tnode {
	specs := []nodeSpec{
		{"dgxh100", map[string]string{h100: "3000"}},
		{"dgxh100", map[string]string{h100: "2000"}}, // the cheapest H100
		{"dgxh100", map[string]string{h100: "2500"}},
		{"dgxa100", map[string]string{"mock-a100-40gb": "1000"}}, // cheaper, but not an H100
		{"dgxa100", map[string]string{"mock-a100-40gb": "1100"}},
		{"dgxa100", map[string]string{"mock-a100-40gb": "1200"}},
		{"", map[string]string{"cpu": "10"}},
		{"", map[string]string{"cpu": "11"}},
		{"", nil}, // requester
		{"", nil},
	}
	// Enough above the number of nodes: the window runs its course, so
	// every bid that would come, comes.
	return startMarket(t, "markettest", specs, Config{BidWindow: 2 * time.Second, Enough: 10})
}

func TestTenNodesFindBidAndDeal(t *testing.T) {
	nodes := tenNodes(t)
	req := nodes[8]
	findsTheProviders(t, nodes, req)
	d := dealsWithTheCheapest(t, nodes, req)
	// The losing bidders' reservations lapse; the winner's GPUs stay held
	// and leave its advert.
	waitProviders(t, req, h100, func(f []ProviderInfo) bool {
		for _, p := range f {
			if p.Advert.PeerID == d.Provider {
				return p.Advert.GPUs[0].Free == 6
			}
		}
		return false
	})
	// CPU-only providers bid on CPU jobs only.
	d2, _, err := req.m.Negotiate(context.Background(), OfferRequest{
		Req: Requirements{CPUCores: 4}, Token: "native", MaxPrice: "100", MaxDuration: time.Hour, SpecHash: specHash,
	})
	if err != nil {
		t.Fatal(err)
	}
	if d2.Provider != nodes[6].p2p.Host.ID().String() || d2.GPUClass != CPU {
		t.Fatalf("cpu deal %+v", d2.DealTerms)
	}
	dealsForTwoRanks(t, nodes, req)
	// No provider matches: a clear error, not a deal.
	_, _, err = req.m.Negotiate(context.Background(), OfferRequest{
		Req: Requirements{GPUClass: h100, GPUs: 2}, Token: "native", MaxPrice: "100", MaxDuration: time.Hour, SpecHash: specHash,
	})
	if !errors.Is(err, ErrNoDeal) {
		t.Fatalf("offer under every price: %v", err)
	}
}

// peerIDs are the nodes' peer IDs.
func peerIDs(nodes []*tnode) map[string]bool {
	out := map[string]bool{}
	for _, n := range nodes {
		out[n.p2p.Host.ID().String()] = true
	}
	return out
}

// findsTheProviders checks that req finds exactly the H100 providers of
// tenNodes for their class, with their adverts, and the A100 ones for
// theirs.
func findsTheProviders(t *testing.T, nodes []*tnode, req *tnode) {
	t.Helper()
	want := peerIDs(nodes[:3])
	found := waitProviders(t, req, h100, func(f []ProviderInfo) bool { return len(ids(f)) >= 3 })
	if got := ids(found); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("providers of %s: %v, want exactly the H100 nodes %v", h100, got, want)
	}
	for _, f := range found {
		if len(f.Advert.GPUs) != 1 || f.Advert.GPUs[0].Free != 8 || f.Advert.Healthy != 8 {
			t.Fatalf("advert %+v", f.Advert)
		}
	}
	waitProviders(t, req, "mock-a100-40gb", func(f []ProviderInfo) bool { return len(f) == 3 })
}

// dealsWithTheCheapest negotiates 2 H100s from req: the three H100
// providers of tenNodes bid, and the cheapest gets the deal, which both
// signed and the provider holds.
func dealsWithTheCheapest(t *testing.T, nodes []*tnode, req *tnode) *Deal {
	t.Helper()
	d, st, err := req.m.Negotiate(context.Background(), OfferRequest{
		Req: Requirements{GPUClass: h100, GPUs: 2}, Token: "native", MaxPrice: "5000",
		MaxDuration: time.Hour, SpecHash: specHash,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Bids != 3 || st.Contacted != 3 {
		t.Fatalf("stats %+v: want 3 bids, from the 3 H100 providers asked", st)
	}
	h100s := peerIDs(nodes[:3])
	for _, b := range st.Bidders {
		if !h100s[b] {
			t.Fatalf("%s bid on an H100 offer without H100s", b)
		}
	}
	cheapest := nodes[1]
	if d.Provider != cheapest.p2p.Host.ID().String() || d.Price != "2000" || len(d.GPUs) != 2 || d.GPUClass != h100 {
		t.Fatalf("deal %+v: want the cheapest H100 provider at 2000", d.DealTerms)
	}
	if err := cheapest.signer.VerifyDeal(d.DealTerms, d.RequesterSig, req.signer.Wallet()); err != nil {
		t.Fatalf("requester signature: %v", err)
	}
	if err := req.signer.VerifyDeal(d.DealTerms, d.ProviderSig, cheapest.signer.Wallet()); err != nil {
		t.Fatalf("provider signature: %v", err)
	}
	check := d.DealTerms
	check.computeID()
	if check.ID != d.ID {
		t.Fatal("deal ID is not the hash of its terms")
	}
	if got := cheapest.m.Deals(); len(got) != 1 || got[0].ID != d.ID {
		t.Fatalf("provider's deals: %+v", got)
	}
	return d
}

// dealsForTwoRanks makes several deals from one offer (a distributed
// job's ranks), after dealsWithTheCheapest: the two cheapest H100
// providers get one deal each; the third is released.
func dealsForTwoRanks(t *testing.T, nodes []*tnode, req *tnode) {
	t.Helper()
	many, st, err := req.m.NegotiateMany(context.Background(), OfferRequest{
		Req: Requirements{GPUClass: h100, GPUs: 1}, Token: "native", MaxPrice: "5000",
		MaxDuration: time.Hour, SpecHash: specHash,
	}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(many) != 2 || st.Bids != 3 {
		t.Fatalf("%d deals, stats %+v: want 2 deals from 3 bids", len(many), st)
	}
	got := map[string]string{}
	for _, d := range many {
		got[d.Provider] = d.Price
		for _, p := range nodes[:3] {
			if p.p2p.Host.ID().String() != d.Provider {
				continue
			}
			if err := req.signer.VerifyDeal(d.DealTerms, d.ProviderSig, p.signer.Wallet()); err != nil {
				t.Fatalf("provider signature on %s: %v", d.Provider, err)
			}
		}
	}
	if got[nodes[1].p2p.Host.ID().String()] != "2000" || got[nodes[2].p2p.Host.ID().String()] != "2500" {
		t.Fatalf("deals %v: want the 2000 and 2500 providers", got)
	}
	if many[0].ID == many[1].ID {
		t.Fatal("two ranks share a deal ID")
	}
	waitProviders(t, req, h100, func(f []ProviderInfo) bool {
		free := map[string]int{}
		for _, p := range f {
			free[p.Advert.PeerID] = p.Advert.GPUs[0].Free
		}
		return free[nodes[0].p2p.Host.ID().String()] == 8 && free[nodes[1].p2p.Host.ID().String()] == 5 &&
			free[nodes[2].p2p.Host.ID().String()] == 7
	})
}

// A GPU made unhealthy leaves its provider's advert within the health
// window (the poll interval, then a republish).
func TestUnhealthyGPULeavesAdvert(t *testing.T) {
	nodes := startMarket(t, "markethealth", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil},
	}, Config{})
	prov, req := nodes[0], nodes[1]
	waitProviders(t, req, h100, func(f []ProviderInfo) bool { return len(f) == 1 && f[0].Advert.GPUs[0].Free == 8 })
	if err := prov.gpus.Inject(3, gpu.Fault{Kind: "xid", XID: 79}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	found := waitProviders(t, req, h100, func(f []ProviderInfo) bool {
		return len(f) == 1 && f[0].Advert.GPUs[0].Free == 7 && f[0].Advert.Unhealthy == 1
	})
	t.Logf("unhealthy GPU left the advert after %s", time.Since(start))
	if found[0].Advert.GPUs[0].Total != 8 {
		t.Fatalf("advert %+v", found[0].Advert)
	}
}

// Requesters racing for one provider's GPUs never get the same GPU.
func TestRacingRequestersNeverShareAGPU(t *testing.T) {
	specs := []nodeSpec{{"dgxh100", map[string]string{h100: "1000"}}}
	for i := 0; i < 4; i++ {
		specs = append(specs, nodeSpec{"", nil})
	}
	nodes := startMarket(t, "marketrace", specs, Config{BidWindow: 2 * time.Second, Enough: 1})
	for _, n := range nodes[1:] {
		waitProviders(t, n, h100, func(f []ProviderInfo) bool { return len(f) == 1 })
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var deals []*Deal
	for _, n := range nodes[1:] {
		wg.Add(1)
		go func(n *tnode) {
			defer wg.Done()
			d, _, err := n.m.Negotiate(context.Background(), OfferRequest{
				Req: Requirements{GPUClass: h100, GPUs: 3}, Token: "native", MaxPrice: "5000", MaxDuration: time.Hour, SpecHash: specHash,
			})
			if err == nil {
				mu.Lock()
				deals = append(deals, d)
				mu.Unlock()
			}
		}(n)
	}
	wg.Wait()
	if len(deals) != 2 { // 8 GPUs: two jobs of 3 fit, a third does not
		t.Fatalf("%d deals for 4 requesters of 3 GPUs out of 8, want 2", len(deals))
	}
	used := map[string]string{}
	for _, d := range deals {
		for _, u := range d.GPUs {
			if other, dup := used[u]; dup {
				t.Fatalf("GPU %s is in deals %s and %s", u, short(other), short(d.ID))
			}
			used[u] = d.ID
		}
	}
}
