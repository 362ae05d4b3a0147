package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	pebbleds "github.com/ipfs/go-ds-pebble"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/market/proof"
	"github.com/aixblock/aixblock/market/receipt"
	"github.com/aixblock/aixblock/node/lease"
	"github.com/aixblock/aixblock/node/replica"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/content"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// Node is a running daemon: the services of one repo wired together.
type Node struct {
	repo    *Repo
	log     *slog.Logger
	started time.Time

	metrics     *prometheus.Registry
	apiRequests *prometheus.CounterVec
	gpus        *gpu.Manager
	datastore   *pebbleds.Datastore
	p2p         *p2p.Node
	content     *content.Store
	wallet      *chain.Wallet
	chain       *chain.Client
	devchain    *chain.DevChain // the embedded dev chain, when no RPC is configured
	rpc         *chain.Failover
	vouchers    *lease.Vouchers
	market      *market.Market
	jobs        *jobs.Manager
	docker      *jobs.Docker
	jobsErr     error
	lease       *lease.Manager
	// proofProvider answers proof-of-GPU challenges; proofVerifier makes
	// them (POST /v1/market/verify).
	proofProvider *proof.Provider
	proofVerifier *proof.Verifier
	proofStore    *proof.Store
	proofSched    *proof.Scheduler // nil: auto_verify off
	challenges    sync.Map         // job IDs of challenges running: their GPUs count as free
	// receipts keeps the receipts of ended deals, which receiptServer
	// serves (GET /v1/market/receipts).
	receipts      *receipt.Store
	receiptServer *receipt.Server
	replicas      *replica.Checker // replicated and spot-checked jobs
	// gatherer fetches receipts about the providers this node looks at;
	// paid reads what the escrow paid them (nil without a chain).
	gatherer  *receipt.Gatherer
	paid      *chain.Paid
	testnet   Testnet // the dashboard's testnet view (SetTestnet)
	gatewayLn net.Listener
	// stopReq is closed by POST /v1/shutdown (aixblock shutdown).
	stopReq  chan struct{}
	stopOnce sync.Once
	gateway  *http.Server
	apiLn    net.Listener
	api      *http.Server
}

// New builds every service of the repo's config, in start order, and binds
// its listeners, so that a bad address or a port in use fails here, before
// anything announces itself. The caller holds the repo's lock.
func New(ctx context.Context, repo *Repo, log *slog.Logger) (_ *Node, err error) {
	if log == nil {
		log = slog.Default()
	}
	cfg, err := repo.Config.parse()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	p2p.UserAgent = "aixblock/" + Version
	n := &Node{
		repo:    repo,
		log:     log.With("component", "node"),
		started: time.Now(),
		metrics: prometheus.NewRegistry(),
		stopReq: make(chan struct{}),
	}
	defer func() {
		if err != nil {
			n.close()
		}
	}()

	if err := n.bindLocal(cfg); err != nil {
		return nil, err
	}
	gcfg := cfg.gpu
	gcfg.DiskPath, gcfg.Logger, gcfg.MockSeed = repo.Dir, log, repo.PeerID.String()
	if n.gpus, err = gpu.New(gcfg); err != nil {
		return nil, fmt.Errorf("gpu: %w", err)
	}
	if err := n.openP2P(ctx, cfg, log); err != nil {
		return nil, err
	}
	if err := n.openContent(ctx, cfg, log); err != nil {
		return nil, err
	}
	if err := n.openChain(ctx, cfg.chain, log); err != nil {
		return nil, err
	}
	if err := n.openProof(log); err != nil {
		return nil, err
	}
	if err := n.openMarket(ctx, cfg); err != nil {
		return nil, err
	}
	n.openJobs(ctx)
	if err := n.openReceipts(log); err != nil {
		return nil, err
	}
	if err := n.openLease(cfg, log); err != nil {
		return nil, err
	}
	if err := n.openReplicas(log); err != nil {
		return nil, err
	}
	if err := n.openServers(log); err != nil {
		return nil, err
	}
	return n, nil
}

// bindLocal binds the API's and the gateway's ports, first: a port in
// use fails before anything is created.
func (n *Node) bindLocal(cfg parsed) error {
	var err error
	if n.apiLn, err = listenLocal(n.log, "api", cfg.api, DefaultAPI); err != nil {
		return err
	}
	if cfg.gateway != "" {
		if n.gatewayLn, err = listenLocal(n.log, "gateway", cfg.gateway, DefaultGateway); err != nil {
			return err
		}
	}
	return nil
}

// openP2P starts the libp2p node.
func (n *Node) openP2P(ctx context.Context, cfg parsed, log *slog.Logger) error {
	rc := n.repo.Config
	pcfg := p2p.Config{
		Network:      cfg.network,
		Identity:     n.repo.Identity,
		Listen:       cfg.listen,
		Announce:     cfg.announce,
		Bootstrap:    cfg.bootstrap,
		MDNS:         rc.MDNS,
		NoNAT:        !rc.NAT,
		Reachability: rc.Reachability, StaticRelays: cfg.relays, JobRelay: rc.JobRelay,
		ConnLow:  rc.ConnLow,
		ConnHigh: rc.ConnHigh,
		Metrics:  n.metrics,
		Records:  []p2p.RecordValidator{market.AdvertRecord()},
		Logger:   log,
	}
	var err error
	n.p2p, err = p2p.New(ctx, pcfg)
	// As with the API: the default ports are a preference, so a second
	// node on this machine starts on free ones; chosen ports are strict.
	if err != nil && (errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")) && slices.Equal(rc.Listen, DefaultConfig("").Listen) {
		n.log.Warn("libp2p default port in use; listening on free ports", "default", rc.Listen)
		pcfg.Listen = nil
		for _, a := range cfg.listen {
			pcfg.Listen = append(pcfg.Listen, anyPort(a))
		}
		n.p2p, err = p2p.New(ctx, pcfg)
	}
	if err != nil {
		return fmt.Errorf("p2p: %w", err)
	}
	return nil
}

// openContent opens the datastore and the content store on it.
func (n *Node) openContent(ctx context.Context, cfg parsed, log *slog.Logger) error {
	var err error
	if n.datastore, err = content.OpenDatastore(filepath.Join(n.repo.Dir, "datastore")); err != nil {
		return err
	}
	ccfg := cfg.content
	ccfg.Datastore, ccfg.Routing, ccfg.Logger = n.datastore, n.p2p.DHT, log
	n.content, err = content.New(ctx, n.p2p.Host, ccfg)
	return err
}

// openLease builds the lease manager over the services opened before it.
func (n *Node) openLease(cfg parsed, log *slog.Logger) error {
	interval := cfg.voucherInterval
	if interval == 0 {
		interval = 30 * time.Second
	}
	rc := n.repo.Config
	var err error
	n.lease, err = lease.New(lease.Config{
		Dir: n.repo.Dir, Log: log, P2P: n.p2p, Content: n.content, Wallet: n.wallet, Chain: n.chain,
		Market: n.market, GPUs: n.gpus, Jobs: n.jobs, JobsErr: n.jobsErr, Vouchers: n.vouchers,
		VoucherInterval: interval, Prepay: cfg.prepay, OutageGrace: cfg.outageGrace, MaxPrepare: cfg.maxPrepare, PauseGrace: cfg.pauseGrace,
		RedeemEvery: cfg.redeemEvery, RedeemAbove: cfg.redeemAbove,
		HostNetworkFor: rc.Market.HostNetworkFor, Ports: rc.Market.Ports, FormatAmount: n.formatAmount,
		Receipts: n.receipts, Proofs: n.passedProofs,
	})
	return err
}

// openServers makes the gateway's and the API's HTTP servers, which Run
// starts on the listeners New bound.
func (n *Node) openServers(log *slog.Logger) error {
	if n.gatewayLn != nil {
		h, err := n.content.GatewayHandler()
		if err != nil {
			return err
		}
		n.gateway = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	}
	n.registerMetrics()
	n.api = &http.Server{
		Handler:           n.apiHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return nil
}

// APIURL is the base URL of the local API.
func (n *Node) APIURL() string { return "http://" + n.apiLn.Addr().String() }

// Run serves until ctx ends, then stops everything in reverse order.
func (n *Node) Run(ctx context.Context) error {
	serveErr := make(chan error, 2)
	go func() { serveErr <- fmt.Errorf("api: %w", n.api.Serve(n.apiLn)) }()
	if n.gateway != nil {
		go func() { serveErr <- fmt.Errorf("gateway: %w", n.gateway.Serve(n.gatewayLn)) }()
	}

	if err := n.repo.writeAPIFile(n.APIURL()); err != nil {
		n.close()
		return err
	}
	n.log.Info("daemon ready", "peer_id", n.p2p.Host.ID(), "network", n.p2p.Network(),
		"api", n.APIURL(), "dashboard", n.APIURL()+"/ui/ (aixblock dashboard prints a login link)", "addrs", n.p2p.Host.Addrs())

	mctx, stopMarket := context.WithCancel(ctx)
	marketDone := make(chan struct{})
	go func() { n.market.Run(mctx); close(marketDone) }()
	leaseDone := make(chan struct{})
	go func() { n.lease.Run(mctx); close(leaseDone) }()
	defer func() { stopMarket(); <-marketDone; <-leaseDone }()

	gpuCtx, stopGPU := context.WithCancel(context.Background())
	gpuDone := make(chan struct{})
	go func() { n.gpus.Run(gpuCtx); close(gpuDone) }()
	defer func() { stopGPU(); <-gpuDone }()

	// Bootstrap in the background: the API is useful (and `status` tells
	// how it goes) while unreachable bootstrap peers time out.
	bctx, cancelBootstrap := context.WithCancel(ctx)
	defer cancelBootstrap()
	go func() {
		if err := n.p2p.Bootstrap(bctx); err != nil && bctx.Err() == nil {
			n.log.Warn("bootstrap failed; the DHT keeps retrying", "err", err)
			return
		}
		n.log.Info("bootstrapped", "peers", len(n.p2p.Host.Network().Peers()),
			"dht_peers", n.p2p.DHT.RoutingTable().Size())
	}()

	var err error
	select {
	case <-ctx.Done():
		n.log.Info("shutting down")
	case <-n.stopReq:
		n.log.Info("shutting down (asked through the API)")
	case err = <-serveErr:
	}
	cancelBootstrap()
	if cerr := n.close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// close stops what was started, in reverse order, each step bounded so
// that the whole shutdown fits in the 5 s a user waits for.
func (n *Node) close() error {
	var errs []error
	if err := n.repo.removeAPIFile(); err != nil {
		errs = append(errs, fmt.Errorf("remove api file: %w", err))
	}
	if n.api != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := n.api.Shutdown(ctx); err != nil {
			n.api.Close()
		}
		cancel()
	} else if n.apiLn != nil {
		n.apiLn.Close()
	}
	if n.gateway != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if err := n.gateway.Shutdown(ctx); err != nil {
			n.gateway.Close()
		}
		cancel()
	} else if n.gatewayLn != nil {
		n.gatewayLn.Close()
	}
	if err := n.closeProof(); err != nil {
		errs = append(errs, err)
	}
	if n.replicas != nil { // before the lease, which it reads
		n.replicas.Close()
	}
	if n.lease != nil {
		if err := n.lease.Close(2 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if err := n.closeReceipts(); err != nil { // after the lease, which fills them
		errs = append(errs, err)
	}
	if n.market != nil { // after the lease, which negotiates through it
		if err := n.market.Close(time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if n.jobs != nil {
		n.jobs.Close() // containers keep running; the next start reattaches
		n.docker.Close()
	}
	if err := n.closeChain(); err != nil {
		errs = append(errs, fmt.Errorf("close chain: %w", err))
	}
	if n.content != nil {
		if err := n.content.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close content: %w", err))
		}
	}
	if n.p2p != nil {
		done := make(chan error, 1)
		go func() { done <- n.p2p.Close() }()
		select {
		case err := <-done:
			if err != nil {
				errs = append(errs, fmt.Errorf("close p2p: %w", err))
			}
		case <-time.After(2 * time.Second):
			n.log.Warn("p2p did not close within 2s; leaving it")
		}
	}
	if n.datastore != nil {
		if err := n.datastore.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close datastore: %w", err))
		}
	}
	return errors.Join(errs...)
}

// listenLocal listens on addr. The built-in default is only a preference:
// when another daemon on this machine holds it, a free port is taken
// instead (the repo's api file and `aixblock id` say which), so a second
// node starts without flags. Any other address was chosen by the user and
// must be had as given.
func listenLocal(log *slog.Logger, what, addr, def string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil && addr == def && errors.Is(err, syscall.EADDRINUSE) {
		host, _, _ := net.SplitHostPort(addr)
		if ln, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err == nil {
			log.Warn(what+" default address in use; listening on a free port", "default", def, "addr", ln.Addr().String())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s listen: %w", what, err)
	}
	return ln, nil
}

// requestStop makes Run return as if the daemon were signalled.
func (n *Node) requestStop() { n.stopOnce.Do(func() { close(n.stopReq) }) }

// anyPort is a listen multiaddr with its TCP or UDP port set to 0.
func anyPort(a ma.Multiaddr) ma.Multiaddr {
	var out ma.Multiaddr
	for _, c := range a {
		if c.Protocol().Code == ma.P_TCP || c.Protocol().Code == ma.P_UDP {
			if z, err := ma.NewComponent(c.Protocol().Name, "0"); err == nil {
				c = *z
			}
		}
		out = append(out, c)
	}
	return out
}
