package market

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/p2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Inventory is what the market needs of the GPU manager.
type Inventory interface {
	Inventory() gpu.Inventory
	Subscribe() (<-chan gpu.Change, func())
}

// Config configures a Market. The zero value is a provider that bids on
// nothing (no prices) and a requester with the defaults below.
type Config struct {
	// Prices per GPU-hour (per core-hour for "cpu"), in base units, by GPU
	// class or "cpu", then by token (address or "native"). A class with no
	// price gets no bids. "*" prices every class not listed.
	Prices map[string]map[string]string
	// PricingCommand, when set, is run for each matching offer with the
	// offer as JSON on stdin; it prints a price (base units per GPU-hour),
	// or exits non-zero to decline.
	PricingCommand []string
	// AcceptedImages are path.Match patterns; empty accepts any image.
	AcceptedImages []string
	// MaxDuration of a job; zero means 24 h.
	MaxDuration time.Duration
	// MaxHoldbackBps is the largest share of its pay, in basis points,
	// this provider lets a requester hold back until a result verifies
	// (market.max_holdback); zero: it bids on no offer that holds any back.
	MaxHoldbackBps int
	// ReserveFor is how long GPUs stay reserved for a bid, whatever the
	// offer's deadline says; zero means 10 s. A reservation not awarded by
	// then is freed.
	ReserveFor time.Duration
	// MaxReservations is how many unawarded reservations one requester
	// peer, and one wallet under any peer IDs, may hold here at a time;
	// zero means 4.
	MaxReservations int
	// MaxLapses is how many reservations of one requester peer, or one
	// wallet, may lapse unawarded (neither awarded nor released) within
	// LapseWindow before its offers get no bids here; zero means 3, and a
	// zero LapseWindow 10 min.
	MaxLapses   int
	LapseWindow time.Duration
	// ReserveBudget is how many unawarded reservations this provider holds
	// at once, all requesters together; zero means 16.
	ReserveBudget int
	// Funds, when set, is asked before GPUs are reserved whether the
	// offer's wallet can pay the deal's maximum cost here (its channel to
	// this provider plus its balance): a fresh identity has nothing, so it
	// reserves nothing. An offer must then carry its wallet's signature
	// (WalletSig). Nil checks no funds.
	Funds Funds
	// AdvertTTL is an advert's lifetime; zero means 30 min. It is
	// republished every AdvertTTL/3, at once when health changes, and 2 s
	// after the first of a burst of allocation changes.
	AdvertTTL time.Duration

	// BidWindow is how long a requester collects bids; zero means 1 s.
	BidWindow time.Duration
	// Enough bids end the window early; zero means 3.
	Enough int
	// Fanout is how many providers found in the DHT get the offer directly;
	// zero means 5.
	Fanout int
	// AwardTimeout is how long a provider has to confirm an award; zero
	// means 3 s.
	AwardTimeout time.Duration
	// StartWindow is how long a provider holds a deal's GPUs for a job that
	// has not started; zero means 2 min.
	StartWindow time.Duration
	// ReputationFile persists reputation; empty keeps it in memory.
	ReputationFile string
	// Chain names the chain this node pays and is paid on (chain ID and
	// genesis hash, as "1337/0xab…"); empty means unknown. Offers carry the
	// requester's, and a provider on another chain does not bid: a deal
	// between them would be funded where the provider never looks. Dev
	// chains share the chain ID and the contracts' addresses, so the
	// genesis hash is what tells them apart.
	Chain string
	// FormatAmount renders base units of a token ("native" or an address)
	// in a refusal's reason; nil writes "N base units".
	FormatAmount func(token, baseUnits string) string
	// Busy, when set, names the GPUs (UUIDs) that jobs on this node hold
	// now, however they started: the market's own holds live in memory
	// and are gone after a restart, but the jobs it reattaches are not.
	// It is consulted whenever free GPUs are counted (the advert, each
	// bid), so it must be cheap and must not call into the market. Until
	// Run starts (the daemon calls it once its jobs are reattached), every
	// GPU counts as in use: an offer that comes in between gets no bid.
	// Nil counts the market's holds alone.
	Busy func() []string
	// RequireDiskMiB refuses offers whose job leaves disk_mib out: such a
	// job would have no disk bound here (its inputs up to the content
	// limits, its outputs unlimited).
	RequireDiskMiB bool
	// DefaultDiskMiB is the disk bound of a job whose offer leaves
	// disk_mib out, when not required (DiskBound tells the daemon); the
	// bid engine counts it against free disk. Zero means no bound.
	DefaultDiskMiB uint64
	// Now is the clock for reservations and message expiry; nil is
	// time.Now. Tests move it.
	Now func() time.Time
	// Proof is proof of GPU: the records an advert carries, providers'
	// standing in bid ranking and `market providers`, and the challenges
	// of an offer that requires verified providers. Nil: none.
	Proof ProofHook
	// Receipts is the receipts of ended deals: a provider's score from
	// them breaks ties in bid ranking after proof of GPU, before this
	// node's own reputation record. Nil: none.
	Receipts ReceiptHook
	// VetTimeout bounds the challenges an offer that requires verified
	// providers waits for before its bid window; zero means 2 min.
	VetTimeout time.Duration

	Logger *slog.Logger
}

// Market is both sides of the market on one node: a provider that adverts
// and bids, and a requester that offers and awards.
type Market struct {
	cfg    Config
	n      *p2p.Node
	key    crypto.PrivKey
	self   peer.ID
	inv    Inventory
	signer DealSigner
	log    *slog.Logger
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	rep    *Reputation

	mu        sync.Mutex
	held      map[string]*hold        // GPU UUID -> reservation or allocation
	lent      map[string]*loan        // GPU UUID -> a challenge's, preempted by any bid
	bids      map[string]*providerBid // offer ID -> our bid on it
	seen      seenOffers              // offer IDs already judged, bounded
	pending   map[string]*openOffer   // offer ID -> where its bids go (requester)
	deals     map[string]*Deal        // deal ID -> deal we provide
	unstarted map[string]time.Time    // deal ID -> when its job must have started
	lapses    map[string][]time.Time  // requester peer ID or walletKey -> when its unawarded reservations lapsed, oldest first
	republ    chan struct{}
	advert    *ProviderAdvert
	announced []string                   // the class keys last announced (Run only)
	adverts   map[string]*ProviderAdvert // fetched from the DHT, by peer
	refreshed map[string]time.Time       // when each class's adverts were last fetched
	msgsSent  atomic.Int64
	bidStats  bidStats      // what bid answered, for metrics
	ready     chan struct{} // closed when Run starts
	funds     fundsChecks

	// Every goroutine of the market, Run included, runs through spawn
	// (or enter) and is waited for by Close; life ends at Close.
	life    context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup
	spawnMu sync.Mutex // orders enter's Add against Close
}

type hold struct {
	offerID string
	dealID  string
	until   time.Time
}

type providerBid struct {
	offer JobOffer
	bid   Bid
	raw   []byte
	// wallet is the offer's wallet (walletKey) once it signed the offer;
	// empty when it did not, and the wallet's limits do not count it.
	wallet string
}

type openOffer struct {
	offer *JobOffer
	start time.Time
	bids  chan receivedBid
}

type receivedBid struct {
	bid     Bid
	latency time.Duration
}

// Protocol names, under /aixblock/<network>/.
const (
	protoOffer  = "market/offer/1"
	protoBid    = "market/bid/1"
	protoAward  = "market/award/1"
	protoFree   = "market/release/1"
	offersTopic = "offers/1"
)

// New starts the market on n: handlers, the offers topic, the advert loop
// (Run). key is n's identity, for signing adverts, offers and bids.
func New(n *p2p.Node, key crypto.PrivKey, inv Inventory, signer DealSigner, cfg Config) (*Market, error) {
	if cfg.MaxDuration == 0 {
		cfg.MaxDuration = 24 * time.Hour
	}
	if cfg.ReserveFor == 0 {
		cfg.ReserveFor = 10 * time.Second
	}
	if cfg.MaxReservations == 0 {
		cfg.MaxReservations = 4
	}
	if cfg.ReserveBudget == 0 {
		cfg.ReserveBudget = 16
	}
	if cfg.MaxLapses == 0 {
		cfg.MaxLapses = 3
	}
	if cfg.LapseWindow == 0 {
		cfg.LapseWindow = 10 * time.Minute
	}
	if cfg.FormatAmount == nil {
		cfg.FormatAmount = func(_, base string) string { return base + " base units" }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AdvertTTL == 0 {
		cfg.AdvertTTL = 30 * time.Minute
	}
	if cfg.BidWindow == 0 {
		cfg.BidWindow = time.Second
	}
	if cfg.Enough == 0 {
		cfg.Enough = 3
	}
	if cfg.VetTimeout == 0 {
		cfg.VetTimeout = 2 * time.Minute
	}
	if cfg.Fanout == 0 {
		cfg.Fanout = 5
	}
	if cfg.AwardTimeout == 0 {
		cfg.AwardTimeout = 3 * time.Second
	}
	if cfg.StartWindow == 0 {
		cfg.StartWindow = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := validatePrices(cfg.Prices); err != nil {
		return nil, err
	}
	rep, err := OpenReputation(cfg.ReputationFile)
	if err != nil {
		return nil, err
	}
	m := &Market{
		cfg: cfg, n: n, key: key, self: n.Host.ID(), inv: inv, signer: signer, rep: rep,
		log:       cfg.Logger.With("component", "market"),
		held:      map[string]*hold{},
		lent:      map[string]*loan{},
		bids:      map[string]*providerBid{},
		seen:      newSeenOffers(),
		pending:   map[string]*openOffer{},
		deals:     map[string]*Deal{},
		unstarted: map[string]time.Time{},
		lapses:    map[string][]time.Time{},
		adverts:   map[string]*ProviderAdvert{},
		refreshed: map[string]time.Time{},
		republ:    make(chan struct{}, 1),
		ready:     make(chan struct{}),
	}
	m.life, m.stop = context.WithCancel(context.Background())
	if m.topic, err = n.Join(offersTopic, m.validateGossipOffer); err != nil {
		return nil, err
	}
	if m.sub, err = m.topic.Subscribe(); err != nil {
		return nil, fmt.Errorf("market: subscribe %s: %w", offersTopic, err)
	}
	h := n.Host
	p2p.Handle(h, n.ProtocolID(protoOffer), p2p.StreamLimits{MaxRequest: MaxOfferBytes, MaxResponse: MaxBidBytes}, m.log, m.handleOffer)
	p2p.Handle(h, n.ProtocolID(protoBid), p2p.StreamLimits{MaxRequest: MaxBidBytes, MaxResponse: 64}, m.log, m.handleBid)
	p2p.Handle(h, n.ProtocolID(protoAward), p2p.StreamLimits{MaxRequest: MaxDealBytes, MaxResponse: MaxDealBytes}, m.log, m.handleAward)
	p2p.Handle(h, n.ProtocolID(protoFree), p2p.StreamLimits{MaxRequest: 128, MaxResponse: 64}, m.log, m.handleRelease)
	return m, nil
}

// Run publishes the advert and keeps it fresh, follows gossiped offers and
// releases lapsed reservations, until ctx ends or Close is called.
func (m *Market) Run(ctx context.Context) error {
	if !m.enter() {
		return nil // closed before it ran
	}
	defer m.wg.Done()
	ctx, cancel := m.bound(ctx)
	defer cancel()
	close(m.ready)
	changes, unsub := m.inv.Subscribe()
	defer unsub()
	m.spawn(ctx, m.readOffers)
	// Until the first advert is stored (the routing table may still be
	// empty at start), retry with a growing pause.
	retry := time.NewTimer(0)
	defer retry.Stop()
	backoff := time.Second
	every := time.NewTicker(m.cfg.AdvertTTL / 3)
	defer every.Stop()
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	// Deals and releases change the advert's free GPUs: a burst of them
	// is published once, republishDelay after the first.
	settle := newDebounce(republishDelay)
	defer settle.stop()
	for {
		select {
		case <-ctx.Done():
			m.sub.Cancel()
			m.topic.Close()
			return nil
		case <-retry.C:
			if !m.publish(ctx, true) {
				retry.Reset(backoff)
				backoff = min(2*backoff, m.cfg.AdvertTTL/3)
			}
		case <-changes:
			m.publish(ctx, true)
		case <-m.republ:
			settle.start()
		case <-settle.C():
			settle.fired()
			m.publish(ctx, false)
		case <-every.C:
			m.publish(ctx, true)
		case <-sweep.C:
			if m.sweep(m.now()) {
				settle.start()
			}
		}
	}
}

// enter counts a goroutine of the market for Close to wait for; it
// reports false, counting nothing, once Close was called. The caller
// calls m.wg.Done when the goroutine ends.
func (m *Market) enter() bool {
	m.spawnMu.Lock()
	defer m.spawnMu.Unlock()
	if m.life.Err() != nil {
		return false // closing: nothing new starts
	}
	m.wg.Add(1)
	return true
}

// spawn runs f in a goroutine under ctx, ended also by Close and waited
// for by it: nothing of the market outlives Close. Once Close was called
// f does not run, and spawn reports false.
func (m *Market) spawn(ctx context.Context, f func(ctx context.Context)) bool {
	if !m.enter() {
		return false
	}
	go func() {
		defer m.wg.Done()
		ctx, cancel := m.bound(ctx)
		defer cancel()
		f(ctx)
	}()
	return true
}

// bound is ctx, ended also when the market closes.
func (m *Market) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if m.life.Err() != nil {
		cancel() // now: AfterFunc would call it in a goroutine of its own
	}
	stop := context.AfterFunc(m.life, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// Close stops Run and every goroutine the market started (negotiations
// under way end without a deal) and waits for them, at most wait. The
// market takes no part in the network afterwards.
func (m *Market) Close(wait time.Duration) error {
	m.spawnMu.Lock()
	m.stop()
	m.spawnMu.Unlock()
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("market: goroutines still running %s after close", wait)
	}
}

// gpuUse is which GPUs jobs here hold (Config.Busy); known is false while
// that cannot be told yet, and every GPU then counts as in use.
type gpuUse struct {
	busy  map[string]bool
	known bool
}

// inUse asks Config.Busy, outside m.mu.
func (m *Market) inUse() gpuUse {
	if m.cfg.Busy == nil {
		return gpuUse{known: true}
	}
	select {
	case <-m.ready:
	default:
		return gpuUse{}
	}
	ids := m.cfg.Busy()
	u := gpuUse{busy: make(map[string]bool, len(ids)), known: true}
	for _, id := range ids {
		u.busy[id] = true
	}
	return u
}

// taken says whether GPU uuid is reserved, allocated or in use by a job;
// the caller holds m.mu.
func (m *Market) taken(uuid string, use gpuUse) bool {
	return !use.known || m.held[uuid] != nil || use.busy[uuid]
}

func (m *Market) requestRepublish() {
	select {
	case m.republ <- struct{}{}:
	default:
	}
}

// sweep frees reservations and allocations past their time; it reports
// whether any was.
func (m *Market) sweep(now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	freed := false
	for u, h := range m.held {
		if now.After(h.until) {
			delete(m.held, u)
			freed = true
		}
	}
	for id, b := range m.bids {
		if now.After(time.UnixMilli(b.bid.ReservedUntilMs)) && !m.awarded(id) {
			// Neither awarded nor released: it counts against the
			// requester (see admit).
			r := b.offer.Requester
			m.lapses[r] = append(m.lapses[r], now)
			if b.wallet != "" {
				m.lapses[b.wallet] = append(m.lapses[b.wallet], now)
			}
			delete(m.bids, id)
			m.log.Debug("reservation lapsed unawarded", "offer_id", short(id), "requester", r)
		}
	}
	m.seen.prune(now, time.Hour)
	for r := range m.lapses {
		m.pruneLapses(r, now)
	}
	for id, by := range m.unstarted {
		if now.After(by) {
			m.log.Info("deal's job never started; releasing its GPUs", "deal_id", short(id))
			if d := m.deals[id]; d != nil {
				// As a lapsed reservation: it counts against its requester
				// and the wallet that signed it.
				m.lapses[d.Requester] = append(m.lapses[d.Requester], now)
				w := walletKey(d.RequesterWallet)
				m.lapses[w] = append(m.lapses[w], now)
			}
			for u, h := range m.held {
				if h.dealID == id {
					delete(m.held, u)
				}
			}
			delete(m.deals, id)
			delete(m.unstarted, id)
			freed = true
		}
	}
	return freed
}

func (m *Market) awarded(offerID string) bool {
	for _, d := range m.deals {
		if d.OfferID == offerID {
			return true
		}
	}
	return false
}

// Started marks a deal's job as started, so its GPUs stay held for it.
func (m *Market) Started(dealID string) {
	m.mu.Lock()
	delete(m.unstarted, dealID)
	m.mu.Unlock()
}

// Claim marks a deal's job as starting, if the deal is still held here:
// a start that comes as its start window ends must not run on GPUs the
// sweep has just given back to the market.
func (m *Market) Claim(dealID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.deals[dealID] == nil {
		return fmt.Errorf("deal %s is not held here (its start window passed, or it ended): make a new deal", short(dealID))
	}
	delete(m.unstarted, dealID)
	return nil
}

// Release frees the GPUs of a deal (the job ended).
func (m *Market) Release(dealID string) {
	m.mu.Lock()
	m.releaseLocked(dealID)
	m.mu.Unlock()
	m.requestRepublish()
}

// ReleaseUnstarted releases a deal whose job has not been claimed for a
// start (its requester gives it up), in the same lock as the check: a
// start that claims it first keeps its GPUs. It reports whether it did.
func (m *Market) ReleaseUnstarted(dealID string) bool {
	m.mu.Lock()
	_, unstarted := m.unstarted[dealID]
	if unstarted {
		m.releaseLocked(dealID)
	}
	m.mu.Unlock()
	if unstarted {
		m.requestRepublish()
	}
	return unstarted
}

func (m *Market) releaseLocked(dealID string) {
	for u, h := range m.held {
		if h.dealID == dealID {
			delete(m.held, u)
		}
	}
	if d := m.deals[dealID]; d != nil {
		// The bid is spent: an award replayed now finds none.
		delete(m.bids, d.OfferID)
	}
	delete(m.deals, dealID)
	delete(m.unstarted, dealID)
}

// Reputation is the requester's record of providers.
func (m *Market) Reputation() *Reputation { return m.rep }

// MessagesSent counts market messages this node sent: direct requests and
// gossip publications.
func (m *Market) MessagesSent() int64 { return m.msgsSent.Load() }

func (m *Market) request(ctx context.Context, p peer.ID, proto string, req []byte, lim p2p.StreamLimits) ([]byte, error) {
	m.msgsSent.Add(1)
	return p2p.Request(ctx, m.n.Host, p, m.n.ProtocolID(proto), req, lim)
}

func (m *Market) now() time.Time { return m.cfg.Now() }
