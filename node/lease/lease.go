package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/content"
	"github.com/aixblock/aixblock/p2p/overlay"
)

// Config is what a Manager runs on. Every service is the node's own; the
// zero value of each setting is a working default.
type Config struct {
	// Dir is the repo: records go to Dir/remote, the started deals to
	// Dir/started-deals.json, a provided job's logs are read from
	// Dir/jobs/ID.
	Dir     string
	Log     *slog.Logger
	P2P     *p2p.Node
	Content *content.Store
	Wallet  *chain.Wallet
	Chain   *chain.Client
	Market  *market.Market
	GPUs    *gpu.Manager
	// Jobs runs this node's containers; nil (with JobsErr saying why)
	// when it has no runtime: it can still buy jobs, not run them.
	Jobs     *jobs.Manager
	JobsErr  error
	Vouchers *Vouchers
	// VoucherInterval is how often running jobs are paid for and checked
	// (zero: 10 s).
	VoucherInterval time.Duration
	// Prepay is how far a running job's vouchers run ahead of the time
	// this node saw it run, so that the job goes on while this daemon is
	// away (restarted, asleep); what is not used pays for later jobs on
	// the same channel. Zero means ten voucher intervals, at least 1 min.
	Prepay time.Duration
	// MaxPrepare bounds how long a market job may fetch its image and
	// inputs here, its GPUs held and unpaid (zero: 5 min).
	MaxPrepare time.Duration
	// PauseGrace is how long a provider keeps a job paused, its GPUs
	// held, once its vouchers stop covering it, before it stops it (zero:
	// 2 min; negative: stop at once).
	PauseGrace time.Duration
	// OutageGrace is how long a provider lets a job run on vouchers it
	// could not check because the chain cannot be read (zero: 10 min).
	OutageGrace time.Duration
	// RedeemEvery (zero: never) redeems received vouchers worth more than
	// RedeemAbove (nil: any).
	RedeemEvery time.Duration
	RedeemAbove *big.Int
	// HostNetworkFor are the requesters (peer IDs) whose distributed
	// ranks may ask for this host's network (distributed.network: host);
	// Ports ("40000-40100"; empty: 29500-29999) are what such ranks may
	// listen on. Every other distributed rank runs on its job's private
	// network.
	HostNetworkFor []string
	Ports          string
	// FormatAmount writes base units of a token for reasons people read
	// (nil: base units).
	FormatAmount func(token, base string) string
}

// Manager executes deals: the requester's jobs on other nodes and the
// provider's jobs for other nodes, with their payments.
type Manager struct {
	cfg             Config
	log             *slog.Logger
	p2p             *p2p.Node
	content         *content.Store
	wallet          *chain.Wallet
	chain           *chain.Client
	market          *market.Market
	gpus            *gpu.Manager
	jobs            *jobs.Manager
	jobsErr         error
	vouchers        *Vouchers
	voucherInterval time.Duration
	remote          *remote
	portServer      *overlay.Server         // the provider's side of service ports
	jobNet          *overlay.JobNet         // distributed ranks' private networks
	verifyDealFn    func(market.Deal) error // nil: the market's check

	// Every goroutine of the manager runs under ctx through spawn and is
	// waited for by Close.
	wg      sync.WaitGroup
	spawnMu sync.Mutex // orders spawn's Add against Close
	// started is when Run began: a provider not heard of while this
	// daemon was down is given its grace from here.
	started time.Time
}

// New loads the requester's records and the deals started here, and
// registers the provider's protocols. Run starts the background work.
func New(cfg Config) (*Manager, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.FormatAmount == nil {
		cfg.FormatAmount = func(_, base string) string { return base + " base units" }
	}
	m := &Manager{cfg: cfg, log: cfg.Log.With("component", "lease"), p2p: cfg.P2P, content: cfg.Content,
		wallet: cfg.Wallet, chain: cfg.Chain, market: cfg.Market, gpus: cfg.GPUs, jobs: cfg.Jobs, jobsErr: cfg.JobsErr,
		vouchers: cfg.Vouchers, voucherInterval: cfg.VoucherInterval}
	if err := m.openRemote(); err != nil {
		return nil, err
	}
	return m, nil
}

// Run follows and pays the requester's jobs, resumes the queued ones and
// watches the provider's channels until ctx ends or Close is called.
func (m *Manager) Run(ctx context.Context) {
	m.spawnMu.Lock()
	m.started = time.Now()
	m.spawnMu.Unlock()
	stop := context.AfterFunc(ctx, m.remote.stop)
	defer stop()
	m.spawn(m.watchClosing)
	m.spawn(func(ctx context.Context) {
		every(ctx, max(m.remote.interval/2, time.Second), func() { m.recheckUnchecked(ctx) })
	})
	if m.cfg.RedeemEvery > 0 {
		m.spawn(func(ctx context.Context) { m.autoRedeem(ctx, m.cfg.RedeemEvery, m.cfg.RedeemAbove) })
	}
	m.followRemote(m.remote.ctx)
}

// spawn runs f in a goroutine under the manager's context, waited for by
// Close: nothing of the manager outlives it.
func (m *Manager) spawn(f func(ctx context.Context)) {
	m.spawnMu.Lock()
	defer m.spawnMu.Unlock()
	if m.remote.ctx.Err() != nil {
		return // closing: nothing new starts
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f(m.remote.ctx)
	}()
}

// Close stops every goroutine of the manager and waits for them, at most
// wait (containers keep running; the next start re-attaches).
func (m *Manager) Close(wait time.Duration) error {
	m.spawnMu.Lock()
	m.remote.stop()
	m.spawnMu.Unlock()
	if m.jobNet != nil {
		m.jobNet.Close()
	}
	if m.portServer != nil {
		m.portServer.Close()
	}
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(wait):
		return fmt.Errorf("lease: goroutines still running %s after close", wait)
	}
}

// every runs f each interval until ctx ends (the first run one interval
// after the start).
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f()
	}
}

func (m *Manager) formatAmount(token, base string) string { return m.cfg.FormatAmount(token, base) }

// ErrInvalid marks an error that is the caller's (a bad spec, a token or
// price that cannot be paid): the API answers it with 400.
var ErrInvalid = errors.New("invalid request")

type invalid struct{ error }

func (e invalid) Is(t error) bool { return t == ErrInvalid }
func (e invalid) Unwrap() error   { return e.error }
