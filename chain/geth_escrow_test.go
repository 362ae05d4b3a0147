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
	cfg := chain.Config{Poll: 100 * time.Millisecond}
	payer := g.NewClient(t, g.Wallet(t, 1), cfg)
	payee := g.NewClient(t, g.Wallet(t, 2), cfg)
	other := g.NewClient(t, g.Wallet(t, 3), cfg)
	tok := g.Info.Token
	if payer.ChainID().Uint64() != g.Info.ChainID {
		t.Fatalf("chain id %s, geth says %d", payer.ChainID(), g.Info.ChainID)
	}
	if sym, dec, err := payer.TokenInfo(ctx, tok); err != nil || sym != "tUSD" || dec != 6 {
		t.Fatalf("token %s: %s %d %v", tok, sym, dec, err)
	}

	// The watcher runs from the start, over the capped RPC too.
	events := make(chan chain.Event, 64)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go payee.Watch(wctx, 0, func(ev chain.Event) { events <- ev })

	before := balance(t, payee, tok)
	r1, err := payer.Deposit(ctx, payee.Address(), tok, big.NewInt(5_000_000))
	if err != nil {
		t.Fatalf("deposit: %v", err)
	}
	if ch := channel(t, payer, payer.Address(), payee.Address(), tok); ch.Deposited.Int64() != 5_000_000 || ch.Redeemed.Sign() != 0 {
		t.Fatalf("after the deposit: %+v", ch)
	}
	v1, err := payer.SignVoucher(payee.Address(), tok, big.NewInt(1_000_000))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := payee.Redeem(ctx, v1); err != nil {
		t.Fatalf("redeem: %v", err)
	}
	if got := new(big.Int).Sub(balance(t, payee, tok), before); got.Int64() != 1_000_000 {
		t.Fatalf("payee got %s for a voucher of 1000000", got)
	}
	// A voucher is cumulative: the same one again pays nothing, and the
	// contract's reason comes back through geth.
	if _, err := payee.Redeem(ctx, v1); !chain.IsRevert(err, "NothingToRedeem") {
		t.Fatalf("replayed voucher: %v, want NothingToRedeem", err)
	}

	// The second payer deposits more than 10 blocks after the first.
	if err := g.WaitBlock(ctx, r1.BlockNumber.Uint64()+11); err != nil {
		t.Fatal(err)
	}
	r2, err := other.Deposit(ctx, payee.Address(), tok, big.NewInt(2_000_000))
	if err != nil {
		t.Fatalf("second deposit: %v", err)
	}
	if d := r2.BlockNumber.Uint64() - r1.BlockNumber.Uint64(); d <= 10 {
		t.Fatalf("deposits %d blocks apart", d)
	}
	v2, _ := payer.SignVoucher(payee.Address(), tok, big.NewInt(3_000_000))
	v3, _ := other.SignVoucher(payee.Address(), tok, big.NewInt(1_500_000))
	if _, err := payee.RedeemBatch(ctx, []*chain.Voucher{v2, v3}); err != nil {
		t.Fatalf("redeem batch: %v", err)
	}
	if got := new(big.Int).Sub(balance(t, payee, tok), before); got.Int64() != 4_500_000 {
		t.Fatalf("payee got %s in all, want 4500000", got)
	}

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
	chs, err := payee.Channels(ctx)
	if err != nil {
		t.Fatalf("payee's channels: %v", err)
	}
	slices.SortFunc(chs, func(a, b chain.Channel) int { return a.Payer.Cmp(b.Payer) })
	want := map[common.Address][2]int64{payer.Address(): {5_000_000, 3_000_000}, other.Address(): {2_000_000, 1_500_000}}
	if len(chs) != 2 {
		t.Fatalf("payee's channels: %+v", chs)
	}
	for _, ch := range chs {
		w, ok := want[ch.Payer]
		if !ok || ch.Deposited.Int64() != w[0] || ch.Redeemed.Int64() != w[1] || ch.Payee != payee.Address() || ch.Token != tok {
			t.Fatalf("payee's channel %+v; want deposited/redeemed %v", ch, w)
		}
	}
	if chs, err := payer.Channels(ctx); err != nil || len(chs) != 1 {
		t.Fatalf("payer's channels: %+v, %v", chs, err)
	}
	red, err := payee.Redemptions(ctx)
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

	// Closing: withdraw waits out the challenge period.
	if _, err := payer.StartClose(ctx, payee.Address(), tok); err != nil {
		t.Fatalf("start close: %v", err)
	}
	ch := channel(t, payer, payer.Address(), payee.Address(), tok)
	if ch.ClosesAt == 0 {
		t.Fatal("closing channel has no closes_at")
	}
	if _, err := payer.Withdraw(ctx, payee.Address(), tok); !chain.IsRevert(err, "ChallengePeriod") {
		t.Fatalf("withdraw during the challenge period: %v", err)
	}
	for {
		h, err := g.Client().HeaderByNumber(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if h.Time >= ch.ClosesAt {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	pb := balance(t, payer, tok)
	if _, err := payer.Withdraw(ctx, payee.Address(), tok); err != nil {
		t.Fatalf("withdraw: %v", err)
	}
	if got := new(big.Int).Sub(balance(t, payer, tok), pb); got.Int64() != 2_000_000 {
		t.Fatalf("withdrew %s, want the 2000000 left", got)
	}

	// The watcher saw it all, in order, through 10-block windows.
	var kinds []string
	wantKinds := []string{"deposited", "redeemed", "deposited", "redeemed", "redeemed", "close_started", "withdrawn"}
	for len(kinds) < len(wantKinds) {
		select {
		case ev := <-events:
			kinds = append(kinds, ev.Kind)
		case <-ctx.Done():
			t.Fatalf("watcher saw %v", kinds)
		}
	}
	if !slices.Equal(kinds, wantKinds) {
		t.Fatalf("watcher saw %v, want %v", kinds, wantKinds)
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
