package chain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/aixblock/aixblock/contracts"
	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// Backend is what the client needs of a chain: go-ethereum's ethclient over
// JSON-RPC, or its simulated backend in tests.
type Backend interface {
	bind.ContractBackend
	bind.DeployBackend
	ChainID(ctx context.Context) (*big.Int, error)
	BalanceAt(ctx context.Context, account common.Address, block *big.Int) (*big.Int, error)
	BlockNumber(ctx context.Context) (uint64, error)
}

// Config configures a Client.
type Config struct {
	// Escrow is the escrow contract's address; required.
	Escrow common.Address
	// Token is the default ERC-20 for deposits and balances; zero means
	// the native coin.
	Token common.Address
	// Confirmations a transaction needs before it counts (a deposit is not
	// relied on before); zero means 1, the block that includes it.
	Confirmations uint64
	// BumpAfter is how long a transaction may stay unmined before it is
	// sent again with higher fees; zero means 30 s.
	BumpAfter time.Duration
	// Poll is how often receipts and new blocks are checked; zero means 200 ms.
	Poll time.Duration
	// FromBlock is where reads of the escrow's event logs start (wallet
	// channels, redemptions, the watcher): the block that deployed it, if
	// known; zero means the genesis block.
	FromBlock uint64
	// LogRange is the most blocks one eth_getLogs request covers (hosted
	// RPCs cap it); zero means DefaultLogRange. A range the RPC refuses for
	// its size is halved until it passes.
	LogRange uint64
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Known is the chain this repo used before (nil: none): when the
	// chain cannot be read at start and Known names the same escrow, the
	// client starts with it, so a daemon starts during an outage.
	Known *Identity
}

// Client moves money through the escrow with one wallet.
type Client struct {
	b       Backend
	w       *Wallet
	cfg     Config
	chainID *big.Int
	genesis common.Hash
	escrow  *bind.BoundContract
	esc     *contracts.Escrow
	erc20   *contracts.ERC20
	tx      *sender
	log     *slog.Logger
	tokens  sync.Map // token address -> tokenInfo
}

type tokenInfo struct {
	symbol   string
	decimals uint8
}

// NewClient checks that the backend answers and that the escrow has code.
func NewClient(ctx context.Context, b Backend, w *Wallet, cfg Config) (*Client, error) {
	if cfg.Escrow == (common.Address{}) {
		return nil, errors.New("chain: no escrow address configured")
	}
	if cfg.Confirmations == 0 {
		cfg.Confirmations = 1
	}
	if cfg.BumpAfter == 0 {
		cfg.BumpAfter = 30 * time.Second
	}
	if cfg.Poll == 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	id, genesis, err := identify(ctx, b, cfg)
	if err != nil {
		if cfg.Known == nil || cfg.Known.Escrow != cfg.Escrow {
			return nil, err
		}
		// Started during an outage: the chain this repo used before, as
		// it was then; every read and send tries the chain again.
		cfg.Logger.Warn("the chain cannot be read at start; going on with the chain this repo used before", "chain_id", cfg.Known.ChainID, "err", err)
		id, genesis = new(big.Int).SetUint64(cfg.Known.ChainID), cfg.Known.Genesis
	}
	esc := contracts.NewEscrow()
	tok := contracts.NewERC20()
	log := cfg.Logger.With("component", "chain")
	c := &Client{
		b: b, w: w, cfg: cfg, chainID: id, genesis: genesis, log: log,
		esc: esc, escrow: esc.Instance(b, cfg.Escrow), erc20: tok,
	}
	eabi, tabi := esc.GetABI(), tok.GetABI()
	c.tx = &sender{b: b, w: w, chainID: id, bumpAfter: cfg.BumpAfter, poll: cfg.Poll,
		confirm: cfg.Confirmations, errABIs: []*abi.ABI{&eabi, &tabi}, log: log}
	return c, nil
}

// identify reads the chain's ID and genesis and checks that the escrow
// has code there.
func identify(ctx context.Context, b Backend, cfg Config) (*big.Int, common.Hash, error) {
	id, err := b.ChainID(ctx)
	if err != nil {
		return nil, common.Hash{}, fmt.Errorf("chain: chain id: %w", err)
	}
	g, err := b.HeaderByNumber(ctx, big.NewInt(0))
	if err != nil {
		return nil, common.Hash{}, fmt.Errorf("chain: genesis block: %w", err)
	}
	code, err := b.CodeAt(ctx, cfg.Escrow, nil)
	if err != nil {
		return nil, common.Hash{}, fmt.Errorf("chain: escrow code: %w", err)
	}
	if len(code) == 0 {
		return nil, common.Hash{}, fmt.Errorf("chain: no contract at escrow address %s on chain %s", cfg.Escrow, id)
	}
	return id, g.Hash(), nil
}

// Identity is what tells a chain and its escrow apart, kept by a repo
// after its first start so that a later start needs no RPC to know it.
type Identity struct {
	ChainID uint64         `json:"chain_id"`
	Genesis common.Hash    `json:"genesis"`
	Escrow  common.Address `json:"escrow"`
}

// Identity is this client's chain and escrow.
func (c *Client) Identity() Identity {
	return Identity{ChainID: c.chainID.Uint64(), Genesis: c.genesis, Escrow: c.cfg.Escrow}
}

// ChainID is the chain's ID.
func (c *Client) ChainID() *big.Int { return new(big.Int).Set(c.chainID) }

// Genesis is the hash of the chain's genesis block: with the chain ID, it
// tells two chains apart (dev chains share their ID and addresses).
func (c *Client) Genesis() common.Hash { return c.genesis }

// Address is the wallet's address.
func (c *Client) Address() common.Address { return c.w.Address() }

// Escrow is the escrow's address.
func (c *Client) Escrow() common.Address { return c.cfg.Escrow }

// DefaultToken is the configured token (zero: the native coin).
func (c *Client) DefaultToken() common.Address { return c.cfg.Token }

// Channel is a channel's state on chain.
type Channel struct {
	ID        common.Hash    `json:"channel"`
	Payer     common.Address `json:"payer"`
	Payee     common.Address `json:"payee"`
	Token     common.Address `json:"token"`
	Deposited *Amount        `json:"deposited"`
	Redeemed  *Amount        `json:"redeemed"`
	// Available is deposited less redeemed: what the payee can still be paid.
	Available *Amount `json:"available"`
	// ClosesAt is when the payer may withdraw (unix seconds); 0 while open.
	ClosesAt uint64 `json:"closes_at"`
}

// Channel reads the channel from payer to payee in token.
func (c *Client) Channel(ctx context.Context, payer, payee, token common.Address) (Channel, error) {
	return c.channelAt(ctx, nil, payer, payee, token)
}

// channelAt reads the channel as of block (nil: the latest).
func (c *Client) channelAt(ctx context.Context, block *big.Int, payer, payee, token common.Address) (Channel, error) {
	out, err := bind.Call(c.escrow, &bind.CallOpts{Context: ctx, BlockNumber: block}, c.esc.PackChannel(payer, payee, token), c.esc.UnpackChannel)
	if err != nil {
		if block != nil {
			return Channel{}, fmt.Errorf("read channel at block %s: %w", block, err)
		}
		return Channel{}, fmt.Errorf("read channel: %w", err)
	}
	return Channel{
		ID: ChannelID(payer, payee, token), Payer: payer, Payee: payee, Token: token,
		Deposited: NewAmount(out.Deposited), Redeemed: NewAmount(out.Redeemed),
		Available: NewAmount(new(big.Int).Sub(out.Deposited, out.Redeemed)),
		ClosesAt:  out.ClosesAt.Uint64(),
	}, nil
}

// Channels lists the channels the wallet pays into or is paid from, found
// through the escrow's Deposited events from Config.FromBlock on (read in
// windows of Config.LogRange blocks), with their current state.
func (c *Client) Channels(ctx context.Context) ([]Channel, error) {
	me := c.w.Address()
	head, err := c.b.BlockNumber(ctx)
	if err != nil {
		return nil, fmt.Errorf("channels: head block: %w", err)
	}
	id := c.esc.GetABI().Events["Deposited"].ID
	seen := map[common.Hash]bool{}
	var out []Channel
	w := c.newLogWindow()
	// Deposited(channel, payer, payee): the wallet as payer, then as payee.
	for _, query := range [][][]any{{{id}, nil, {me}}, {{id}, nil, nil, {me}}} {
		topics, err := abi.MakeTopics(query...)
		if err != nil {
			return nil, fmt.Errorf("channels: %w", err)
		}
		q := ethereum.FilterQuery{Addresses: []common.Address{c.cfg.Escrow}, Topics: topics}
		err = w.scan(ctx, c.b, q, c.fromBlock(0), head, func(l *types.Log) error {
			ev, err := c.esc.UnpackDepositedEvent(l)
			if err != nil {
				return err
			}
			id := common.Hash(ev.Channel)
			if seen[id] {
				return nil
			}
			seen[id] = true
			ch, err := c.Channel(ctx, ev.Payer, ev.Payee, ev.Token)
			if err != nil {
				return err
			}
			out = append(out, ch)
			return nil
		}, nil)
		if err != nil {
			return nil, fmt.Errorf("channels: %w", err)
		}
	}
	return out, nil
}

// Balance is the wallet's balance of token (the native coin for zero).
func (c *Client) Balance(ctx context.Context, token common.Address) (*big.Int, error) {
	return c.BalanceOf(ctx, token, c.w.Address())
}

// BalanceOf is who's balance of token.
func (c *Client) BalanceOf(ctx context.Context, token, who common.Address) (*big.Int, error) {
	if token == NativeToken {
		return c.b.BalanceAt(ctx, who, nil)
	}
	t := c.erc20.Instance(c.b, token)
	v, err := bind.Call(t, &bind.CallOpts{Context: ctx}, c.erc20.PackBalanceOf(who), c.erc20.UnpackBalanceOf)
	if err != nil {
		return nil, fmt.Errorf("balance of %s in %s: %w", who, token, err)
	}
	return v, nil
}

// TokenInfo is a token's symbol and decimals ("ETH" and 18 for the native
// coin).
func (c *Client) TokenInfo(ctx context.Context, token common.Address) (symbol string, decimals uint8, err error) {
	if token == NativeToken {
		return "ETH", 18, nil
	}
	// A token's symbol and decimals never change: asked once, so that
	// formatting an amount needs no RPC (nor stalls in an outage).
	if v, ok := c.tokens.Load(token); ok {
		ti := v.(tokenInfo)
		return ti.symbol, ti.decimals, nil
	}
	defer func() {
		if err == nil {
			c.tokens.Store(token, tokenInfo{symbol, decimals})
		}
	}()
	t := c.erc20.Instance(c.b, token)
	opts := &bind.CallOpts{Context: ctx}
	if symbol, err = bind.Call(t, opts, c.erc20.PackSymbol(), c.erc20.UnpackSymbol); err != nil {
		return "", 0, fmt.Errorf("token %s: %w", token, err)
	}
	if decimals, err = bind.Call(t, opts, c.erc20.PackDecimals(), c.erc20.UnpackDecimals); err != nil {
		return "", 0, fmt.Errorf("token %s: %w", token, err)
	}
	return symbol, decimals, nil
}

// Deposit opens or tops up the wallet's channel to payee with amount of
// token. For an ERC-20 whose allowance is short, it first approves the
// escrow for the maximum, once, so that later deposits are one transaction.
func (c *Client) Deposit(ctx context.Context, payee, token common.Address, amount *big.Int) (*types.Receipt, error) {
	if payee == (common.Address{}) {
		return nil, errors.New("deposit: payee is the zero address")
	}
	if amount == nil || amount.Sign() <= 0 {
		return nil, errors.New("deposit: amount must be positive")
	}
	value := new(big.Int)
	if token == NativeToken {
		value = amount
	} else {
		t := c.erc20.Instance(c.b, token)
		allowed, err := bind.Call(t, &bind.CallOpts{Context: ctx}, c.erc20.PackAllowance(c.w.Address(), c.cfg.Escrow), c.erc20.UnpackAllowance)
		if err != nil {
			return nil, fmt.Errorf("deposit: allowance: %w", err)
		}
		if allowed.Cmp(amount) < 0 {
			max := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
			// Only the deposit waits for the confirmations: it comes after
			// the approve (the next nonce) and cannot outlive a reorg of
			// it, so waiting for both in turn would double the wait.
			if _, err := c.tx.sendWith(ctx, "approve", token, nil, c.erc20.PackApprove(c.cfg.Escrow, max), 1); err != nil {
				return nil, fmt.Errorf("deposit: %w", err)
			}
		}
	}
	return c.tx.send(ctx, "deposit", c.cfg.Escrow, value, c.esc.PackDeposit(payee, token, amount))
}

// SignVoucher signs a voucher from the wallet to payee for cumulative in all.
func (c *Client) SignVoucher(payee, token common.Address, cumulative *big.Int) (*Voucher, error) {
	v := NewVoucher(c.chainID, c.cfg.Escrow, c.w.Address(), payee, token, cumulative)
	if err := v.Sign(c.w.Key()); err != nil {
		return nil, err
	}
	return v, nil
}

// checkOurs refuses a voucher that this client cannot redeem.
func (c *Client) checkOurs(v *Voucher) error {
	if err := v.Verify(); err != nil {
		return err
	}
	switch {
	case v.ChainID.Cmp(c.chainID) != 0:
		return fmt.Errorf("%w: for chain %s, this is chain %s", ErrVoucherInvalid, v.ChainID, c.chainID)
	case v.Escrow != c.cfg.Escrow:
		return fmt.Errorf("%w: for escrow %s, ours is %s", ErrVoucherInvalid, v.Escrow, c.cfg.Escrow)
	case v.Payee != c.w.Address():
		return fmt.Errorf("%w: pays %s, not this wallet %s", ErrVoucherInvalid, v.Payee, c.w.Address())
	}
	return nil
}

// Redeem pays the wallet (the payee) what the voucher owes beyond what was
// already redeemed.
func (c *Client) Redeem(ctx context.Context, v *Voucher) (*types.Receipt, error) {
	if err := c.checkOurs(v); err != nil {
		return nil, fmt.Errorf("redeem: %w", err)
	}
	return c.tx.send(ctx, "redeem", c.cfg.Escrow, nil,
		c.esc.PackRedeem(v.Payer, v.Token, v.CumulativeAmount.Big(), v.Signature))
}

// RedeemBatch redeems many vouchers (any payers, any tokens) in one
// transaction.
func (c *Client) RedeemBatch(ctx context.Context, vs []*Voucher) (*types.Receipt, error) {
	if len(vs) == 0 {
		return nil, errors.New("redeem: no vouchers")
	}
	rs := make([]contracts.EscrowRedemption, len(vs))
	for i, v := range vs {
		if err := c.checkOurs(v); err != nil {
			return nil, fmt.Errorf("redeem voucher %d: %w", i, err)
		}
		rs[i] = contracts.EscrowRedemption{Payer: v.Payer, Token: v.Token, CumulativeAmount: v.CumulativeAmount.Big(), Signature: v.Signature}
	}
	return c.tx.send(ctx, "redeem", c.cfg.Escrow, nil, c.esc.PackRedeemBatch(rs))
}

// StartClose begins the challenge period of the wallet's channel to payee.
func (c *Client) StartClose(ctx context.Context, payee, token common.Address) (*types.Receipt, error) {
	return c.tx.send(ctx, "close", c.cfg.Escrow, nil, c.esc.PackStartClose(payee, token))
}

// Withdraw returns what is left in the wallet's channel to payee once the
// challenge period is over.
func (c *Client) Withdraw(ctx context.Context, payee, token common.Address) (*types.Receipt, error) {
	return c.tx.send(ctx, "withdraw", c.cfg.Escrow, nil, c.esc.PackWithdraw(payee, token))
}

// Event is one change to a channel, as the watcher reports it.
type Event struct {
	Kind    string         `json:"kind"` // deposited, redeemed, close_started, withdrawn
	Channel common.Hash    `json:"channel"`
	Amount  *Amount        `json:"amount,omitempty"`
	Block   uint64         `json:"block"`
	Tx      common.Hash    `json:"tx"`
	Who     common.Address `json:"who"`
}

// Watch calls fn for every escrow event from block from (or
// Config.FromBlock, if later) on, polling (so it works over plain HTTP
// JSON-RPC) and reading at most Config.LogRange blocks a request, until ctx
// ends. Events of blocks with fewer than the configured confirmations wait.
func (c *Client) Watch(ctx context.Context, from uint64, fn func(Event)) error {
	from = c.fromBlock(from)
	w := c.newLogWindow()
	q := ethereum.FilterQuery{Addresses: []common.Address{c.cfg.Escrow}}
	t := time.NewTicker(c.cfg.Poll)
	defer t.Stop()
	for {
		head, err := c.b.BlockNumber(ctx)
		if err == nil && head+1 >= from+c.cfg.Confirmations {
			to := head + 1 - c.cfg.Confirmations
			err := w.scan(ctx, c.b, q, from, to, func(l *types.Log) error {
				if ev, ok := c.event(l); ok {
					fn(ev)
				}
				return nil
			}, func(last uint64) { from = last + 1 })
			if err != nil && ctx.Err() == nil {
				c.log.Warn("watch escrow events", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Client) event(l *types.Log) (Event, bool) {
	ev := Event{Block: l.BlockNumber, Tx: l.TxHash}
	if e, err := c.esc.UnpackDepositedEvent(l); err == nil {
		ev.Kind, ev.Channel, ev.Amount, ev.Who = "deposited", e.Channel, NewAmount(e.Amount), e.Payer
	} else if e, err := c.esc.UnpackRedeemedEvent(l); err == nil {
		ev.Kind, ev.Channel, ev.Amount, ev.Who = "redeemed", e.Channel, NewAmount(e.Amount), e.Payee
	} else if e, err := c.esc.UnpackCloseStartedEvent(l); err == nil {
		ev.Kind, ev.Channel, ev.Who = "close_started", e.Channel, e.Payer
	} else if e, err := c.esc.UnpackWithdrawnEvent(l); err == nil {
		ev.Kind, ev.Channel, ev.Amount, ev.Who = "withdrawn", e.Channel, NewAmount(e.Amount), e.Payer
	} else {
		return ev, false
	}
	return ev, true
}

// Redemption is one payment the escrow made to the wallet.
type Redemption struct {
	Channel common.Hash `json:"channel"`
	Amount  *Amount     `json:"amount"`
	Block   uint64      `json:"block"`
	Time    time.Time   `json:"time"`
	Tx      common.Hash `json:"tx"`
}

// Redemptions lists what the escrow paid the wallet as payee, oldest first,
// from its Redeemed events from Config.FromBlock on (read in windows of
// Config.LogRange blocks), each with its block's time.
func (c *Client) Redemptions(ctx context.Context) ([]Redemption, error) {
	head, err := c.b.BlockNumber(ctx)
	if err != nil {
		return nil, fmt.Errorf("redemptions: head block: %w", err)
	}
	// Redeemed(channel, payee).
	topics, err := abi.MakeTopics([]any{c.esc.GetABI().Events["Redeemed"].ID}, nil, []any{c.w.Address()})
	if err != nil {
		return nil, fmt.Errorf("redemptions: %w", err)
	}
	q := ethereum.FilterQuery{Addresses: []common.Address{c.cfg.Escrow}, Topics: topics}
	times := map[uint64]time.Time{}
	var out []Redemption
	err = c.newLogWindow().scan(ctx, c.b, q, c.fromBlock(0), head, func(l *types.Log) error {
		ev, err := c.esc.UnpackRedeemedEvent(l)
		if err != nil {
			return err
		}
		n := l.BlockNumber
		if _, ok := times[n]; !ok {
			h, err := c.b.HeaderByNumber(ctx, new(big.Int).SetUint64(n))
			if err != nil {
				return fmt.Errorf("block %d: %w", n, err)
			}
			times[n] = time.Unix(int64(h.Time), 0).UTC()
		}
		out = append(out, Redemption{Channel: ev.Channel, Amount: NewAmount(ev.Amount), Block: n, Time: times[n], Tx: l.TxHash})
		return nil
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("redemptions: %w", err)
	}
	return out, nil
}
