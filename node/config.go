package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/content"
	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Config is the repo's config.json. Every field can be edited by hand;
// daemon flags override it for one run.
type Config struct {
	// Network is the network name; empty means p2p.DefaultNetwork.
	Network string `json:"network"`
	// Listen are libp2p listen multiaddrs.
	Listen []string `json:"listen"`
	// Announce, when set, replaces the addresses the node advertises.
	Announce []string `json:"announce,omitempty"`
	// API is the HOST:PORT of the local HTTP API; port 0 picks a free one.
	API string `json:"api"`
	// Bootstrap are multiaddrs with /p2p/<peer-id> of peers to join through.
	Bootstrap []string `json:"bootstrap"`
	// MDNS turns on LAN discovery.
	MDNS bool `json:"mdns"`
	// NAT turns on port mapping, AutoNAT, the relay client and hole punching.
	NAT bool `json:"nat"`
	// Reachability, "public" or "private", overrides AutoNAT; empty
	// leaves it to AutoNAT.
	Reachability string `json:"reachability,omitempty"`
	// Relays are multiaddrs (with /p2p/ID) of relays to reserve a slot on
	// when behind NAT; empty means candidates found in the DHT.
	Relays []string `json:"relays,omitempty"`
	// JobRelay offers this node as a relay for its network's nodes that
	// cannot reach each other directly, with no time or data limit per
	// circuit (a distributed job's ranks talk for hours): for a node with
	// a public address and bandwidth to give. Off by default.
	JobRelay bool `json:"job_relay,omitempty"`

	// ConnLow and ConnHigh are the connection manager's watermarks; zero
	// means the p2p defaults.
	ConnLow  int `json:"conn_low,omitempty"`
	ConnHigh int `json:"conn_high,omitempty"`
	// GPU configures the GPU inventory and health checks.
	GPU GPUConfig `json:"gpu"`
	// Gateway is the HOST:PORT of the trustless IPFS gateway; port 0 picks
	// a free one, "off" disables it.
	Gateway string `json:"gateway"`
	// Content configures fetching by CID.
	Content ContentConfig `json:"content"`
	// Chain configures payments.
	Chain ChainConfig `json:"chain"`
	// Market configures what this node offers and how it buys.
	Market MarketConfig `json:"market"`
}

// MarketConfig is the "market" section of config.json.
type MarketConfig struct {
	// Prices per GPU-hour (per core-hour for "cpu") in whole units of a
	// token ("2.5"), by GPU class (or "cpu", or "*" for any class), then
	// by token: "default" (the chain's configured token), "native", or an
	// address. A node without prices does not provide.
	Prices map[string]map[string]string `json:"prices,omitempty"`
	// PricingCommand, when set, prices each matching offer instead: it
	// reads the offer as JSON on stdin and prints a price in base units.
	PricingCommand []string `json:"pricing_command,omitempty"`
	// AcceptedImages are glob patterns of images this node runs; empty
	// accepts any.
	AcceptedImages []string `json:"accepted_images,omitempty"`
	// MaxDuration of a job here, e.g. "24h"; empty means 24 h.
	MaxDuration string `json:"max_duration,omitempty"`
	// BidWindow is how long this node, as a requester, collects bids,
	// e.g. "1s"; empty means 1 s.
	BidWindow string `json:"bid_window,omitempty"`
	// ReserveFor is how long this node, as a provider, holds GPUs for a
	// bid not yet awarded, whatever the offer asks, e.g. "10s" (the
	// default); MaxReservations is how many such bids one requester may
	// hold here at once (zero means 4).
	ReserveFor      string `json:"reserve_for,omitempty"`
	MaxReservations int    `json:"max_reservations,omitempty"`
	// ReserveBudget is how many unawarded bids this node, as a provider,
	// holds at once, all requesters together; zero means 16.
	ReserveBudget int `json:"reserve_budget,omitempty"`
	// RequireDiskMiB refuses market jobs that leave resources.disk_mib
	// out (they would have no disk bound here).
	RequireDiskMiB bool `json:"require_disk_mib,omitempty"`
	// DefaultDiskMiB is the disk bound of a market job that leaves
	// resources.disk_mib out, when not required; zero means none. A disk
	// bound needs a daemon that runs as root, with mkfs.ext4 and loop
	// devices: elsewhere such a job fails at once, saying so.
	DefaultDiskMiB uint64 `json:"default_disk_mib,omitempty"`
	// VoucherInterval is how often a requester pays for running jobs, e.g.
	// "30s"; empty means 30 s. A provider stops a job after three missed.
	VoucherInterval string `json:"voucher_interval,omitempty"`
	// Prepay is how far a requester's vouchers for a running job run
	// ahead of the time it saw the job run, so that the job goes on while
	// this daemon restarts or sleeps, e.g. "10m"; empty means ten voucher
	// intervals, at least 1 min. What a job does not use pays for later
	// jobs with the same provider.
	Prepay string `json:"prepay,omitempty"`
	// MaxPrepare bounds how long a market job may fetch its image and
	// inputs on this provider, its GPUs held and not yet paid for, e.g.
	// "5m" (the default).
	MaxPrepare string `json:"max_prepare,omitempty"`
	// PauseGrace is how long this provider keeps a market job paused,
	// its GPUs held, once its requester's vouchers stop covering it,
	// before it stops the job, e.g. "2m" (the default); "off" stops it at
	// once.
	PauseGrace string `json:"pause_grace,omitempty"`
	// RedeemEvery is how often a provider redeems the vouchers it holds
	// (all channels in one transaction), e.g. "1h"; empty means 1 h, "off"
	// leaves it to `wallet redeem`.
	RedeemEvery string `json:"redeem_every,omitempty"`
	// ProofImage is the image this node, as a provider, runs proof-of-GPU
	// challenges in; empty means the CPU workload (`make job-image` builds
	// it). A provider of real GPUs builds gpu/challenge/nvidia's image.
	ProofImage string `json:"proof_image,omitempty"`
	// MaxHoldback is the largest share of its pay this node, as a
	// provider, lets a requester hold back until the job's result
	// verifies (a spec's verify.holdback), e.g. "20%"; empty means 50%,
	// the most any offer holds back; "0%" bids on no such offer.
	MaxHoldback string `json:"max_holdback,omitempty"`
	// VerifySample spot-checks, as a requester, this share of its market
	// batch jobs on one node whose spec says nothing of verify, e.g.
	// "5%" (a spec's verify: {sample: 5%}); empty: none.
	VerifySample string `json:"verify_sample,omitempty"`
	// VerifyHoldback is the share of such a job's pay held back until
	// its result verifies, e.g. "20%" (verify.holdback); empty: none.
	VerifyHoldback string `json:"verify_holdback,omitempty"`
	// AutoVerify challenges, as a requester, the providers this node
	// finds (once, then again at random times); nil means on.
	AutoVerify *bool `json:"auto_verify,omitempty"`
	// RedeemAbove skips a timed redeem while less than this is owed, in
	// base units of the token; empty means any amount.
	RedeemAbove string `json:"redeem_above,omitempty"`
	// HostNetworkFor are the requesters (peer IDs) whose distributed jobs
	// may ask for this host's network (distributed.network: host): their
	// ranks then see everything this host's network does, its local
	// services included, so list only requesters you trust as you trust
	// yourself (your own cluster). Empty means none: every distributed
	// rank runs on its job's private network.
	HostNetworkFor []string `json:"host_network_for,omitempty"`
	// Ports ranks on the host's network listen on, e.g. "29500-29999"
	// (the default).
	Ports string `json:"ports,omitempty"`
	// AllowRegistries are the image registries ("host" or "host:port")
	// this provider's engine may pull from although they resolve to
	// loopback, link-local or private addresses (a registry of your own on
	// your LAN). Empty means none: a job's image never makes the engine
	// reach this host's own network.
	AllowRegistries []string `json:"allow_registries,omitempty"`
}

// ChainConfig is the "chain" section of config.json.
type ChainConfig struct {
	// RPC is an EVM JSON-RPC URL (http, https, ws, wss), or several of
	// one chain separated by commas, tried in turn when one cannot be
	// reached; empty means an embedded dev chain of the daemon's own,
	// kept in <repo>/devchain.
	RPC string `json:"rpc,omitempty"`
	// OutageGrace is how long a provider lets a job run on vouchers it
	// cannot check while the chain cannot be read, e.g. "10m" (the
	// default); the voucher is checked as soon as the chain answers.
	OutageGrace string `json:"outage_grace,omitempty"`
	// Escrow and Token are contract addresses on that chain; both are
	// required with RPC. Token may be "native" for the chain's coin.
	Escrow string `json:"escrow,omitempty"`
	Token  string `json:"token,omitempty"`
	// Dev marks RPC as a development chain (such as `aixblock devchain`),
	// where the wallet may have an empty passphrase.
	Dev bool `json:"dev,omitempty"`
	// Confirmations before a transaction counts; zero means 1.
	Confirmations uint64 `json:"confirmations,omitempty"`
	// BumpAfter is how long a transaction may wait unmined before it is
	// sent again with higher fees, e.g. "30s"; empty means 30 s.
	BumpAfter string `json:"bump_after,omitempty"`
	// LogRange is the most blocks one eth_getLogs request may span (hosted
	// RPCs cap it; init --chain sets the network's); zero means
	// chain.DefaultLogRange.
	LogRange uint64 `json:"log_range,omitempty"`
}

// RPCs are the URLs of chain.rpc, in the order they are tried.
func (c ChainConfig) RPCs() []string {
	var out []string
	for _, u := range strings.Split(c.RPC, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// IsDev reports whether the chain is a development chain.
func (c ChainConfig) IsDev() bool { return c.RPC == "" || c.Dev }

// ContentConfig is the "content" section of config.json.
type ContentConfig struct {
	// FindTimeout, FirstBlockTimeout and StallTimeout bound a fetch's
	// provider search, its wait for the first block, and a pause without
	// progress, e.g. "30s"; empty means 30 s, 60 s and 60 s.
	FindTimeout       string `json:"find_timeout,omitempty"`
	FirstBlockTimeout string `json:"first_block_timeout,omitempty"`
	StallTimeout      string `json:"stall_timeout,omitempty"`
	// MaxDAGMiB and MaxDepth refuse larger or deeper DAGs (what a get
	// writes counts, every repeated link again); zero means 64 GiB and
	// 64 levels.
	MaxDAGMiB int64 `json:"max_dag_mib,omitempty"`
	MaxDepth  int   `json:"max_depth,omitempty"`
	// ResultTTL is how long a job's result stays pinned here unless it is
	// pinned for good (`data pin add`), e.g. "72h"; empty means 7 days,
	// "never" keeps results forever.
	ResultTTL string `json:"result_ttl,omitempty"`
	// DirectIO writes block files, and the files `data get` writes, with
	// O_DIRECT instead of through the page cache (content.Config.DirectIO):
	// faster only where the disk outruns the kernel's page handling.
	DirectIO bool `json:"direct_io,omitempty"`
}

// GPUConfig is the "gpu" section of config.json.
type GPUConfig struct {
	// Mock names a go-nvml mock server (dgxa100, dgxh100, dgxh200,
	// dgxb200) to use instead of real NVML; empty means real NVML.
	Mock string `json:"mock,omitempty"`
	// PollInterval is how often health counters are read, e.g. "10s";
	// empty means 10 s.
	PollInterval string `json:"poll_interval,omitempty"`
	// QuietWindow is how long a degraded GPU must stay quiet to be healthy
	// again, e.g. "5m"; empty means 5 min.
	QuietWindow string `json:"quiet_window,omitempty"`
	// FatalXIDs and AppXIDs replace the built-in lists when set.
	FatalXIDs []uint64 `json:"fatal_xids,omitempty"`
	AppXIDs   []uint64 `json:"app_xids,omitempty"`
}

// DefaultAPI is where the API listens unless told otherwise.
const DefaultAPI = "127.0.0.1:5901"

// DefaultGateway is where the trustless gateway listens unless told otherwise.
const DefaultGateway = "127.0.0.1:8901"

// DefaultConfig is what `aixblock init` writes.
func DefaultConfig(network string) Config {
	if network == "" {
		network = p2p.DefaultNetwork
	}
	return Config{
		Network: network,
		Listen: []string{
			"/ip4/0.0.0.0/tcp/4901",
			"/ip4/0.0.0.0/udp/4901/quic-v1",
			"/ip6/::/tcp/4901",
			"/ip6/::/udp/4901/quic-v1",
		},
		API:       DefaultAPI,
		Gateway:   DefaultGateway,
		Bootstrap: []string{},
		MDNS:      true,
		NAT:       true,
	}
}

// parsed is a Config checked and turned into the types the services take.
type parsed struct {
	network   string
	listen    []ma.Multiaddr
	announce  []ma.Multiaddr
	bootstrap []peer.AddrInfo
	relays    []peer.AddrInfo
	api       string
	gateway   string // empty: off
	gpu       gpu.Config
	content   content.Config
	chain     chain.Config

	marketMaxDuration time.Duration
	// marketMaxHoldback is market.max_holdback in basis points.
	marketMaxHoldback int
	marketBidWindow   time.Duration
	marketReserveFor  time.Duration
	voucherInterval   time.Duration
	prepay            time.Duration
	maxPrepare        time.Duration
	pauseGrace        time.Duration
	outageGrace       time.Duration
	redeemEvery       time.Duration // zero: off
	redeemAbove       *big.Int
}

// Validate checks every field and names the first bad one.
func (c Config) Validate() error {
	_, err := c.parse()
	return err
}

// parse checks the fields section by section, in the order of the
// sections below, and stops at the first bad one.
func (c Config) parse() (parsed, error) {
	var p parsed
	for _, section := range []func(*parsed) error{
		c.parseP2P, c.parseLocal, c.parseContent, c.parseGPU, c.parseChain,
		c.parseMarket, c.parsePayments, c.parsePrices, c.parseConns,
	} {
		if err := section(&p); err != nil {
			return p, err
		}
	}
	return p, nil
}

// parseP2P reads the network, its addresses and its peers.
func (c Config) parseP2P(p *parsed) error {
	p.network = c.Network
	if p.network == "" {
		p.network = p2p.DefaultNetwork
	}
	if err := p2p.ValidateNetwork(p.network); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if len(c.Listen) == 0 {
		return errors.New("listen: no addresses")
	}
	var err error
	if p.listen, err = multiaddrs("listen", c.Listen); err != nil {
		return err
	}
	if p.relays, err = addrInfos("relays", c.Relays); err != nil {
		return err
	}
	if err := p2p.CheckReachability(c.Reachability); err != nil {
		return err
	}
	if p.announce, err = multiaddrs("announce", c.Announce); err != nil {
		return err
	}
	p.bootstrap, err = addrInfos("bootstrap", c.Bootstrap)
	return err
}

// addrInfos parses field's multiaddrs, each ending in /p2p/<peer-id>.
func addrInfos(field string, ss []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, s := range ss {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a multiaddr ending in /p2p/<peer-id>: %w", field, s, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// parseLocal reads what this machine serves and uses: the API, the GPU
// mock and the gateway.
func (c Config) parseLocal(p *parsed) error {
	if err := checkHostPort(c.API); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	p.api = c.API
	if err := gpu.ValidateMock(c.GPU.Mock); err != nil {
		return fmt.Errorf("gpu.mock: %w", err)
	}
	if c.Gateway != "" && c.Gateway != "off" {
		if err := checkHostPort(c.Gateway); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		p.gateway = c.Gateway
	}
	return nil
}

func (c Config) parseContent(p *parsed) error {
	if c.Content.MaxDAGMiB < 0 || c.Content.MaxDepth < 0 {
		return fmt.Errorf("content.max_dag_mib %d / max_depth %d: want 0 (default) or more", c.Content.MaxDAGMiB, c.Content.MaxDepth)
	}
	p.content = content.Config{MaxDAGBytes: c.Content.MaxDAGMiB << 20, MaxDepth: c.Content.MaxDepth, DirectIO: c.Content.DirectIO}
	var err error
	if c.Content.ResultTTL == "never" {
		p.content.ResultTTL = -1
	} else if p.content.ResultTTL, err = duration("content.result_ttl", c.Content.ResultTTL); err != nil {
		return err
	}
	return durations([]durationField{
		{"content.find_timeout", c.Content.FindTimeout, &p.content.FindTimeout},
		{"content.first_block_timeout", c.Content.FirstBlockTimeout, &p.content.FirstBlockTimeout},
		{"content.stall_timeout", c.Content.StallTimeout, &p.content.StallTimeout},
	})
}

// durationField is a duration setting: its name, its text and where it
// goes.
type durationField struct {
	field string
	val   string
	dst   *time.Duration
}

// durations parses each field in turn and stops at the first bad one.
func durations(fields []durationField) error {
	for _, d := range fields {
		var err error
		if *d.dst, err = duration(d.field, d.val); err != nil {
			return err
		}
	}
	return nil
}

func (c Config) parseGPU(p *parsed) error {
	p.gpu = gpu.Config{Mock: c.GPU.Mock, FatalXIDs: c.GPU.FatalXIDs, AppXIDs: c.GPU.AppXIDs}
	return durations([]durationField{
		{"gpu.poll_interval", c.GPU.PollInterval, &p.gpu.PollInterval},
		{"gpu.quiet_window", c.GPU.QuietWindow, &p.gpu.QuietWindow},
	})
}

func (c Config) parseChain(p *parsed) error {
	var err error
	p.chain, err = c.Chain.parse()
	return err
}

// parseMarket reads how this node buys and what it lets requesters hold.
func (c Config) parseMarket(p *parsed) error {
	if err := durations([]durationField{
		{"market.max_duration", c.Market.MaxDuration, &p.marketMaxDuration},
		{"market.bid_window", c.Market.BidWindow, &p.marketBidWindow},
		{"market.reserve_for", c.Market.ReserveFor, &p.marketReserveFor},
	}); err != nil {
		return err
	}
	for i, id := range c.Market.HostNetworkFor {
		if _, err := peer.Decode(id); err != nil {
			return fmt.Errorf("market.host_network_for[%d] %q: not a peer ID (the 12D3KooW... that `aixblock id` prints): %v", i, id, err)
		}
	}
	if c.Market.MaxReservations < 0 {
		return fmt.Errorf("market.max_reservations %d: want 0 (the default, 4) or more", c.Market.MaxReservations)
	}
	if c.Market.ReserveBudget < 0 {
		return fmt.Errorf("market.reserve_budget %d: want 0 (the default, 16) or more", c.Market.ReserveBudget)
	}
	if d := c.Market.DefaultDiskMiB; d != 0 && d < jobs.MinDiskMiB {
		return fmt.Errorf("market.default_disk_mib %d: want 0 (no default bound) or at least %d", d, jobs.MinDiskMiB)
	}
	var err error
	if p.marketMaxHoldback, err = maxHoldback(c.Market.MaxHoldback); err != nil {
		return err
	}
	return c.Market.checkDefaultVerify()
}

// checkDefaultVerify checks market.verify_sample and verify_holdback as
// a spec's verify would be.
func (m MarketConfig) checkDefaultVerify() error {
	if m.VerifySample == "" {
		if m.VerifyHoldback != "" {
			return errors.New("market.verify_holdback: holds back pay of the jobs market.verify_sample checks: set verify_sample too (such as 5%)")
		}
		return nil
	}
	s := jobs.Spec{Image: "x", Verify: &jobs.Verify{Sample: m.VerifySample, Holdback: m.VerifyHoldback}}
	if err := s.Validate(); err != nil {
		msg := strings.NewReplacer("verify.sample", "market.verify_sample", "verify.holdback", "market.verify_holdback").Replace(err.Error())
		return errors.New(msg)
	}
	return nil
}

// DefaultVerify is how a market batch job on one node is checked when
// its spec does not say (market.verify_sample); nil: not at all.
func (m MarketConfig) DefaultVerify(spec *jobs.Spec) *jobs.Verify {
	if m.VerifySample == "" || spec.Verify != nil || spec.MaxPrice == "" || spec.Distributed != nil || spec.IsService() {
		return nil
	}
	return &jobs.Verify{Sample: m.VerifySample, Holdback: m.VerifyHoldback}
}

// maxHoldback reads market.max_holdback ("20%") as basis points.
func maxHoldback(s string) (int, error) {
	if s == "" {
		return market.MaxHoldbackBps, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	bps := int(math.Round(f * 100))
	if err != nil || !strings.HasSuffix(strings.TrimSpace(s), "%") || bps < 0 || bps > market.MaxHoldbackBps {
		return 0, fmt.Errorf("market.max_holdback %q: want a share from 0%% (no holdback accepted) to %s, such as 20%%", s, market.FormatBps(market.MaxHoldbackBps))
	}
	return bps, nil
}

// parsePayments reads how a running job is paid for and redeemed.
func (c Config) parsePayments(p *parsed) error {
	if err := durations([]durationField{
		{"market.voucher_interval", c.Market.VoucherInterval, &p.voucherInterval},
		{"market.prepay", c.Market.Prepay, &p.prepay},
		{"market.max_prepare", c.Market.MaxPrepare, &p.maxPrepare},
	}); err != nil {
		return err
	}
	var err error
	if c.Market.PauseGrace == "off" {
		p.pauseGrace = -1
	} else if p.pauseGrace, err = duration("market.pause_grace", c.Market.PauseGrace); err != nil {
		return err
	}
	if p.outageGrace, err = duration("chain.outage_grace", c.Chain.OutageGrace); err != nil {
		return err
	}
	if c.Market.RedeemEvery != "off" {
		if p.redeemEvery, err = duration("market.redeem_every", c.Market.RedeemEvery); err != nil {
			return err
		}
		if p.redeemEvery == 0 {
			p.redeemEvery = time.Hour
		}
	}
	if c.Market.RedeemAbove != "" {
		if p.redeemAbove, err = chain.ParseBaseUnits(c.Market.RedeemAbove); err != nil {
			return fmt.Errorf("market.redeem_above: %w", err)
		}
	}
	return nil
}

func (c Config) parsePrices(*parsed) error {
	for class, byToken := range c.Market.Prices {
		if !priceClassRE.MatchString(class) {
			return fmt.Errorf("market.prices: class %q: want a GPU class key such as nvidia-h100-80gb, cpu or *", class)
		}
		for tok, price := range byToken {
			if _, err := chain.ParsePriceToken(tok, common.Address{}); err != nil {
				return fmt.Errorf("market.prices[%s]: %w", class, err)
			}
			if _, err := chain.ParseUnits(price, 18); err != nil {
				return fmt.Errorf("market.prices[%s][%s]: %w", class, tok, err)
			}
		}
	}
	return nil
}

func (c Config) parseConns(*parsed) error {
	if c.ConnLow < 0 || c.ConnHigh < 0 || (c.ConnHigh != 0 && c.ConnHigh < c.ConnLow) {
		return fmt.Errorf("conn_low %d / conn_high %d: want 0 <= low <= high", c.ConnLow, c.ConnHigh)
	}
	return nil
}

var priceClassRE = regexp.MustCompile(`^([a-z0-9][a-z0-9-]{0,63}|\*)$`)

func (c ChainConfig) parse() (chain.Config, error) {
	cfg := chain.Config{Confirmations: c.Confirmations, LogRange: c.LogRange}
	var err error
	if cfg.BumpAfter, err = duration("chain.bump_after", c.BumpAfter); err != nil {
		return cfg, err
	}
	if c.RPC == "" {
		if c.Escrow != "" || c.Token != "" {
			return cfg, errors.New("chain.escrow/chain.token: set only with chain.rpc (the embedded dev chain has its own)")
		}
		return cfg, nil
	}
	for _, one := range c.RPCs() {
		u, err := url.Parse(one)
		if err != nil || u.Host == "" || !slices.Contains([]string{"http", "https", "ws", "wss"}, u.Scheme) {
			return cfg, fmt.Errorf("chain.rpc: %q is not an http(s) or ws(s) URL (several are separated by commas)", one)
		}
	}
	if !common.IsHexAddress(c.Escrow) {
		return cfg, fmt.Errorf("chain.escrow: %q is not an address (0x and 40 hex digits)", c.Escrow)
	}
	cfg.Escrow = common.HexToAddress(c.Escrow)
	if cfg.Token, err = chain.ParseToken(c.Token, common.Address{}); err != nil {
		return cfg, fmt.Errorf("chain.token: %w", err)
	}
	return cfg, nil
}

func duration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: %q is not a positive duration like 10s or 5m", field, s)
	}
	return d, nil
}

func multiaddrs(field string, ss []string) ([]ma.Multiaddr, error) {
	out := make([]ma.Multiaddr, 0, len(ss))
	for _, s := range ss {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a multiaddr: %w", field, s, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT: %w", s, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", s, port)
	}
	if host == "" {
		return fmt.Errorf("%q: no host (use 127.0.0.1 to stay local)", s)
	}
	return nil
}

// loadConfig reads and validates a config file, rejecting unknown fields
// so that a typo is not silently ignored.
func loadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		if strings.Contains(err.Error(), `unknown field "host_network"`) {
			return Config{}, fmt.Errorf("config %s: market.host_network is gone: distributed jobs now run on their own private network with no setting; to give trusted requesters this host's network, list their peer IDs in market.host_network_for", path)
		}
		return Config{}, fmt.Errorf("config %s: %w", path, jsonErr(b, err))
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// jsonErr adds the line number to a syntax error.
func jsonErr(b []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := bytes.Count(b[:se.Offset], []byte("\n")) + 1
		return fmt.Errorf("line %d: %w", line, err)
	}
	return err
}
