package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/internal/atomicfile"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p/overlay"
	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Provider is the provider's side of deals: a start checked against its
// deal, the job watched (its pay, its GPUs, its deal's duration),
// vouchers kept, channels watched for a close and redeemed. It shares no
// state with the Requester; its lock is never held together with the
// requester's.
type Provider struct {
	*base
	jobs         runner
	jobsErr      error // why jobs is nil: this node cannot run jobs
	chain        payee
	market       seller
	gpus         healthFeed
	portServer   *overlay.Server         // service ports of the jobs run here
	jobNet       *overlay.JobNet         // distributed ranks' private networks
	verifyDealFn func(market.Deal) error // nil: the market's check

	// mu guards the fields below it. It is never held across a chain call
	// or a request to a peer; a method named ...Locked expects it held.
	mu sync.Mutex
	// provided: the deals whose jobs run here, by job ID.
	provided map[string]market.Deal
	// For the money check (coverage): the jobs still watched, when each
	// started running (this node's clock), and per channel what was owed
	// before its running jobs: the voucher held when the first of them
	// started, plus the cost of those that ended.
	live     map[string]bool
	runSince map[string]time.Time
	floor    map[common.Hash]*big.Int
	// refused is, per channel, why its last voucher was refused.
	refused map[common.Hash]string
	// startedDeals: every deal that started a job here, kept in
	// startedPath so that a replayed start is refused after a restart.
	startedDeals map[string]bool
	startedPath  string
	ports        map[int]bool       // ports given to distributed ranks
	portOf       map[string]int     // job ID -> its port
	netOf        map[string]netRank // job ID -> its job network
	// starting: the deals whose start is being checked (depositCovers
	// counts them, so two starts never spend one deposit).
	starting map[string]market.Deal
	// During a chain outage: when reads began to fail (zero while they
	// work) and each channel's best voucher not yet checked against its
	// deposit.
	chainDown time.Time
	unchecked map[common.Hash]*chain.Voucher
	// pausedSince: when each job paused for want of pay was paused.
	pausedSince map[string]time.Time
}

// newProvider loads the deals started here, registers the provider's
// protocols and opens its service ports.
func newProvider(b *base) (*Provider, error) {
	pv := makeProvider(b)
	if err := pv.loadStarted(); err != nil {
		return nil, err
	}
	if err := pv.loadProvided(); err != nil {
		return nil, err
	}
	pv.register()
	if err := pv.openPorts(); err != nil {
		return nil, err
	}
	pv.rejoinRanks()
	return pv, nil
}

// makeProvider is a provider with nothing loaded and no protocol.
func makeProvider(b *base) *Provider {
	pv := &Provider{base: b, jobsErr: b.cfg.JobsErr, provided: map[string]market.Deal{}, live: map[string]bool{},
		runSince: map[string]time.Time{}, floor: map[common.Hash]*big.Int{}, refused: map[common.Hash]string{},
		startedDeals: map[string]bool{}, startedPath: filepath.Join(b.cfg.Dir, "started-deals.json"),
		ports: map[int]bool{}, portOf: map[string]int{}, netOf: map[string]netRank{},
		starting: map[string]market.Deal{}, unchecked: map[common.Hash]*chain.Voucher{}, pausedSince: map[string]time.Time{}}
	// A nil service stays a nil interface, so that "pv.jobs == nil" means
	// what it says.
	if c := b.cfg; c.Jobs != nil {
		pv.jobs = c.Jobs
	}
	if c := b.cfg; c.Chain != nil {
		pv.chain = c.Chain
	}
	if c := b.cfg; c.Market != nil {
		pv.market = c.Market
	}
	if c := b.cfg; c.GPUs != nil {
		pv.gpus = c.GPUs
	}
	return pv
}

// loadStarted reads the deals that already started a job here.
func (pv *Provider) loadStarted() error {
	switch b, err := os.ReadFile(pv.startedPath); {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("started deals: %w", err)
	default:
		var ids []string
		if err := json.Unmarshal(b, &ids); err != nil {
			// Refusing to start beats forgetting which deals already ran:
			// a replayed deal would run again.
			return fmt.Errorf("started deals %s is corrupt (%v): repair it or move it away; a deal in it could then be started again", pv.startedPath, err)
		}
		for _, id := range ids {
			pv.startedDeals[id] = true
		}
		return nil
	}
}

// run starts the provider's background work: channels watched for a
// close, vouchers held through an outage rechecked, vouchers redeemed.
func (pv *Provider) run() {
	pv.spawn(pv.watchClosing)
	pv.spawn(func(ctx context.Context) {
		every(ctx, max(pv.interval/2, time.Second), func() { pv.recheckUnchecked(ctx) })
	})
	if pv.cfg.RedeemEvery > 0 {
		pv.spawn(func(ctx context.Context) { pv.autoRedeem(ctx, pv.cfg.RedeemEvery, pv.cfg.RedeemAbove) })
	}
}

// close shuts the provider's job networks and service ports.
func (pv *Provider) close() {
	if pv.jobNet != nil {
		pv.jobNet.Close()
	}
	if pv.portServer != nil {
		pv.portServer.Close()
	}
}

// handleJobStart is the provider's side: the deal must be ours and the
// requester's, and the channel must hold the deal's maximum cost.
func (pv *Provider) handleJobStart(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	var sr startRequest
	if err := json.Unmarshal(req, &sr); err != nil {
		return nil, fmt.Errorf("start request: %w", err)
	}
	deal, err := pv.checkStart(ctx, from, sr)
	if err != nil {
		return nil, err
	}
	defer pv.doneStarting(deal.ID)
	j, err := pv.submitProvided(deal, sr.Spec, jobs.SubmitOptions{ID: sr.JobID})
	if err != nil {
		return nil, err
	}
	if err := pv.startedProvided(j, *deal); err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// maxPrepare bounds a market job's preparation here (Config.MaxPrepare;
// zero means 5 min).
func (pv *Provider) maxPrepare() time.Duration {
	if pv.cfg.MaxPrepare > 0 {
		return pv.cfg.MaxPrepare
	}
	return 5 * time.Minute
}

// handleDealRelease frees the GPUs of a deal its requester will not
// start. Only the deal's requester may, and only before its job starts.
func (pv *Provider) handleDealRelease(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	var r jobIDRequest
	if err := json.Unmarshal(req, &r); err != nil {
		return nil, fmt.Errorf("release request: %w", err)
	}
	for _, d := range pv.market.Deals() {
		if d.ID != r.ID {
			continue
		}
		if d.Requester != from.String() {
			break
		}
		pv.mu.Lock()
		started := pv.startedDeals[d.ID]
		_, checking := pv.starting[d.ID]
		pv.mu.Unlock()
		if started || checking || !pv.market.ReleaseUnstarted(d.ID) {
			return nil, fmt.Errorf("deal %s has started its job: cancel the job instead", short(d.ID))
		}
		pv.log.Info("deal released by its requester before its start", "deal_id", short(d.ID), "requester", from)
		return []byte("ok"), nil
	}
	return nil, fmt.Errorf("no deal %s of yours here", r.ID)
}

// errDepositShort: a channel's deposit does not cover a deal's start.
// fundsRefusal is the words of it the requester recognises.
var errDepositShort = errors.New(fundsRefusal)

const fundsRefusal = "the channel's deposit does not cover the deal"

// doneStarting ends a start's claim on its channel's deposit: the job
// runs now (and is counted as running) or failed to start.
func (pv *Provider) doneStarting(dealID string) {
	pv.mu.Lock()
	delete(pv.starting, dealID)
	pv.mu.Unlock()
}

// submitProvided claims a checked deal (in the market and on disk) and
// submits its job on the deal's GPUs; a job that cannot be submitted
// gives the GPUs back.
func (pv *Provider) submitProvided(deal *market.Deal, spec jobs.Spec, opts jobs.SubmitOptions) (*jobs.Job, error) {
	if err := pv.market.Claim(deal.ID); err != nil {
		return nil, err
	}
	if err := pv.claimDeal(deal.ID); err != nil {
		return nil, err
	}
	spec.Resources.GPUs = len(deal.GPUs)
	if spec.Resources.DiskMiB == 0 {
		// A job that gave no disk bound gets the provider's default
		// (market.default_disk_mib), decided when the deal was made.
		if mib, ok := pv.market.DiskBound(deal.ID); ok {
			spec.Resources.DiskMiB = mib
		}
	}
	opts.GPUs = deal.GPUs
	// Preparing is unpaid (vouchers are due from the job's start) while
	// the deal's GPUs are held: it is kept short (Config.MaxPrepare).
	opts.PrepareTimeout = pv.maxPrepare()
	j, err := pv.jobs.Submit(spec, opts)
	if err != nil {
		pv.market.Release(deal.ID)
		return nil, err
	}
	return j, nil
}

// checkStart is the provider's check before a market job prepares: the
// deal must be ours and the requester's, the spec the deal's, and the
// channel must hold the deal's maximum cost beyond what is owed.
func (pv *Provider) checkStart(ctx context.Context, from peer.ID, sr startRequest) (*market.Deal, error) {
	// The ID names the job's directory here: refused before anything else.
	if sr.JobID != "" {
		if err := checkJobID(sr.JobID); err != nil {
			return nil, fmt.Errorf("start request: job_id: %w", err)
		}
	}
	pv.mu.Lock()
	replay := pv.startedDeals[sr.DealID]
	pv.mu.Unlock()
	if replay {
		return nil, fmt.Errorf("deal %s already started its job here: a deal starts one job, once; make a new deal for another", short(sr.DealID))
	}
	if pv.jobs == nil {
		return nil, fmt.Errorf("this provider cannot run jobs: %v", pv.jobsErr)
	}
	var deal *market.Deal
	for _, d := range pv.market.Deals() {
		if d.ID == sr.DealID {
			deal = &d
			break
		}
	}
	switch {
	case deal == nil:
		return nil, fmt.Errorf("no deal %s here", sr.DealID)
	case deal.Requester != from.String():
		return nil, fmt.Errorf("deal %s is not with %s", short(deal.ID), from)
	}
	if h, err := sr.Spec.Hash(); err != nil || h != deal.SpecHash {
		return nil, fmt.Errorf("the spec is not the one deal %s was made for (its %s hash differs): send the spec the offer named", short(deal.ID), jobs.SpecHashVersion)
	}
	if err := sr.Spec.Validate(); err != nil {
		return nil, err
	}
	if err := pv.withinTerms(deal, &sr.Spec); err != nil {
		return nil, err
	}
	// Only a deposit at this provider's own confirmation depth counts: a
	// deposit in a block that a reorg takes back pays nothing.
	ch, err := pv.chain.ConfirmedChannel(ctx, common.HexToAddress(deal.RequesterWallet), pv.wallet.Address(), dealToken(*deal))
	if err != nil {
		return nil, fmt.Errorf("reading the channel on chain to check the deposit (try again shortly): %w", err)
	}
	if ch.ClosesAt != 0 {
		// Its payer may withdraw at ClosesAt, whatever it vouched by then.
		return nil, fmt.Errorf("channel %s is closing (its payer may withdraw at %s): no job starts on it; deposit into a new channel after withdrawing",
			ch.ID, time.Unix(int64(ch.ClosesAt), 0).UTC().Format(time.RFC3339))
	}
	if err := pv.depositCovers(ch.ID, ch.Deposited.Big(), ch.Redeemed.Big(), deal); err != nil {
		if latest, lerr := pv.chain.Channel(ctx, ch.Payer, ch.Payee, ch.Token); lerr == nil && latest.Deposited.Cmp(ch.Deposited.Big()) > 0 {
			// More is deposited than is final yet: the requester asks
			// again once it is; the deal stays.
			return nil, fmt.Errorf("%w: %s is deposited on channel %s, %s of it at this provider's %d confirmations; start again once the rest is final",
				errNotFinal, latest.Deposited, ch.ID, ch.Deposited, pv.chain.Confirmations())
		}
		// Not the requester's fault as such (its own starts raced, a rank
		// it just cancelled is still stopping here, or the chain is
		// behind): the GPUs go back now, for a start or a gang's prepare
		// alike, and no lapse is counted against it.
		pv.market.Release(deal.ID)
		return nil, err
	}
	return deal, nil
}

// errNotFinal: a deposit that would cover a start is not yet at the
// provider's confirmation depth.
var errNotFinal = errors.New(notFinalRefusal)

const notFinalRefusal = "the deposit is not final yet"

// depositCovers checks that a channel's deposit holds a new deal's most
// cost beyond what is owed on it, what its running jobs may still cost
// and what the starts being checked on it may cost: every job on one
// channel is paid from one deposit. A deal that fits is counted as
// starting, in the same lock, until doneStarting: two starts checked at
// once never both spend one deposit.
func (pv *Provider) depositCovers(ch common.Hash, deposited, redeemed *big.Int, deal *market.Deal) error {
	owed := new(big.Int).Set(redeemed)
	if v := pv.vouchers.get(pv.vouchers.data.Received, ch); v != nil && v.CumulativeAmount.Cmp(owed) > 0 {
		owed = v.CumulativeAmount.Big()
	}
	committed, running := new(big.Int), 0
	pv.mu.Lock()
	defer pv.mu.Unlock()
	for id := range pv.live {
		d := pv.provided[id]
		if pv.providedChannel(d) != ch {
			continue
		}
		// A job that has ended but whose watch has not yet seen it
		// (it looks every quarter interval) costs what it ran, not its
		// whole deal: a requester who starts again at once after a
		// canceled gang is not refused for the canceled ranks.
		if j, err := pv.jobsGet(id); err == nil && j.State.Terminal() {
			committed.Add(committed, ranCost(d, j.StartedAt, j.FinishedAt, jobPaused(j)))
			continue
		}
		committed.Add(committed, dealCost(d, time.Duration(d.MaxDurationS)*time.Second))
		running++
	}
	for id, d := range pv.starting {
		if id != deal.ID && pv.providedChannel(d) == ch {
			committed.Add(committed, dealCost(d, time.Duration(d.MaxDurationS)*time.Second))
			running++
		}
	}
	// With jobs running, what was owed before them is the floor; what
	// they have been paid since is inside their committed cost.
	if f := pv.floor[ch]; running > 0 && f != nil {
		owed = new(big.Int).Set(f)
	}
	need := dealCost(*deal, time.Duration(deal.MaxDurationS)*time.Second)
	free := new(big.Int).Sub(deposited, owed)
	free.Sub(free, committed)
	if free.Cmp(need) < 0 {
		if running > 0 {
			return fmt.Errorf("%w: the channel holds %s base units beyond what is owed and what its %d running or starting job(s) may still cost (%s); the deal needs %s: deposit more", errDepositShort, free, running, committed, need)
		}
		return fmt.Errorf("%w: the channel holds %s base units beyond what is owed; the deal needs %s: deposit more", errDepositShort, free, need)
	}
	pv.starting[deal.ID] = *deal
	return nil
}

// claimDeal records that a deal started its job, on disk before the job
// starts; a deal already recorded is refused (a replayed start).
func (pv *Provider) claimDeal(id string) error {
	pv.mu.Lock()
	defer pv.mu.Unlock()
	if pv.startedDeals[id] {
		return fmt.Errorf("deal %s already started its job here: a deal starts one job, once; make a new deal for another", short(id))
	}
	ids := make([]string, 0, len(pv.startedDeals)+1)
	for d := range pv.startedDeals {
		ids = append(ids, d)
	}
	ids = append(ids, id)
	sort.Strings(ids)
	b, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("record started deal: %w", err)
	}
	if err := atomicfile.WriteFile(pv.startedPath, b, 0o600); err != nil {
		return fmt.Errorf("record started deal %s: %w", short(id), err)
	}
	pv.startedDeals[id] = true
	return nil
}

// startedProvided records a job this node runs for a deal, on disk
// first (a restarted provider must still know whose job it is, and what
// pays for it), and watches it. A record that cannot be written stops
// the job: it would run unwatched after a restart.
func (pv *Provider) startedProvided(j *jobs.Job, deal market.Deal) error {
	if err := pv.saveProvided(j.ID, deal); err != nil {
		pv.jobs.Fail(j.ID, "the provider could not record the deal: "+err.Error())
		if pv.market != nil {
			pv.market.Release(deal.ID)
		}
		return err
	}
	if pv.market != nil {
		pv.market.Started(deal.ID)
	}
	pv.trackProvided(j.ID, deal)
	pv.spawn(func(ctx context.Context) { pv.watchProvided(ctx, j.ID, deal) })
	return nil
}

func (pv *Provider) providedDir() string { return filepath.Join(pv.cfg.Dir, "provided") }

// saveProvided writes the deal of a job this node runs, as
// provided/ID.json.
func (pv *Provider) saveProvided(id string, deal market.Deal) error {
	if err := checkJobID(id); err != nil {
		return fmt.Errorf("provided job: %w", err)
	}
	b, err := json.Marshal(deal)
	if err == nil {
		err = os.MkdirAll(pv.providedDir(), 0o700)
	}
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(pv.providedDir(), id+".json"), b, 0o600)
	}
	if err != nil {
		return fmt.Errorf("save provided job %s: %w", id, err)
	}
	return nil
}

// loadProvided reads the deals of the jobs this node runs for others and
// watches again those still running: their requesters keep following and
// paying them. What was owed before the restart is the voucher held; the
// run time owed for starts now.
func (pv *Provider) loadProvided() error {
	entries, err := os.ReadDir(pv.providedDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("provided jobs: %w", err)
	}
	var bad []string
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(pv.providedDir(), e.Name()))
		var deal market.Deal
		if err == nil {
			err = json.Unmarshal(b, &deal)
		}
		if err == nil {
			err = checkJobID(id)
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", e.Name(), err))
			continue
		}
		pv.mu.Lock()
		pv.provided[id] = deal
		pv.mu.Unlock()
		if pv.jobs == nil {
			continue
		}
		if j, err := pv.jobs.Get(id); err == nil && !j.State.Terminal() {
			pv.trackProvided(id, deal)
			pv.mu.Lock()
			pv.runSince[id] = time.Now()
			if j.PausedAt != nil {
				// Paused for want of pay before the restart: still
				// paused, and resumed (or stopped) as before.
				pv.pausedSince[id] = *j.PausedAt
				pv.runSince[id] = *j.PausedAt
			}
			pv.mu.Unlock()
			pv.spawn(func(ctx context.Context) { pv.watchProvided(ctx, id, deal) })
			pv.log.Info("watching a provided job again", "job_id", id, "deal_id", short(deal.ID), "requester", deal.Requester)
		}
	}
	if len(bad) > 0 {
		// Said at every start until repaired: such a job's requester can
		// no longer follow it here.
		pv.log.Error("provided job records unreadable; their jobs are not watched", "files", bad, "dir", pv.providedDir())
	}
	return nil
}

// providedChannel is the channel that pays for a deal this node provides.
func (pv *Provider) providedChannel(deal market.Deal) common.Hash {
	return chain.ChannelID(common.HexToAddress(deal.RequesterWallet), pv.wallet.Address(), dealToken(deal))
}

// trackProvided starts the money check of a provided job: when it is the
// only running job on its channel, what was owed before it is what the
// voucher held now says.
func (pv *Provider) trackProvided(id string, deal market.Deal) {
	ch := pv.providedChannel(deal)
	held := new(big.Int)
	if v := pv.vouchers.get(pv.vouchers.data.Received, ch); v != nil {
		held = v.CumulativeAmount.Big()
	}
	pv.mu.Lock()
	defer pv.mu.Unlock()
	others := false
	for o := range pv.live {
		if pv.providedChannel(pv.provided[o]) == ch {
			others = true
		}
	}
	if !others {
		pv.floor[ch] = held
	}
	pv.provided[id] = deal
	pv.live[id] = true
	delete(pv.starting, deal.ID) // counted as running from now on
}

// endProvided ends the money check of a provided job: what it cost (its
// run time here, within the deal) is owed before the channel's other jobs.
func (pv *Provider) endProvided(id string, started, finished *time.Time) {
	var paused time.Duration
	if pv.jobs != nil {
		if j, err := pv.jobs.Get(id); err == nil {
			paused = jobPaused(j)
		}
	}
	pv.mu.Lock()
	defer pv.mu.Unlock()
	if !pv.live[id] {
		return
	}
	deal := pv.provided[id]
	ch := pv.providedChannel(deal)
	delete(pv.live, id)
	delete(pv.runSince, id)
	delete(pv.pausedSince, id)
	if pv.floor[ch] != nil {
		pv.floor[ch] = new(big.Int).Add(pv.floor[ch], payable(deal, ranCost(deal, started, finished, paused)))
	}
}

// The provider's side of a chain outage. A voucher whose channel cannot
// be read (the RPC is down) is held unchecked: its signature, payer,
// payee, chain and escrow are checked already, its deposit is not. It
// counts toward a job's pay for at most the outage grace, from the first
// failed read; it is checked as soon as the chain answers, and one that
// does not fit its deposit is refused then, so the job stops as any job
// whose pay stops. What a provider risks is the run time of the grace on
// vouchers that may exceed the deposit: a requester can only gain by it
// if it also has its deposit withdrawn or spent elsewhere before the
// outage ends, which it cannot time.
