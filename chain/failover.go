package chain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/rpc"
)

// Failover is a Backend over several JSON-RPC endpoints of one chain. A
// call goes to the endpoint that answered last; when it cannot be reached
// (a transport error or its deadline, not an answer such as a revert), the
// next is tried, each once. Every call has the endpoint's deadline (the
// callTimeout given to DialFailover) within the caller's, so a hung
// endpoint never hangs a job's check. Health reports whether the chain answered its last call.
type Failover struct {
	urls    []string
	clients []*ethclient.Client
	timeout time.Duration
	log     *slog.Logger

	mu        sync.Mutex
	cur       int
	downSince time.Time
	lastErr   error
}

// DialFailover connects to every URL (lazily: an endpoint that is down
// now is tried again at each call). callTimeout zero means 5 s: short
// enough that a provider checking a voucher answers its requester
// within the voucher exchange's 10 s whether or not the chain does.
func DialFailover(urls []string, callTimeout time.Duration, log *slog.Logger) (*Failover, error) {
	if len(urls) == 0 {
		return nil, errors.New("chain.rpc: no URL given")
	}
	if callTimeout <= 0 {
		callTimeout = 5 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	f := &Failover{urls: urls, timeout: callTimeout, log: log.With("component", "chain")}
	for _, u := range urls {
		c, err := rpc.DialOptions(context.Background(), u)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("chain.rpc %s: %w", u, err)
		}
		f.clients = append(f.clients, ethclient.NewClient(c))
	}
	return f, nil
}

// Close closes every endpoint's client.
func (f *Failover) Close() {
	for _, c := range f.clients {
		c.Close()
	}
}

// Health is whether the chain answered the last call, since when it has
// not, the endpoint in use, and the last error.
func (f *Failover) Health() (ok bool, downSince time.Time, url string, lastErr error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.downSince.IsZero(), f.downSince, f.urls[f.cur], f.lastErr
}

// do runs call on the current endpoint, then on the others in turn while
// they cannot be reached.
func do[T any](f *Failover, ctx context.Context, call func(context.Context, *ethclient.Client) (T, error)) (T, error) {
	f.mu.Lock()
	start := f.cur
	f.mu.Unlock()
	var zero T
	var errs []error
	for i := range f.clients {
		n := (start + i) % len(f.clients)
		// Every call gets the endpoint's deadline, however long the
		// caller would wait: a hung node is one that cannot be reached.
		cctx, cancel := context.WithTimeout(ctx, f.timeout)
		v, err := call(cctx, f.clients[n])
		cancel()
		if err == nil || !unreachable(ctx, err) {
			if err == nil || ctx.Err() == nil {
				f.answered(n) // not when the caller gave up: that says nothing of the endpoint
			}
			return v, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", f.urls[n], err))
		if ctx.Err() != nil {
			break
		}
	}
	err := errors.Join(errs...)
	f.mu.Lock()
	if f.downSince.IsZero() {
		f.downSince = time.Now()
		f.log.Warn("the chain cannot be reached", "endpoints", len(f.clients), "err", err)
	}
	f.lastErr = err
	f.mu.Unlock()
	return zero, err
}

func (f *Failover) answered(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n != f.cur {
		f.log.Info("chain endpoint switched", "from", f.urls[f.cur], "to", f.urls[n])
		f.cur = n
	}
	if !f.downSince.IsZero() {
		f.log.Info("the chain answers again", "down_for", time.Since(f.downSince).Round(time.Second))
	}
	f.downSince, f.lastErr = time.Time{}, nil
}

// unreachable tells an endpoint that did not answer from an answer that
// is an error (a revert, a refused transaction, a range too large): only
// the first is worth another endpoint.
func unreachable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false // the caller gave up, not the endpoint
	}
	var re rpc.Error
	if errors.As(err, &re) {
		return false // a JSON-RPC error object: the endpoint answered
	}
	var he rpc.HTTPError
	if errors.As(err, &he) {
		return he.StatusCode == 429 || he.StatusCode >= 500
	}
	if errors.Is(err, ethereum.NotFound) {
		return false
	}
	s := err.Error()
	return errors.Is(err, context.DeadlineExceeded) || strings.Contains(s, "connection refused") ||
		strings.Contains(s, "connection reset") || strings.Contains(s, "EOF") || strings.Contains(s, "no such host") ||
		strings.Contains(s, "i/o timeout") || strings.Contains(s, "closed")
}

type ec = ethclient.Client

func (f *Failover) CodeAt(ctx context.Context, a common.Address, n *big.Int) ([]byte, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) ([]byte, error) { return c.CodeAt(ctx, a, n) })
}
func (f *Failover) CallContract(ctx context.Context, m ethereum.CallMsg, n *big.Int) ([]byte, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) ([]byte, error) { return c.CallContract(ctx, m, n) })
}
func (f *Failover) HeaderByNumber(ctx context.Context, n *big.Int) (*types.Header, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) (*types.Header, error) { return c.HeaderByNumber(ctx, n) })
}
func (f *Failover) PendingCodeAt(ctx context.Context, a common.Address) ([]byte, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) ([]byte, error) { return c.PendingCodeAt(ctx, a) })
}
func (f *Failover) PendingNonceAt(ctx context.Context, a common.Address) (uint64, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) (uint64, error) { return c.PendingNonceAt(ctx, a) })
}
func (f *Failover) SuggestGasPrice(ctx context.Context) (*big.Int, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) (*big.Int, error) { return c.SuggestGasPrice(ctx) })
}
func (f *Failover) SuggestGasTipCap(ctx context.Context) (*big.Int, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) (*big.Int, error) { return c.SuggestGasTipCap(ctx) })
}
func (f *Failover) EstimateGas(ctx context.Context, m ethereum.CallMsg) (uint64, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) (uint64, error) { return c.EstimateGas(ctx, m) })
}

// SendTransaction sends a signed transaction; sending the same one to a
// second endpoint is harmless (it is known by its hash).
func (f *Failover) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	_, err := do(f, ctx, func(ctx context.Context, c *ec) (struct{}, error) { return struct{}{}, c.SendTransaction(ctx, tx) })
	return err
}
func (f *Failover) FilterLogs(ctx context.Context, q ethereum.FilterQuery) ([]types.Log, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) ([]types.Log, error) { return c.FilterLogs(ctx, q) })
}

// SubscribeFilterLogs subscribes on the current endpoint (HTTP endpoints
// cannot; the client polls with FilterLogs instead).
func (f *Failover) SubscribeFilterLogs(ctx context.Context, q ethereum.FilterQuery, ch chan<- types.Log) (ethereum.Subscription, error) {
	f.mu.Lock()
	c := f.clients[f.cur]
	f.mu.Unlock()
	return c.SubscribeFilterLogs(ctx, q, ch)
}
func (f *Failover) TransactionReceipt(ctx context.Context, h common.Hash) (*types.Receipt, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) (*types.Receipt, error) { return c.TransactionReceipt(ctx, h) })
}
func (f *Failover) ChainID(ctx context.Context) (*big.Int, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) (*big.Int, error) { return c.ChainID(ctx) })
}
func (f *Failover) BalanceAt(ctx context.Context, a common.Address, n *big.Int) (*big.Int, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) (*big.Int, error) { return c.BalanceAt(ctx, a, n) })
}
func (f *Failover) BlockNumber(ctx context.Context) (uint64, error) {
	return do(f, ctx, func(ctx context.Context, c *ec) (uint64, error) { return c.BlockNumber(ctx) })
}

var _ Backend = (*Failover)(nil)

func (f *Failover) TransactionByHash(ctx context.Context, h common.Hash) (*types.Transaction, bool, error) {
	type r struct {
		tx      *types.Transaction
		pending bool
	}
	v, err := do(f, ctx, func(ctx context.Context, c *ec) (r, error) {
		tx, p, err := c.TransactionByHash(ctx, h)
		return r{tx, p}, err
	})
	return v.tx, v.pending, err
}
