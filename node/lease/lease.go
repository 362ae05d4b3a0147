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
	"github.com/aixblock/aixblock/market/receipt"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/content"
)

// Config is what a Manager runs on. Every service is the node's own; the
// zero value of each setting is a working default.
type Config struct {
	// Dir is the repo: records go to Dir/remote, the started deals to
	// Dir/started-deals.json, the provided deals to Dir/provided.
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
	// Receipts keeps the receipts of the deals that end here, both sides'
	// (receipts.go); nil: none are made.
	Receipts *receipt.Store
	// Proofs are the IDs of the proof-of-GPU records that stand behind
	// this provider, which its receipts name (at most
	// receipt.MaxProofs, each once); nil: none.
	Proofs func() []string
}

// Manager is the thin front of the two sides: it builds them from one
// Config, starts and stops their background work together, and routes
// what the API asks (view.go) to this node's own jobs, the requester's
// market jobs or the provider's deals.
type Manager struct {
	*base
	// This node's own jobs, run locally (nil, with jobsErr saying why,
	// without a runtime), and its GPUs.
	jobs    *jobs.Manager
	jobsErr error
	gpus    *gpu.Manager
	req     *Requester
	prov    *Provider
}

// base is what both sides run on: the node's services, the voucher
// interval and the goroutines of the manager. It holds no state of either
// side.
type base struct {
	cfg      Config
	log      *slog.Logger
	p2p      *p2p.Node
	wallet   addresser
	vouchers *Vouchers
	// interval is how often running jobs are paid for and checked.
	interval time.Duration
	*routines
}

// routines runs the manager's goroutines under one context, each waited
// for by Close: nothing of either side outlives the manager.
type routines struct {
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
	// mu orders spawn's Add against Close's stop, and guards started.
	mu sync.Mutex
	// started is when Run began: a provider not heard of while this
	// daemon was down is given its grace from here.
	started time.Time
}

// New loads the requester's records and the deals started here, and
// registers the provider's protocols. Run starts the background work.
func New(cfg Config) (*Manager, error) {
	b := newBase(cfg)
	req, err := newRequester(b)
	if err != nil {
		b.stop()
		return nil, err
	}
	prov, err := newProvider(b)
	if err != nil {
		// Loading the provided deals may have started their watches.
		b.stop()
		b.wg.Wait()
		return nil, err
	}
	return &Manager{base: b, jobs: cfg.Jobs, jobsErr: cfg.JobsErr, gpus: cfg.GPUs, req: req, prov: prov}, nil
}

func newBase(cfg Config) *base {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.FormatAmount == nil {
		cfg.FormatAmount = func(_, base string) string { return base + " base units" }
	}
	interval := cfg.VoucherInterval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	ctx, stop := context.WithCancel(context.Background())
	b := &base{cfg: cfg, log: cfg.Log.With("component", "lease"), p2p: cfg.P2P,
		vouchers: cfg.Vouchers, interval: interval, routines: &routines{ctx: ctx, stop: stop}}
	if cfg.Wallet != nil {
		b.wallet = cfg.Wallet
	}
	return b
}

// Requester is the requester's side of the market jobs.
func (m *Manager) Requester() *Requester { return m.req }

// Provider is the provider's side of the deals.
func (m *Manager) Provider() *Provider { return m.prov }

// Run follows and pays the requester's jobs, resumes the queued ones and
// watches the provider's channels until ctx ends or Close is called.
func (m *Manager) Run(ctx context.Context) {
	m.routines.mu.Lock()
	m.started = time.Now()
	m.routines.mu.Unlock()
	stop := context.AfterFunc(ctx, m.stop)
	defer stop()
	m.prov.run()
	m.req.followRemote(m.ctx)
}

// spawn runs f in a goroutine under the manager's context, waited for by
// Close.
func (g *routines) spawn(f func(ctx context.Context)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
		return // closing: nothing new starts
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f(g.ctx)
	}()
}

// startedAt is when Run began (zero before).
func (g *routines) startedAt() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.started
}

// Close stops every goroutine of the manager and waits for them, at most
// wait (containers keep running; the next start re-attaches).
func (m *Manager) Close(wait time.Duration) error {
	m.routines.mu.Lock()
	m.stop()
	m.routines.mu.Unlock()
	m.prov.close()
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

func (b *base) formatAmount(token, amount string) string { return b.cfg.FormatAmount(token, amount) }

// ErrInvalid marks an error that is the caller's (a bad spec, a token or
// price that cannot be paid): the API answers it with 400.
var ErrInvalid = errors.New("invalid request")

type invalid struct{ error }

func (e invalid) Is(t error) bool { return t == ErrInvalid }
func (e invalid) Unwrap() error   { return e.error }
