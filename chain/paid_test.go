package chain

import (
	"context"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// paidChain is a dev chain with clients for its accounts 1 to n-1, the
// default token theirs.
type paidChain struct {
	t       *testing.T
	dc      *DevChain
	clients []*Client
}

func newPaidChain(t *testing.T, ctx context.Context, n int) *paidChain {
	t.Helper()
	dc, err := StartDevChain(ctx, DevChainConfig{Accounts: n, IdleBlock: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Close() })
	pc := &paidChain{t: t, dc: dc, clients: make([]*Client, n)}
	cfg := Config{Escrow: dc.Info.Escrow, Token: dc.Info.Token, Poll: 20 * time.Millisecond}
	for i := 1; i < n; i++ {
		if pc.clients[i], err = NewClient(ctx, dc.Client(), devWallet(t, i), cfg); err != nil {
			t.Fatal(err)
		}
	}
	return pc
}

// pay has payer deposit to payee in token and payee redeem cumulative.
func (pc *paidChain) pay(ctx context.Context, payer, payee int, token common.Address, deposit, cumulative int64) {
	pc.t.Helper()
	from, to := pc.clients[payer], pc.clients[payee]
	if deposit > 0 {
		if _, err := from.Deposit(ctx, to.Address(), token, big.NewInt(deposit)); err != nil {
			pc.t.Fatal(err)
		}
	}
	v, err := from.SignVoucher(to.Address(), token, big.NewInt(cumulative))
	if err != nil {
		pc.t.Fatal(err)
	}
	if _, err := to.Redeem(ctx, v); err != nil {
		pc.t.Fatal(err)
	}
}

// fakeClock is a clock a test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// What the escrow paid a provider counts its distinct payers in the
// default token: a payer paying twice is one, a deposit never redeemed
// is none, money to another wallet or in another token is not counted;
// the answer is cached until its TTL, then new blocks are added.
func TestPaidOnChainCountsDistinctPayers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pc := newPaidChain(t, ctx, 6)
	const provider, other = 5, 4
	tok := pc.dc.Info.Token
	pc.pay(ctx, 1, provider, tok, 1000, 300)
	pc.pay(ctx, 1, provider, tok, 0, 500)            // the same payer again: 200 more
	pc.pay(ctx, 2, provider, tok, 1000, 100)         // a second payer
	pc.pay(ctx, 3, other, tok, 1000, 700)            // another payee
	pc.pay(ctx, 3, provider, NativeToken, 1000, 900) // another token
	if _, err := pc.clients[4].Deposit(ctx, pc.clients[provider].Address(), tok, big.NewInt(50)); err != nil {
		t.Fatal(err) // deposited, never redeemed
	}
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	paid := NewPaid(pc.clients[1], PaidConfig{Now: clock.now})
	want := func(wallet common.Address, payers int, total int64) {
		t.Helper()
		n, sum, err := paid.PaidOnChain(ctx, wallet.Hex())
		if err != nil || n != payers || sum.Cmp(big.NewInt(total)) != 0 {
			t.Fatalf("paid on chain to %s: %d payers, %v, %v; want %d payers, %d", wallet, n, sum, err, payers, total)
		}
	}
	prov := pc.clients[provider].Address()
	want(prov, 2, 600)
	want(pc.clients[other].Address(), 1, 700)
	pc.pay(ctx, 4, provider, tok, 0, 50) // the fourth payer's deposit pays out
	want(prov, 2, 600)                   // cached
	clock.add(2 * time.Minute)
	want(prov, 3, 650)
	if _, _, err := paid.PaidOnChain(ctx, "not-a-wallet"); err == nil {
		t.Fatal("a wallet that is not an address was read")
	}
	// A window of one block sees the last redemption, not its channel's
	// deposit: it counts for nothing.
	narrow := NewPaid(pc.clients[1], PaidConfig{Window: 1})
	if n, sum, err := narrow.PaidOnChain(ctx, prov.Hex()); err != nil || n != 0 || sum.Sign() != 0 {
		t.Fatalf("one block's window: %d payers, %v, %v", n, sum, err)
	}
}

// failingLogs fails every FilterLogs after the first ok, while on.
type failingLogs struct {
	Backend
	mu    *sync.Mutex
	ok    *int
	calls *int
}

func (f failingLogs) FilterLogs(ctx context.Context, q ethereum.FilterQuery) ([]types.Log, error) {
	f.mu.Lock()
	*f.calls++
	fail := *f.ok >= 0 && *f.calls > *f.ok
	f.mu.Unlock()
	if fail {
		return nil, errors.New("rpc down")
	}
	return f.Backend.FilterLogs(ctx, q)
}

// A read that fails midway keeps the chunks it got through and goes on
// from there; nothing is counted twice.
func TestPaidOnChainGoesOnAfterAnOutage(t *testing.T) {
	e := newSim(t)
	ctx := context.Background()
	for i := int64(1); i <= 12; i++ {
		if _, err := e.payer.Deposit(ctx, e.payee.Address(), e.token, big.NewInt(10)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.payee.Redeem(ctx, e.voucher(e.token, 10*i)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	ok, calls := 40, 0 // past the first chunk of 16 blocks (32 requests), within the second
	wrap := func(b Backend) Backend { return failingLogs{b, &mu, &ok, &calls} }
	c := e.client(e.otherK, Config{Escrow: e.escrow, Token: e.token, Poll: time.Millisecond, LogRange: 1}, wrap)
	paid := NewPaid(c, PaidConfig{})
	if _, _, err := paid.PaidOnChain(ctx, e.payee.Address().Hex()); err == nil || !strings.Contains(err.Error(), "rpc down") {
		t.Fatalf("a read with the RPC down: %v", err)
	}
	if tl := paid.wallets[e.payee.Address()]; tl == nil || tl.next != tl.from+paidChunk || !tl.readAt.IsZero() {
		t.Fatalf("kept after the outage: %+v, want the first chunk done", tl)
	}
	mu.Lock()
	ok, calls = -1, 0
	mu.Unlock()
	n, total, err := paid.PaidOnChain(ctx, e.payee.Address().Hex())
	if err != nil || n != 1 || total.Cmp(big.NewInt(120)) != 0 {
		t.Fatalf("after the outage: %d payers, %v, %v; want 1 payer, 120", n, total, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if head, _ := e.b.BlockNumber(ctx); uint64(calls) > 2*(head+1-paidChunk) {
		t.Fatalf("%d requests for %d blocks: the first chunk was read again", calls, head+1)
	}
}
