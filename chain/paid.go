package chain

import (
	"context"
	"fmt"
	"maps"
	"math/big"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// PaidConfig bounds what Paid reads of the chain. The zero value of each
// field is a working default.
type PaidConfig struct {
	// Window is the most recent blocks a wallet's first read covers;
	// zero: DefaultPaidWindow. Later reads add the blocks since, and a
	// wallet's record that spans twice the window starts over.
	Window uint64
	// TTL is how long an answer is reused before new blocks are read;
	// zero: one minute.
	TTL time.Duration
	// MaxWallets bounds the wallets remembered (the least recently read
	// goes first); zero: 256.
	MaxWallets int
	// Now is the clock of the TTL; zero: time.Now.
	Now func() time.Time
}

// DefaultPaidWindow is about a month of 12-second blocks: what a
// provider's standing on chain is read over when PaidConfig.Window is
// zero.
const DefaultPaidWindow = 216_000

// Paid says what the escrow paid a wallet as payee, and from how many
// distinct payers, in the client's default token only: anyone can
// deploy a token and pay themselves in it for free, while the token
// users price GPUs in costs money. It reads the escrow's Deposited and
// Redeemed events (a redemption names the channel, a deposit the
// channel's payer) over a bounded window of confirmed blocks, in the
// client's log ranges, and caches each wallet's tally. It implements
// market/receipt's PaidOnChain.
type Paid struct {
	c   *Client
	cfg PaidConfig
	sem chan struct{} // one read of the chain at a time

	mu      sync.Mutex
	wallets map[common.Address]*paidTally
}

// paidTally is what the events of blocks from to next-1 say about one
// payee.
type paidTally struct {
	from, next uint64
	payer      map[common.Hash]common.Address // channel -> payer, default token only
	redeemed   map[common.Hash]*big.Int       // channel -> paid out
	readAt     time.Time
}

// NewPaid reads payments through c.
func NewPaid(c *Client, cfg PaidConfig) *Paid {
	if cfg.Window == 0 {
		cfg.Window = DefaultPaidWindow
	}
	if cfg.TTL == 0 {
		cfg.TTL = time.Minute
	}
	if cfg.MaxWallets == 0 {
		cfg.MaxWallets = 256
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Paid{c: c, cfg: cfg, sem: make(chan struct{}, 1), wallets: map[common.Address]*paidTally{}}
}

// PaidOnChain is what the escrow paid wallet in the default token over
// the window, and how many distinct payers' channels it came from.
func (p *Paid) PaidOnChain(ctx context.Context, wallet string) (int, *big.Int, error) {
	if !common.IsHexAddress(wallet) {
		return 0, nil, fmt.Errorf("paid on chain: wallet %q is not an address", wallet)
	}
	payee := common.HexToAddress(wallet)
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, nil, fmt.Errorf("paid on chain: %w", ctx.Err())
	}
	defer func() { <-p.sem }()
	t, err := p.tally(ctx, payee)
	if err != nil {
		return 0, nil, fmt.Errorf("paid on chain to %s: %w", payee, err)
	}
	payers, total := t.sum()
	return payers, total, nil
}

// tally brings payee's tally up to the confirmed head, unless it was
// read within the TTL. What a read that failed midway got through is
// kept, and the next read goes on from there.
func (p *Paid) tally(ctx context.Context, payee common.Address) (*paidTally, error) {
	now := p.cfg.Now()
	p.mu.Lock()
	t := p.wallets[payee]
	p.mu.Unlock()
	if t != nil && !t.readAt.IsZero() && now.Sub(t.readAt) < p.cfg.TTL {
		return t, nil
	}
	head, err := p.c.b.BlockNumber(ctx)
	if err != nil {
		return nil, fmt.Errorf("head block: %w", err)
	}
	conf := p.c.cfg.Confirmations
	if head+1 < conf {
		return &paidTally{}, nil // nothing confirmed yet
	}
	to := head + 1 - conf
	first := p.c.fromBlock(to - min(to, p.cfg.Window-1))
	if t == nil || t.from+2*p.cfg.Window < to {
		t = &paidTally{from: first, next: first, payer: map[common.Hash]common.Address{}, redeemed: map[common.Hash]*big.Int{}}
	}
	next := &paidTally{from: t.from, next: t.next, payer: maps.Clone(t.payer), redeemed: cloneAmounts(t.redeemed)}
	err = p.read(ctx, next, payee, to)
	if err == nil {
		next.readAt = now
	}
	p.keep(payee, next)
	return next, err
}

// paidChunk is how many log ranges one step of a read covers: a read
// that fails keeps the steps done.
const paidChunk = 16

// read adds the events of blocks t.next to to, a chunk at a time.
func (p *Paid) read(ctx context.Context, t *paidTally, payee common.Address, to uint64) error {
	eabi := p.c.esc.GetABI()
	// Deposited(channel, payer, payee): the payer of each channel to
	// payee; Redeemed(channel, payee): what each channel paid out.
	dep, err := abi.MakeTopics([]any{eabi.Events["Deposited"].ID}, nil, nil, []any{payee})
	if err != nil {
		return err
	}
	red, err := abi.MakeTopics([]any{eabi.Events["Redeemed"].ID}, nil, []any{payee})
	if err != nil {
		return err
	}
	step := paidChunk * p.c.newLogWindow().size
	for t.next <= to {
		end := min(to, t.next+step-1)
		payers, paid := map[common.Hash]common.Address{}, map[common.Hash]*big.Int{}
		err := p.scan(ctx, dep, t.next, end, func(l *types.Log) error {
			ev, err := p.c.esc.UnpackDepositedEvent(l)
			if err == nil && ev.Token == p.c.cfg.Token && ev.Payee == payee {
				payers[ev.Channel] = ev.Payer
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("deposits: %w", err)
		}
		err = p.scan(ctx, red, t.next, end, func(l *types.Log) error {
			ev, err := p.c.esc.UnpackRedeemedEvent(l)
			if err == nil && ev.Payee == payee {
				addAmount(paid, ev.Channel, ev.Amount)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("redemptions: %w", err)
		}
		maps.Copy(t.payer, payers)
		for ch, amt := range paid {
			addAmount(t.redeemed, ch, amt)
		}
		t.next = end + 1
	}
	return nil
}

func addAmount(m map[common.Hash]*big.Int, k common.Hash, v *big.Int) {
	if m[k] == nil {
		m[k] = new(big.Int)
	}
	m[k].Add(m[k], v)
}

// scan reads the escrow's logs matching topics in blocks from to to.
func (p *Paid) scan(ctx context.Context, topics [][]common.Hash, from, to uint64, fn func(*types.Log) error) error {
	q := ethereum.FilterQuery{Addresses: []common.Address{p.c.cfg.Escrow}, Topics: topics}
	return p.c.newLogWindow().scan(ctx, p.c.b, q, from, to, fn, nil)
}

// keep caches t as payee's tally, forgetting the least recently read
// wallet beyond MaxWallets.
func (p *Paid) keep(payee common.Address, t *paidTally) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wallets[payee] = t
	for len(p.wallets) > p.cfg.MaxWallets {
		var oldest common.Address
		var at time.Time
		for a, w := range p.wallets {
			if at.IsZero() || w.readAt.Before(at) {
				oldest, at = a, w.readAt
			}
		}
		delete(p.wallets, oldest)
	}
}

// sum is the distinct payers whose channels paid out, and the total
// paid: a redemption whose channel's deposit fell before the window has
// no known payer and counts for nothing.
func (t *paidTally) sum() (int, *big.Int) {
	payers := map[common.Address]bool{}
	total := new(big.Int)
	for ch, amt := range t.redeemed {
		if who, ok := t.payer[ch]; ok && amt.Sign() > 0 {
			payers[who] = true
			total.Add(total, amt)
		}
	}
	return len(payers), total
}

func cloneAmounts(m map[common.Hash]*big.Int) map[common.Hash]*big.Int {
	out := make(map[common.Hash]*big.Int, len(m))
	for k, v := range m {
		out[k] = new(big.Int).Set(v)
	}
	return out
}
