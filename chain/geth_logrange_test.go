package chain

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// cappedLogs is an RPC that caps eth_getLogs ranges as geth's
// --rpc.rangelimit does (to-from at most limit), with geth's error text,
// and records the ranges asked for.
type cappedLogs struct {
	Backend
	limit uint64
	down  error // every FilterLogs fails with it, when set

	mu     sync.Mutex
	ranges [][2]uint64
}

func (c *cappedLogs) FilterLogs(ctx context.Context, q ethereum.FilterQuery) ([]types.Log, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	from, to := uint64(0), uint64(0)
	if q.FromBlock != nil {
		from = q.FromBlock.Uint64()
	}
	if q.ToBlock != nil {
		to = q.ToBlock.Uint64()
	} else {
		head, err := c.Backend.BlockNumber(ctx)
		if err != nil {
			return nil, err
		}
		to = head
	}
	c.ranges = append(c.ranges, [2]uint64{from, to})
	if c.down != nil {
		return nil, c.down
	}
	if to-from > c.limit {
		return nil, fmt.Errorf("exceed maximum block range %d", c.limit)
	}
	return c.Backend.FilterLogs(ctx, q)
}

func (c *cappedLogs) asked() [][2]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ranges)
}

// emptyBlocks seals n blocks without transactions.
func (e *simEnv) emptyBlocks(n int) {
	for range n {
		e.sim.Commit()
	}
}

// On an RPC that caps eth_getLogs at 10 blocks, the wallet's channels,
// its redemptions and the watcher read the logs in windows that fit (the
// default 2000 halved until it does), from Config.FromBlock on, and find
// deposits more than 10 blocks apart.
func TestLogRangeCapSimulated(t *testing.T) {
	e := newSim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deployed, head := e.spreadOut(ctx)

	// The fake refuses what an uncapped read asks.
	capped := &cappedLogs{Backend: e.b, limit: 10}
	if _, err := capped.FilterLogs(ctx, ethereum.FilterQuery{FromBlock: big.NewInt(0), ToBlock: new(big.Int).SetUint64(head)}); err == nil || !isRangeError(err) {
		t.Fatalf("the capped fake answered a range of %d blocks: %v", head, err)
	}
	for _, tc := range []logRangeCase{
		{"default range, from genesis", 0, 0},
		{"range 8, from the deployment", 8, deployed},
		{"range 11 (the cap exactly)", 11, deployed},
	} {
		t.Run(tc.name, func(t *testing.T) { e.testLogRange(t, ctx, tc, head) })
	}

	// A read from past the head finds nothing and asks for nothing.
	capped = &cappedLogs{Backend: e.b, limit: 10}
	payee := e.client(e.payeeK, Config{Escrow: e.escrow, FromBlock: head + 1}, func(Backend) Backend { return capped })
	if chs, err := payee.Channels(ctx); err != nil || len(chs) != 0 {
		t.Fatalf("channels from past the head: %v, %v", chs, err)
	}
	if n := len(capped.asked()); n != 0 {
		t.Fatalf("%d eth_getLogs requests from past the head", n)
	}

	// An RPC that fails otherwise is not asked for smaller and smaller
	// ranges: the error comes back at once.
	capped = &cappedLogs{Backend: e.b, limit: 10, down: errors.New("dial tcp 127.0.0.1:8545: connect: connection refused")}
	payee = e.client(e.payeeK, Config{Escrow: e.escrow}, func(Backend) Backend { return capped })
	if _, err := payee.Channels(ctx); err == nil || isRangeError(err) {
		t.Fatalf("channels on a failing RPC: %v", err)
	}
	if n := len(capped.asked()); n != 1 {
		t.Fatalf("%d requests to a failing RPC, want 1", n)
	}
}

// spreadOut makes deposits and a redemption more than 10 blocks apart
// and returns the blocks of the deployment and of the head.
func (e *simEnv) spreadOut(ctx context.Context) (deployed, head uint64) {
	t := e.t
	deployed, err := e.b.BlockNumber(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.emptyBlocks(25)
	if _, err := e.payer.Deposit(ctx, e.payee.Address(), e.token, big.NewInt(3_000_000)); err != nil {
		t.Fatal(err)
	}
	e.emptyBlocks(30)
	if _, err := e.other.Deposit(ctx, e.payee.Address(), e.token, big.NewInt(2_000_000)); err != nil {
		t.Fatal(err)
	}
	e.emptyBlocks(15)
	if _, err := e.payee.Redeem(ctx, e.voucher(e.token, 1_000_000)); err != nil {
		t.Fatal(err)
	}
	e.emptyBlocks(12)
	if _, err := e.payer.Deposit(ctx, e.other.Address(), NativeToken, big.NewInt(1e15)); err != nil {
		t.Fatal(err)
	}
	e.emptyBlocks(3)
	head, _ = e.b.BlockNumber(ctx)
	return deployed, head
}

type logRangeCase struct {
	name     string
	logRange uint64
	from     uint64
}

// testLogRange reads the channels, the redemptions and the events of
// spreadOut through an RPC capped at 10 blocks, with tc's settings.
func (e *simEnv) testLogRange(t *testing.T, ctx context.Context, tc logRangeCase, head uint64) {
	capped := &cappedLogs{Backend: e.b, limit: 10}
	cfg := Config{Escrow: e.escrow, Token: e.token, Poll: time.Millisecond, LogRange: tc.logRange, FromBlock: tc.from}
	payee := e.client(e.payeeK, cfg, func(Backend) Backend { return capped })
	payer := e.client(e.payerK, cfg, func(Backend) Backend { return capped })

	chs, err := payee.Channels(ctx)
	if err != nil {
		t.Fatalf("payee's channels: %v", err)
	}
	if got := payers(chs); !slices.Equal(got, sorted(e.payer.Address(), e.other.Address())) {
		t.Fatalf("payee's channels are from %v; want the payer's and the other's", got)
	}
	chs, err = payer.Channels(ctx)
	if err != nil {
		t.Fatalf("payer's channels: %v", err)
	}
	if len(chs) != 2 {
		t.Fatalf("payer has %d channels, want 2 (to the payee in tUSD, to the other in ETH): %+v", len(chs), chs)
	}
	red, err := payee.Redemptions(ctx)
	if err != nil {
		t.Fatalf("redemptions: %v", err)
	}
	if len(red) != 1 || red[0].Amount.Int64() != 1_000_000 || red[0].Time.IsZero() {
		t.Fatalf("redemptions %+v", red)
	}
	checkAsked(t, capped, tc, head)
	t.Logf("%d eth_getLogs requests for %d blocks", len(capped.asked()), head-tc.from+1)
	checkWatcher(t, ctx, payee)
}

// checkAsked checks every range asked of capped: within the cap when
// LogRange is set, from FromBlock on, and never past the head.
func checkAsked(t *testing.T, capped *cappedLogs, tc logRangeCase, head uint64) {
	for _, r := range capped.asked() {
		if r[1]-r[0] > 10 && tc.logRange != 0 {
			t.Errorf("asked for blocks %d to %d with LogRange %d", r[0], r[1], tc.logRange)
		}
		if r[0] < tc.from {
			t.Errorf("asked for blocks %d to %d, before FromBlock %d", r[0], r[1], tc.from)
		}
		if r[1] > head {
			t.Errorf("asked for blocks %d to %d, past the head %d", r[0], r[1], head)
		}
	}
}

// checkWatcher runs payee's watcher from the deployment block (or 0) and
// checks it sees spreadOut's events in order.
func checkWatcher(t *testing.T, ctx context.Context, payee *Client) {
	got := make(chan Event, 16)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go payee.Watch(wctx, 0, func(ev Event) { got <- ev })
	var kinds []string
	for len(kinds) < 4 {
		select {
		case ev := <-got:
			kinds = append(kinds, ev.Kind)
		case <-ctx.Done():
			t.Fatalf("watcher saw only %v", kinds)
		}
	}
	if !slices.Equal(kinds, []string{"deposited", "deposited", "redeemed", "deposited"}) {
		t.Fatalf("watcher saw %v", kinds)
	}
}

func payers(chs []Channel) []common.Address {
	var out []common.Address
	for _, ch := range chs {
		out = append(out, ch.Payer)
	}
	return sorted(out...)
}

func sorted(as ...common.Address) []common.Address {
	out := slices.Clone(as)
	slices.SortFunc(out, func(a, b common.Address) int { return a.Cmp(b) })
	return out
}

func TestIsRangeError(t *testing.T) {
	for _, msg := range []string{
		"exceed maximum block range 10",
		"query returned more than 10000 results. Try with this block range [0x1, 0x2].",
		"Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
		"eth_getLogs is limited to a 10,000 range",
		"block range too large",
	} {
		if !isRangeError(errors.New(msg)) {
			t.Errorf("%q is not taken for a range error", msg)
		}
	}
	for _, err := range []error{
		errors.New("connection refused"),
		context.DeadlineExceeded,
		fmt.Errorf("logs: %w", context.Canceled),
	} {
		if isRangeError(err) {
			t.Errorf("%v is taken for a range error", err)
		}
	}
}
