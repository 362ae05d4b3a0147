package lease

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/aixblock/aixblock/internal/leakcheck"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/ethereum/go-ethereum/common"
)

// Nothing of a Manager outlives Close: both sides' goroutines (a job
// followed and paid, the provider's channel watch and outage recheck,
// the job network and the service ports) end when it closes.
func TestManagerCloseLeavesNoGoroutine(t *testing.T) {
	leakcheck.Check(t)
	hs := p2ptest.MockHosts(t, 2)
	reqHost, provHost := hs[0], hs[1]
	payer, payee := common.HexToAddress("0x00000000000000000000000000000000000000d1"), common.HexToAddress("0x00000000000000000000000000000000000000d2")
	rep, err := market.OpenReputation(filepath.Join(t.TempDir(), "reputation.json"))
	if err != nil {
		t.Fatal(err)
	}
	vouchers, err := OpenVouchers(filepath.Join(t.TempDir(), "vouchers.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{Dir: t.TempDir(), P2P: &p2p.Node{Host: reqHost}, Vouchers: vouchers, VoucherInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deal := market.Deal{DealTerms: market.DealTerms{ID: "deal-leak", Requester: reqHost.ID().String(), RequesterWallet: payer.Hex(),
		Provider: provHost.ID().String(), ProviderWallet: payee.Hex(), Token: fakeToken.Hex(), Price: "3600", MaxDurationS: 3600, GPUs: []string{"GPU-0"}}}
	m.req.market, m.req.chain, m.req.wallet = &fakeBuyer{deal: deal, rep: rep}, newFakeChannels(payer), fakeAddr(payer)
	newFakeProvider(t, provHost, reqHost.ID())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		m.Run(ctx)
	}()

	// A job running on the fake provider: it is followed and paid by
	// goroutines of the requester's side.
	spec := jobs.Spec{Image: "x", MaxPrice: "1", Resources: jobs.Resources{GPUs: 1}}
	j, err := m.req.SubmitRemote(ctx, &spec, RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitFor(t, waitLong, func() bool {
		got, err := m.Get(ctx, j.ID)
		return err == nil && got.State == jobs.Running
	}, "the job running")
	if err := m.Close(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	<-ran
}
