package lease

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/host"
)

// gangBuyer's market deals with its providers in turn, each deal new,
// none with a provider the offer excludes.
type gangBuyer struct {
	mu    sync.Mutex
	terms []market.DealTerms // one per provider
	made  int
	rep   *market.Reputation
}

func (g *gangBuyer) NegotiateMany(_ context.Context, r market.OfferRequest, count int) ([]*market.Deal, market.NegotiationStats, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*market.Deal
	for _, t := range g.terms {
		if len(out) == count || slices.Contains(r.Exclude, t.Provider) {
			continue
		}
		g.made++
		t.ID, t.SpecHash = fmt.Sprintf("deal-%d", g.made), r.SpecHash
		out = append(out, &market.Deal{DealTerms: t})
	}
	return out, market.NegotiationStats{}, nil
}
func (g *gangBuyer) Reputation() *market.Reputation { return g.rep }

// A rank's provider that refuses the prepare for its channel's deposit
// (it still counts a rank the requester cancelled a moment ago) does not
// fail the distributed job: the requester asks again, as it does for a
// single job, and the gang starts on the next deals.
func TestGangAsksAgainAfterADepositRefusal(t *testing.T) {
	hs := p2ptest.MockHosts(t, 3)
	reqHost := hs[0]
	payer := common.HexToAddress("0x00000000000000000000000000000000000000e1")
	rep, err := market.OpenReputation(filepath.Join(t.TempDir(), "reputation.json"))
	if err != nil {
		t.Fatal(err)
	}
	buyer := &gangBuyer{rep: rep}
	var fps []*fakeProvider
	for i, h := range []host.Host{hs[1], hs[2]} {
		buyer.terms = append(buyer.terms, market.DealTerms{Requester: reqHost.ID().String(), RequesterWallet: payer.Hex(),
			Provider: h.ID().String(), ProviderWallet: common.HexToAddress(fmt.Sprintf("0x%040x", 0xe2+i)).Hex(),
			Token: fakeToken.Hex(), Price: "3600", MaxDurationS: 3600, GPUs: []string{"GPU-0"}})
		fps = append(fps, newFakeProvider(t, h, reqHost.ID()))
	}
	fps[1].refuse = 1
	vouchers, err := OpenVouchers(filepath.Join(t.TempDir(), "vouchers.json"))
	if err != nil {
		t.Fatal(err)
	}
	rq := testRequester(t, Config{P2P: &p2p.Node{Host: reqHost}, Vouchers: vouchers, VoucherInterval: 200 * time.Millisecond})
	rq.market, rq.chain, rq.wallet = buyer, newFakeChannels(payer), fakeAddr(payer)

	spec := jobs.Spec{Image: "x", MaxPrice: "1", Resources: jobs.Resources{GPUs: 1}, Distributed: &jobs.Distributed{Nodes: 2}}
	j, err := rq.SubmitRemote(t.Context(), &spec, RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	state := func() (jobs.State, string) {
		rq.mu.Lock()
		defer rq.mu.Unlock()
		if rj := rq.records[j.ID]; rj != nil && rj.Last != nil {
			return rj.Last.State, rj.Last.Reason
		}
		return "", ""
	}
	p2ptest.WaitFor(t, waitLong, func() bool {
		st, _ := state()
		return st == jobs.Running || st.Terminal()
	}, "the distributed job running or ended")
	if st, why := state(); st != jobs.Running {
		t.Fatalf("the distributed job is %s (%s), want running after asking again", st, why)
	}
	fps[1].mu.Lock()
	defer fps[1].mu.Unlock()
	if fps[1].prepares != 2 {
		t.Fatalf("the refusing provider was asked to prepare %d times, want 2", fps[1].prepares)
	}
}
