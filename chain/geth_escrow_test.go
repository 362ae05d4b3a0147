package chain_test

import (
	"context"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/chain/gethtest"
	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// The money path on a real geth (1 s blocks, mainnet rules) behind an RPC
// that caps eth_getLogs at 10 blocks: deploy, ERC-20 deposit (approve and
// deposit), a voucher redeemed and refused when replayed, a batch of two
// payers' vouchers, the wallet's channels and redemptions over deposits
// more than 10 blocks apart, the watcher, and closing: withdraw refused
// during the challenge period, paid after it.
func TestGethEscrow(t *testing.T) {
	t.Parallel()
	g := gethtest.Start(t, gethtest.Options{Period: time.Second, RangeLimit: 10, ChallengePeriod: 3 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := newGethEscrow(t, ctx, g)
	events := e.watch()
	r1 := e.depositAndRedeem()
	e.batchLater(r1)
	e.listOverTheCap()
	e.closeAndWithdraw()
	e.checkEvents(events)
}

// gethEscrow is TestGethEscrow's chain and clients: payer and other pay
// payee in the test token.
type gethEscrow struct {
	t                   *testing.T
	ctx                 context.Context
	g                   *gethtest.Geth
	payer, payee, other *chain.Client
	tok                 common.Address
	before              *big.Int // the payee's balance before it is paid
}

func newGethEscrow(t *testing.T, ctx context.Context, g *gethtest.Geth) *gethEscrow {
	cfg := chain.Config{Poll: 100 * time.Millisecond}
	e := &gethEscrow{t: t, ctx: ctx, g: g, tok: g.Info.Token,
		payer: g.NewClient(t, g.Wallet(t, 1), cfg),
		payee: g.NewClient(t, g.Wallet(t, 2), cfg),
		other: g.NewClient(t, g.Wallet(t, 3), cfg)}
	if e.payer.ChainID().Uint64() != g.Info.ChainID {
		t.Fatalf("chain id %s, geth says %d", e.payer.ChainID(), g.Info.ChainID)
	}
	if sym, dec, err := e.payer.TokenInfo(ctx, e.tok); err != nil || sym != "tUSD" || dec != 6 {
		t.Fatalf("token %s: %s %d %v", e.tok, sym, dec, err)
	}
	return e
}

// watch runs the payee's watcher from the start, over the capped RPC too,
// until the test ends.
func (e *gethEscrow) watch() <-chan chain.Event {
	events := make(chan chain.Event, 64)
	wctx, wcancel := context.WithCancel(e.ctx)
	e.t.Cleanup(wcancel)
	go e.payee.Watch(wctx, 0, func(ev chain.Event) { events <- ev })
	return events
}

// depositAndRedeem deposits (approve and deposit), redeems a voucher and
// sees it refused when replayed; it returns the deposit's receipt.
func (e *gethEscrow) depositAndRedeem() *types.Receipt {
	t, ctx, payer, payee := e.t, e.ctx, e.payer, e.payee
	e.before = balance(t, payee, e.tok)
	r1, err := payer.Deposit(ctx, payee.Address(), e.tok, big.NewInt(5_000_000))
	if err != nil {
		t.Fatalf("deposit: %v", err)
	}
	if ch := channel(t, payer, payer.Address(), payee.Address(), e.tok); ch.Deposited.Int64() != 5_000_000 || ch.Redeemed.Sign() != 0 {
		t.Fatalf("after the deposit: %+v", ch)
	}
	v1, err := payer.SignVoucher(payee.Address(), e.tok, big.NewInt(1_000_000))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := payee.Redeem(ctx, v1); err != nil {
		t.Fatalf("redeem: %v", err)
	}
	if got := new(big.Int).Sub(balance(t, payee, e.tok), e.before); got.Int64() != 1_000_000 {
		t.Fatalf("payee got %s for a voucher of 1000000", got)
	}
	// A voucher is cumulative: the same one again pays nothing, and the
	// contract's reason comes back through geth.
	if _, err := payee.Redeem(ctx, v1); !chain.IsRevert(err, "NothingToRedeem") {
		t.Fatalf("replayed voucher: %v, want NothingToRedeem", err)
	}
	return r1
}

// batchLater has the second payer deposit more than 10 blocks after the
// first (r1), and the payee redeem both payers' vouchers in one batch.
func (e *gethEscrow) batchLater(r1 *types.Receipt) {
	t, ctx, payee := e.t, e.ctx, e.payee
	if err := e.g.WaitBlock(ctx, r1.BlockNumber.Uint64()+11); err != nil {
		t.Fatal(err)
	}
	r2, err := e.other.Deposit(ctx, payee.Address(), e.tok, big.NewInt(2_000_000))
	if err != nil {
		t.Fatalf("second deposit: %v", err)
	}
	if d := r2.BlockNumber.Uint64() - r1.BlockNumber.Uint64(); d <= 10 {
		t.Fatalf("deposits %d blocks apart", d)
	}
	v2, _ := e.payer.SignVoucher(payee.Address(), e.tok, big.NewInt(3_000_000))
	v3, _ := e.other.SignVoucher(payee.Address(), e.tok, big.NewInt(1_500_000))
	if _, err := payee.RedeemBatch(ctx, []*chain.Voucher{v2, v3}); err != nil {
		t.Fatalf("redeem batch: %v", err)
	}
	if got := new(big.Int).Sub(balance(t, payee, e.tok), e.before); got.Int64() != 4_500_000 {
		t.Fatalf("payee got %s in all, want 4500000", got)
	}
}

// listOverTheCap checks that the RPC's cap is on, and that the wallets
// list their channels and redemptions all the same.
func (e *gethEscrow) listOverTheCap() {
	t, ctx, g := e.t, e.ctx, e.g
	// The cap is on: one request over every block is refused...
	head, err := g.Client().BlockNumber(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Client().FilterLogs(ctx, ethereum.FilterQuery{FromBlock: big.NewInt(0), ToBlock: new(big.Int).SetUint64(head), Addresses: []common.Address{g.Info.Escrow}})
	if err == nil || !strings.Contains(err.Error(), "exceed maximum block range 10") {
		t.Fatalf("eth_getLogs over %d blocks: %v; want geth's range error", head+1, err)
	}
	// ... and the wallet lists its channels all the same.
	e.checkChannels()
	red, err := e.payee.Redemptions(ctx)
	if err != nil {
		t.Fatalf("redemptions: %v", err)
	}
	var amounts []int64
	for _, r := range red {
		amounts = append(amounts, r.Amount.Int64())
		if r.Time.IsZero() || time.Since(r.Time) > 5*time.Minute {
			t.Errorf("redemption at block %d has time %s", r.Block, r.Time)
		}
	}
	if !slices.Equal(amounts, []int64{1_000_000, 2_000_000, 1_500_000}) {
		t.Fatalf("redemptions %v", amounts)
	}
}

func (e *gethEscrow) checkChannels() {
	t, payer, payee := e.t, e.payer, e.payee
	chs, err := payee.Channels(e.ctx)
	if err != nil {
		t.Fatalf("payee's channels: %v", err)
	}
	slices.SortFunc(chs, func(a, b chain.Channel) int { return a.Payer.Cmp(b.Payer) })
	want := map[common.Address][2]int64{payer.Address(): {5_000_000, 3_000_000}, e.other.Address(): {2_000_000, 1_500_000}}
	if len(chs) != 2 {
		t.Fatalf("payee's channels: %+v", chs)
	}
	for _, ch := range chs {
		w, ok := want[ch.Payer]
		if !ok || ch.Deposited.Int64() != w[0] || ch.Redeemed.Int64() != w[1] || ch.Payee != payee.Address() || ch.Token != e.tok {
			t.Fatalf("payee's channel %+v; want deposited/redeemed %v", ch, w)
		}
	}
	if chs, err := payer.Channels(e.ctx); err != nil || len(chs) != 1 {
		t.Fatalf("payer's channels: %+v, %v", chs, err)
	}
}

// closeAndWithdraw closes the payer's channel: withdraw waits out the
// challenge period.
func (e *gethEscrow) closeAndWithdraw() {
	t, ctx, payer, payee := e.t, e.ctx, e.payer, e.payee
	if _, err := payer.StartClose(ctx, payee.Address(), e.tok); err != nil {
		t.Fatalf("start close: %v", err)
	}
	ch := channel(t, payer, payer.Address(), payee.Address(), e.tok)
	if ch.ClosesAt == 0 {
		t.Fatal("closing channel has no closes_at")
	}
	if _, err := payer.Withdraw(ctx, payee.Address(), e.tok); !chain.IsRevert(err, "ChallengePeriod") {
		t.Fatalf("withdraw during the challenge period: %v", err)
	}
	waitChainTime(t, ctx, e.g, ch.ClosesAt)
	pb := balance(t, payer, e.tok)
	if _, err := payer.Withdraw(ctx, payee.Address(), e.tok); err != nil {
		t.Fatalf("withdraw: %v", err)
	}
	if got := new(big.Int).Sub(balance(t, payer, e.tok), pb); got.Int64() != 2_000_000 {
		t.Fatalf("withdrew %s, want the 2000000 left", got)
	}
}

// checkEvents checks that the watcher saw it all, in order, through
// 10-block windows.
func (e *gethEscrow) checkEvents(events <-chan chain.Event) {
	var kinds []string
	wantKinds := []string{"deposited", "redeemed", "deposited", "redeemed", "redeemed", "close_started", "withdrawn"}
	for len(kinds) < len(wantKinds) {
		select {
		case ev := <-events:
			kinds = append(kinds, ev.Kind)
		case <-e.ctx.Done():
			e.t.Fatalf("watcher saw %v", kinds)
		}
	}
	if !slices.Equal(kinds, wantKinds) {
		e.t.Fatalf("watcher saw %v, want %v", kinds, wantKinds)
	}
}

// waitChainTime waits until the head block's time is at least at (Unix
// seconds): geth seals no block ahead of the clock.
func waitChainTime(t *testing.T, ctx context.Context, g *gethtest.Geth, at uint64) {
	t.Helper()
	for {
		h, err := g.Client().HeaderByNumber(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if h.Time >= at {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("chain time %d never reached %d: %v", h.Time, at, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// geth's own --dev genesis (forks mainnet does not have yet) works too:
// a native-coin channel opened and redeemed.
func TestGethOwnDevGenesis(t *testing.T) {
	t.Parallel()
	g := gethtest.Start(t, gethtest.Options{GethGenesis: true, Accounts: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	payer := g.NewClient(t, g.Wallet(t, 1), chain.Config{Poll: 100 * time.Millisecond})
	payee := g.NewClient(t, g.Wallet(t, 2), chain.Config{Poll: 100 * time.Millisecond})
	rd, err := payer.Deposit(ctx, payee.Address(), chain.NativeToken, big.NewInt(1e15))
	if err != nil {
		t.Fatalf("deposit: %v", err)
	}
	v, _ := payer.SignVoucher(payee.Address(), chain.NativeToken, big.NewInt(1e14))
	rr, err := payee.Redeem(ctx, v)
	if err != nil {
		t.Fatalf("redeem: %v", err)
	}
	if ch := channel(t, payer, payer.Address(), payee.Address(), chain.NativeToken); ch.Redeemed.Int64() != 1e14 {
		t.Fatalf("channel %+v", ch)
	}
	t.Logf("gas on geth's own dev genesis: native deposit (new channel) %d, native redeem (first) %d", rd.GasUsed, rr.GasUsed)
}

func balance(t *testing.T, c *chain.Client, token common.Address) *big.Int {
	t.Helper()
	b, err := c.Balance(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func channel(t *testing.T, c *chain.Client, payer, payee, token common.Address) chain.Channel {
	t.Helper()
	ch, err := c.Channel(context.Background(), payer, payee, token)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
