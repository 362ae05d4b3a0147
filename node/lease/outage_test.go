package lease

import (
	"context"
	"errors"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/market"
	"github.com/ethereum/go-ethereum"
	ethcrypto "github.com/ethereum/go-ethereum/crypto"
)

// flakyBackend is a chain whose RPC can be taken down: every read fails
// while down is set, as a stopped geth's "connection refused" does.
type flakyBackend struct {
	chain.Backend
	down atomic.Bool
}

var errRefused = errors.New("dial tcp 127.0.0.1:8545: connect: connection refused")

func (f *flakyBackend) CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error) {
	if f.down.Load() {
		return nil, errRefused
	}
	return f.Backend.CallContract(ctx, msg, block)
}

func (f *flakyBackend) BlockNumber(ctx context.Context) (uint64, error) {
	if f.down.Load() {
		return 0, errRefused
	}
	return f.Backend.BlockNumber(ctx)
}

// An RPC outage in the middle of a job: the provider refused every
// voucher it could not check against the deposit, and stopped the job
// 42-48 s in, blaming the requester. Now a voucher that cannot be checked
// counts for the outage grace, is checked when the chain answers, and
// one beyond the deposit is refused then and stops the job.
func TestOutageGrace(t *testing.T) {
	h := newHostile(t)
	flaky := &flakyBackend{Backend: h.dev.Client()}
	pc, err := chain.NewClient(t.Context(), flaky, h.prov.cfg.Wallet, chain.Config{Escrow: h.dev.Info.Escrow, Token: h.dev.Info.Token, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h.prov.chain = pc
	id := "00000000000000e1"
	h.prov.trackProvided(id, h.deal)
	t0 := time.Now()
	h.prov.mu.Lock()
	h.prov.runSince[id] = t0
	h.prov.mu.Unlock()
	if err := h.send(big.NewInt(10)); err != nil {
		t.Fatalf("a voucher while the chain answers: %v", err)
	}

	flaky.down.Store(true)
	if err := h.send(big.NewInt(60)); err != nil {
		t.Fatalf("a voucher for 60 s during an outage was refused: %v", err)
	}
	if why := h.prov.unpaid(id, t0.Add(61*time.Second)); why != "" {
		t.Fatalf("paid for 60 s of 61 during an outage, stopped: %s", why)
	}
	if h.prov.ChainDownSince().IsZero() {
		t.Fatal("the outage is not reported")
	}
	// The requester overreaches while the provider cannot look.
	over := new(big.Int).Add(h.deposit, big.NewInt(1))
	if err := h.send(over); err != nil {
		t.Fatalf("an unchecked voucher: %v", err)
	}
	h.prov.recheckUnchecked(t.Context()) // still down: nothing decided
	if why := h.prov.unpaid(id, t0.Add(61*time.Second)); why != "" {
		t.Fatalf("still within the grace, stopped: %s", why)
	}

	flaky.down.Store(false)
	h.prov.recheckUnchecked(t.Context())
	if !h.prov.ChainDownSince().IsZero() {
		t.Fatal("the chain answers again but is still reported down")
	}
	why := h.prov.unpaid(id, t0.Add(120*time.Second))
	if !strings.Contains(why, "exceeds channel") {
		t.Fatalf("the voucher beyond the deposit, checked after the outage: want the job stopped for it, got %q", why)
	}
	if got := h.prov.vouchers.Best(h.prov.providedChannel(h.deal), false); got == nil || got.CumulativeAmount.Big().Cmp(big.NewInt(10)) != 0 {
		t.Fatalf("voucher kept after the outage: %v, want the last checked one (10)", got)
	}

	// An outage longer than the grace: vouchers are refused again, and
	// the unchecked ones count no more.
	flaky.down.Store(true)
	h.prov.mu.Lock()
	h.prov.chainDown = time.Now().Add(-h.prov.outageGrace() - time.Second)
	h.prov.mu.Unlock()
	if err := h.send(big.NewInt(200)); err == nil {
		t.Fatal("a voucher past the outage grace was taken unchecked")
	}
}

// Issue 28 N5: a requester named gang members with throwaway provider
// keys: their deals' signatures were all a provider checked, and each
// member is a peer its job network opens a queue to. A member now costs
// its deal's deposit on chain.
func TestHostileInventedGangMember(t *testing.T) {
	h := newHostile(t)
	real := h.deal // funded: newHostile deposited 1,000,000 for it
	real.ID, real.MaxDurationS = "deal-real", 600
	own := h.deal
	own.ID = "deal-own"
	fake := h.deal
	key, err := ethcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	fake.ID, fake.ProviderWallet = "deal-invented", ethcrypto.PubkeyToAddress(key.PublicKey).Hex()
	if err := h.prov.gangFunded(t.Context(), &own, []market.Deal{own, real}); err != nil {
		t.Fatalf("a gang whose members the requester funded: %v", err)
	}
	err = h.prov.gangFunded(t.Context(), &own, []market.Deal{own, real, fake})
	if err == nil || !strings.Contains(err.Error(), "deals[2]") || !strings.Contains(err.Error(), "nobody funded") {
		t.Fatalf("a member invented with a throwaway wallet: %v", err)
	}
	t.Logf("refused: %v", err)
}

// A member invented at price 0 (or for no time) needs no deposit, so it
// passed the funding check: such a deal is no rank.
func TestHostileFreeGangMember(t *testing.T) {
	h := newHostile(t)
	own := h.deal
	own.ID = "deal-own"
	free := h.deal
	free.ID, free.Price, free.ProviderWallet = "deal-free", "0", "0x000000000000000000000000000000000000dEaD"
	err := h.prov.gangFunded(t.Context(), &own, []market.Deal{own, free})
	if err == nil || !strings.Contains(err.Error(), "costs nothing") {
		t.Fatalf("a member at price 0: %v", err)
	}
}
