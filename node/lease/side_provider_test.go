package lease

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/libp2p/go-libp2p/core/host"
)

// fakeRequester sends a provider's lease messages over a mocknet as the
// requester of a deal, or as a stranger, and signs vouchers with its key.
type fakeRequester struct {
	t     *testing.T
	to    host.Host
	node  *p2p.Node
	payee common.Address
}

func (fr *fakeRequester) send(from host.Host, w wire, body any) ([]byte, error) {
	fr.t.Helper()
	b, ok := body.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(body); err != nil {
			fr.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(fr.t.Context(), 30*time.Second)
	defer cancel()
	return p2p.Request(ctx, from, fr.to.ID(), fr.node.ProtocolID(w.id), b, w.limits)
}

func (fr *fakeRequester) voucher(amount int64, key *ecdsa.PrivateKey) []byte {
	fr.t.Helper()
	v := chain.NewVoucher(fakeChain, fakeEscrow, crypto.PubkeyToAddress(key.PublicKey), fr.payee, fakeToken, big.NewInt(amount))
	if err := v.Sign(key); err != nil {
		fr.t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		fr.t.Fatal(err)
	}
	return b
}

// The provider alone, against a fake requester and a stranger over a
// mocknet and fakes of the market, the chain and the runtime: a start
// must be the deal's requester's, with the deal's spec, once; a voucher
// must be the payer's, for more, within the deposit; a stranger gets
// nothing; the deal is released when its job ends.
func TestProviderAgainstFakeRequester(t *testing.T) {
	hs := p2ptest.MockHosts(t, 3)
	reqHost, provHost, stranger := hs[0], hs[1], hs[2]
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	payer, payee := crypto.PubkeyToAddress(key.PublicKey), common.HexToAddress("0x00000000000000000000000000000000000000c2")
	channels := newFakeChannels(payer)
	channels.deposit(payer, payee, fakeToken, big.NewInt(10_000))
	spec := jobs.Spec{Image: "x", Resources: jobs.Resources{GPUs: 1}}
	hash, err := spec.Hash()
	if err != nil {
		t.Fatal(err)
	}
	// 3600 base units a GPU-hour for an hour at most: 3600 of the 10000
	// deposited.
	deal := market.Deal{DealTerms: market.DealTerms{ID: "deal-fake", Requester: reqHost.ID().String(), RequesterWallet: payer.Hex(),
		Provider: provHost.ID().String(), ProviderWallet: payee.Hex(), Token: fakeToken.Hex(), Price: "3600", MaxDurationS: 3600,
		GPUs: []string{"GPU-0"}, SpecHash: hash}}
	seller := &fakeSeller{deal: deal, offer: market.JobOffer{Req: market.Requirements{GPUs: 1}}}
	runner := newFakeRunner()
	vouchers, err := OpenVouchers(filepath.Join(t.TempDir(), "vouchers.json"))
	if err != nil {
		t.Fatal(err)
	}
	node := &p2p.Node{Host: provHost}
	pv := testProvider(t, Config{P2P: node, Vouchers: vouchers, VoucherInterval: time.Second})
	pv.jobs, pv.chain, pv.market, pv.gpus, pv.wallet = runner, channels, seller, noHealthChanges{}, fakeAddr(payee)
	pv.register()
	fr := &fakeRequester{t: t, to: provHost, node: node, payee: payee}
	id := "00000000000000c1"
	start := startRequest{DealID: deal.ID, Spec: spec, JobID: id}
	wrongSpec := start
	wrongSpec.Spec.Image = "y"
	held := func() string {
		v := pv.vouchers.get(pv.vouchers.data.Received, chain.ChannelID(payer, payee, fakeToken))
		if v == nil {
			return "0"
		}
		return v.CumulativeAmount.String()
	}

	for _, c := range []struct {
		name string
		from host.Host
		w    wire
		body any
		want string // "" to succeed, else in the error
		held string // the voucher held after
	}{
		{"a stranger's start", stranger, wireStart, start, "is not with", "0"},
		{"another spec than the deal's", reqHost, wireStart, wrongSpec, "spec is not the one", "0"},
		{"the deal's start", reqHost, wireStart, start, "", "0"},
		{"the same deal again", reqHost, wireStart, start, "already started", "0"},
		{"a stranger's status", stranger, wireStatus, jobIDRequest{ID: id}, "no job", "0"},
		{"the payer's voucher", reqHost, wireVoucher, fr.voucher(100, key), "", "100"},
		{"a lower voucher", reqHost, wireVoucher, fr.voucher(50, key), "below", "100"},
		{"a voucher beyond the deposit", reqHost, wireVoucher, fr.voucher(20_000, key), "exceeds", "100"},
		{"a voucher signed by another key", reqHost, wireVoucher, fr.voucher(200, other), "not the channel of any deal", "100"},
		{"the payer's voucher from a stranger", stranger, wireVoucher, fr.voucher(300, key), "not the channel of any deal", "100"},
		{"the requester's status", reqHost, wireStatus, jobIDRequest{ID: id}, "", "100"},
	} {
		resp, err := fr.send(c.from, c.w, c.body)
		switch {
		case c.want == "" && err != nil:
			t.Fatalf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Fatalf("%s: got %v (%.100s), want an error with %q", c.name, err, resp, c.want)
		}
		if got := held(); got != c.held {
			t.Fatalf("%s: holds a voucher for %s, want %s", c.name, got, c.held)
		}
	}
	if len(runner.submitted) != 1 || len(runner.submitted[0].GPUs) != 1 || runner.submitted[0].GPUs[0] != "GPU-0" {
		t.Fatalf("jobs submitted: %+v, want one on the deal's GPU-0", runner.submitted)
	}
	if _, err := runner.end(id, jobs.Completed, ""); err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitFor(t, waitLong, func() bool {
		seller.mu.Lock()
		defer seller.mu.Unlock()
		return seller.released
	}, "the deal released when its job ended")
}
