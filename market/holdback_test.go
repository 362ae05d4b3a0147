package market

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// An offer that holds back part of the pay: a provider that accepts it
// signs the share into its bid and the deal; one that accepts less
// refuses with its limit; the deal both sign carries the share.
func TestHoldbackInOfferBidAndDeal(t *testing.T) {
	specs := []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}}, // accepts 20%
		{"dgxh100", map[string]string{h100: "500"}},  // cheaper, accepts none
		{"", nil},
	}
	nodes := startMarketEach(t, "holdback", specs, func(i int, c *Config) {
		c.BidWindow, c.Enough = 2*time.Second, 2
		if i == 0 {
			c.MaxHoldbackBps = 2000
		}
	})
	accepts, refuses, req := nodes[0], nodes[1], nodes[2]
	waitProviders(t, req, h100, func(f []ProviderInfo) bool { return len(f) == 2 })
	// The offers below go straight to each provider: connected from the
	// provider's side, so no dial backoff of the requester's holds them.
	p2ptest.Connect(t, accepts.p2p, req.p2p)
	p2ptest.Connect(t, refuses.p2p, req.p2p)

	b, nb := hostileOffer(t, req, refuses, time.Now(), func(o *JobOffer) { o.HoldbackBps = 2000 })
	if b != nil || nb.Code != NoBidHoldback || !strings.Contains(nb.Detail, "market.max_holdback") {
		t.Fatalf("a provider that accepts no holdback: bid %+v, no-bid %+v", b, nb)
	}
	b, nb = hostileOffer(t, req, accepts, time.Now(), func(o *JobOffer) { o.HoldbackBps = 2500 })
	if b != nil || nb.Code != NoBidHoldback || !strings.Contains(nb.Detail, "at most 20%") {
		t.Fatalf("25%% held back from a provider that accepts 20%%: bid %+v, no-bid %+v", b, nb)
	}

	d, _, err := req.m.Negotiate(context.Background(), OfferRequest{
		Req: Requirements{GPUClass: h100, GPUs: 1}, Token: "native", MaxPrice: "5000",
		MaxDuration: time.Hour, SpecHash: specHash, HoldbackBps: 2000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.Provider != accepts.p2p.Host.ID().String() || d.HoldbackBps != 2000 {
		t.Fatalf("deal %+v: want the provider that accepts 20%%, with 20%% held back", d.DealTerms)
	}
	if err := accepts.signer.VerifyDeal(d.DealTerms, d.RequesterSig, req.signer.Wallet()); err != nil {
		t.Fatalf("requester signature over the holdback: %v", err)
	}
	if err := req.signer.VerifyDeal(d.DealTerms, d.ProviderSig, accepts.signer.Wallet()); err != nil {
		t.Fatalf("provider signature over the holdback: %v", err)
	}
}

// A bid that does not agree to the offer's holdback would be paid in
// full: the requester refuses it, naming both shares.
func TestBidWithoutTheHoldbackRefused(t *testing.T) {
	nodes := startMarket(t, "holdbackbid", []nodeSpec{{"dgxh100", map[string]string{h100: "1000"}}, {"", nil}}, Config{})
	prov, req := nodes[0], nodes[1]
	o := &JobOffer{Version: ProtocolVersion, Req: Requirements{GPUClass: h100, GPUs: 1}, Token: "native",
		MaxPrice: "5000", HoldbackBps: 2000}
	for _, tc := range []struct {
		name string
		bps  int
		want string
	}{
		{"none", 0, "agrees to hold back 0% of its pay, the offer asks 20%"},
		{"less", 1000, "agrees to hold back 10% of its pay, the offer asks 20%"},
		{"over the bound", 9000, "holdback_bps 9000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bid := Bid{Version: ProtocolVersion, OfferID: specHash, Provider: prov.p2p.Host.ID().String(),
				Wallet: prov.signer.Wallet(), Token: "native", Price: "1000", GPUs: []string{"GPU-0001"},
				GPUClass: h100, ReservedUntilMs: time.Now().Add(time.Minute).UnixMilli(), HoldbackBps: tc.bps}
			raw, _, err := seal("bid", &bid, prov.p2p.Host.Peerstore().PrivKey(prov.p2p.Host.ID()))
			if err != nil {
				t.Fatal(err)
			}
			_, err = req.m.checkBid(raw, specHash, o, prov.p2p.Host.ID())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("bid holding back %d bps: %v, want %q", tc.bps, err, tc.want)
			}
		})
	}
}

func TestHoldbackRequestChecked(t *testing.T) {
	for _, bps := range []int{-1, MaxHoldbackBps + 1} {
		_, err := checkRequest(OfferRequest{Req: Requirements{GPUClass: h100, GPUs: 1}, MaxPrice: "1",
			MaxDuration: time.Hour, HoldbackBps: bps})
		if err == nil || !strings.Contains(err.Error(), "holdback") {
			t.Fatalf("holdback %d bps: %v", bps, err)
		}
	}
}
