package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/internal/atomicfile"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p/overlay"
	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The provider's side: a start checked against its deal, the job watched
// (its pay, its GPUs, its deal's duration), vouchers kept, channels
// watched for a close and redeemed.

// handleJobStart is the provider's side: the deal must be ours and the
// requester's, and the channel must hold the deal's maximum cost.
func (m *Manager) handleJobStart(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	var sr startRequest
	if err := json.Unmarshal(req, &sr); err != nil {
		return nil, fmt.Errorf("start request: %w", err)
	}
	deal, err := m.checkStart(ctx, from, sr)
	if err != nil {
		if errors.Is(err, errDepositShort) && deal != nil {
			// Not the requester's fault as such (its own starts raced,
			// or the chain is behind): the GPUs go back now, and no
			// lapse is counted against it.
			m.market.Release(deal.ID)
		}
		return nil, err
	}
	defer m.doneStarting(deal.ID)
	j, err := m.submitProvided(deal, sr.Spec, jobs.SubmitOptions{ID: sr.JobID})
	if err != nil {
		return nil, err
	}
	if err := m.startedProvided(j, *deal); err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// maxPrepare bounds a market job's preparation here (Config.MaxPrepare;
// zero means 5 min).
func (m *Manager) maxPrepare() time.Duration {
	if m.cfg.MaxPrepare > 0 {
		return m.cfg.MaxPrepare
	}
	return 5 * time.Minute
}

// handleDealRelease frees the GPUs of a deal its requester will not
// start. Only the deal's requester may, and only before its job starts.
func (m *Manager) handleDealRelease(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	var r jobIDRequest
	if err := json.Unmarshal(req, &r); err != nil {
		return nil, fmt.Errorf("release request: %w", err)
	}
	for _, d := range m.market.Deals() {
		if d.ID != r.ID {
			continue
		}
		if d.Requester != from.String() {
			break
		}
		m.remote.mu.Lock()
		started := m.remote.startedDeals[d.ID]
		_, checking := m.remote.starting[d.ID]
		m.remote.mu.Unlock()
		if started || checking || !m.market.ReleaseUnstarted(d.ID) {
			return nil, fmt.Errorf("deal %s has started its job: cancel the job instead", short(d.ID))
		}
		m.log.Info("deal released by its requester before its start", "deal_id", short(d.ID), "requester", from)
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
func (m *Manager) doneStarting(dealID string) {
	m.remote.mu.Lock()
	delete(m.remote.starting, dealID)
	m.remote.mu.Unlock()
}

// submitProvided claims a checked deal (in the market and on disk) and
// submits its job on the deal's GPUs; a job that cannot be submitted
// gives the GPUs back.
func (m *Manager) submitProvided(deal *market.Deal, spec jobs.Spec, opts jobs.SubmitOptions) (*jobs.Job, error) {
	if err := m.market.Claim(deal.ID); err != nil {
		return nil, err
	}
	if err := m.claimDeal(deal.ID); err != nil {
		return nil, err
	}
	spec.Resources.GPUs = len(deal.GPUs)
	if spec.Resources.DiskMiB == 0 {
		// A job that gave no disk bound gets the provider's default
		// (market.default_disk_mib), decided when the deal was made.
		if mib, ok := m.market.DiskBound(deal.ID); ok {
			spec.Resources.DiskMiB = mib
		}
	}
	opts.GPUs = deal.GPUs
	// Preparing is unpaid (vouchers are due from the job's start) while
	// the deal's GPUs are held: it is kept short (Config.MaxPrepare).
	opts.PrepareTimeout = m.maxPrepare()
	j, err := m.jobs.Submit(spec, opts)
	if err != nil {
		m.market.Release(deal.ID)
		return nil, err
	}
	return j, nil
}

// checkStart is the provider's check before a market job prepares: the
// deal must be ours and the requester's, the spec the deal's, and the
// channel must hold the deal's maximum cost beyond what is owed.
func (m *Manager) checkStart(ctx context.Context, from peer.ID, sr startRequest) (*market.Deal, error) {
	// The ID names the job's directory here: refused before anything else.
	if sr.JobID != "" {
		if err := checkJobID(sr.JobID); err != nil {
			return nil, fmt.Errorf("start request: job_id: %w", err)
		}
	}
	m.remote.mu.Lock()
	replay := m.remote.startedDeals[sr.DealID]
	m.remote.mu.Unlock()
	if replay {
		return nil, fmt.Errorf("deal %s already started its job here: a deal starts one job, once; make a new deal for another", short(sr.DealID))
	}
	if m.jobs == nil {
		return nil, fmt.Errorf("this provider cannot run jobs: %v", m.jobsErr)
	}
	var deal *market.Deal
	for _, d := range m.market.Deals() {
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
	if err := m.withinTerms(deal, &sr.Spec); err != nil {
		return nil, err
	}
	// Only a deposit at this provider's own confirmation depth counts: a
	// deposit in a block that a reorg takes back pays nothing.
	ch, err := m.chain.ConfirmedChannel(ctx, common.HexToAddress(deal.RequesterWallet), m.wallet.Address(), dealToken(*deal))
	if err != nil {
		return nil, fmt.Errorf("reading the channel on chain to check the deposit (try again shortly): %w", err)
	}
	if ch.ClosesAt != 0 {
		// Its payer may withdraw at ClosesAt, whatever it vouched by then.
		return nil, fmt.Errorf("channel %s is closing (its payer may withdraw at %s): no job starts on it; deposit into a new channel after withdrawing",
			ch.ID, time.Unix(int64(ch.ClosesAt), 0).UTC().Format(time.RFC3339))
	}
	if err := m.depositCovers(ch.ID, ch.Deposited.Big(), ch.Redeemed.Big(), deal); err != nil {
		if latest, lerr := m.chain.Channel(ctx, ch.Payer, ch.Payee, ch.Token); lerr == nil && latest.Deposited.Cmp(ch.Deposited.Big()) > 0 {
			// More is deposited than is final yet: the requester asks
			// again once it is; the deal stays.
			return nil, fmt.Errorf("%w: %s is deposited on channel %s, %s of it at this provider's %d confirmations; start again once the rest is final",
				errNotFinal, latest.Deposited, ch.ID, ch.Deposited, m.chain.Confirmations())
		}
		return deal, err
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
func (m *Manager) depositCovers(ch common.Hash, deposited, redeemed *big.Int, deal *market.Deal) error {
	owed := new(big.Int).Set(redeemed)
	if v := m.vouchers.get(m.vouchers.data.Received, ch); v != nil && v.CumulativeAmount.Cmp(owed) > 0 {
		owed = v.CumulativeAmount.Big()
	}
	committed, running := new(big.Int), 0
	m.remote.mu.Lock()
	defer m.remote.mu.Unlock()
	for id := range m.remote.live {
		d := m.remote.provided[id]
		if m.providedChannel(d) != ch {
			continue
		}
		// A job that has ended but whose watch has not yet seen it
		// (it looks every quarter interval) costs what it ran, not its
		// whole deal: a requester who starts again at once after a
		// canceled gang is not refused for the canceled ranks.
		if j, err := m.jobsGet(id); err == nil && j.State.Terminal() {
			committed.Add(committed, ranCost(d, j.StartedAt, j.FinishedAt, jobPaused(j)))
			continue
		}
		committed.Add(committed, dealCost(d, time.Duration(d.MaxDurationS)*time.Second))
		running++
	}
	for id, d := range m.remote.starting {
		if id != deal.ID && m.providedChannel(d) == ch {
			committed.Add(committed, dealCost(d, time.Duration(d.MaxDurationS)*time.Second))
			running++
		}
	}
	// With jobs running, what was owed before them is the floor; what
	// they have been paid since is inside their committed cost.
	if f := m.remote.floor[ch]; running > 0 && f != nil {
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
	m.remote.starting[deal.ID] = *deal
	return nil
}

// claimDeal records that a deal started its job, on disk before the job
// starts; a deal already recorded is refused (a replayed start).
func (m *Manager) claimDeal(id string) error {
	r := m.remote
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.startedDeals[id] {
		return fmt.Errorf("deal %s already started its job here: a deal starts one job, once; make a new deal for another", short(id))
	}
	ids := make([]string, 0, len(r.startedDeals)+1)
	for d := range r.startedDeals {
		ids = append(ids, d)
	}
	ids = append(ids, id)
	sort.Strings(ids)
	b, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("record started deal: %w", err)
	}
	if err := atomicfile.WriteFile(r.startedPath, b, 0o600); err != nil {
		return fmt.Errorf("record started deal %s: %w", short(id), err)
	}
	r.startedDeals[id] = true
	return nil
}

// startedProvided records a job this node runs for a deal, on disk
// first (a restarted provider must still know whose job it is, and what
// pays for it), and watches it. A record that cannot be written stops
// the job: it would run unwatched after a restart.
func (m *Manager) startedProvided(j *jobs.Job, deal market.Deal) error {
	if err := m.saveProvided(j.ID, deal); err != nil {
		m.jobs.Fail(j.ID, "the provider could not record the deal: "+err.Error())
		if m.market != nil {
			m.market.Release(deal.ID)
		}
		return err
	}
	if m.market != nil {
		m.market.Started(deal.ID)
	}
	m.trackProvided(j.ID, deal)
	m.spawn(func(ctx context.Context) { m.watchProvided(ctx, j.ID, deal) })
	return nil
}

func (m *Manager) providedDir() string { return filepath.Join(m.cfg.Dir, "provided") }

// saveProvided writes the deal of a job this node runs, as
// provided/ID.json.
func (m *Manager) saveProvided(id string, deal market.Deal) error {
	if err := checkJobID(id); err != nil {
		return fmt.Errorf("provided job: %w", err)
	}
	b, err := json.Marshal(deal)
	if err == nil {
		err = os.MkdirAll(m.providedDir(), 0o700)
	}
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(m.providedDir(), id+".json"), b, 0o600)
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
func (m *Manager) loadProvided() error {
	entries, err := os.ReadDir(m.providedDir())
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
		b, err := os.ReadFile(filepath.Join(m.providedDir(), e.Name()))
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
		m.remote.mu.Lock()
		m.remote.provided[id] = deal
		m.remote.mu.Unlock()
		if m.jobs == nil {
			continue
		}
		if j, err := m.jobs.Get(id); err == nil && !j.State.Terminal() {
			m.trackProvided(id, deal)
			m.remote.mu.Lock()
			m.remote.runSince[id] = time.Now()
			if j.PausedAt != nil {
				// Paused for want of pay before the restart: still
				// paused, and resumed (or stopped) as before.
				m.remote.pausedSince[id] = *j.PausedAt
				m.remote.runSince[id] = *j.PausedAt
			}
			m.remote.mu.Unlock()
			m.spawn(func(ctx context.Context) { m.watchProvided(ctx, id, deal) })
			m.log.Info("watching a provided job again", "job_id", id, "deal_id", short(deal.ID), "requester", deal.Requester)
		}
	}
	if len(bad) > 0 {
		// Said at every start until repaired: such a job's requester can
		// no longer follow it here.
		m.log.Error("provided job records unreadable; their jobs are not watched", "files", bad, "dir", m.providedDir())
	}
	return nil
}

// providedChannel is the channel that pays for a deal this node provides.
func (m *Manager) providedChannel(deal market.Deal) common.Hash {
	return chain.ChannelID(common.HexToAddress(deal.RequesterWallet), m.wallet.Address(), dealToken(deal))
}

// trackProvided starts the money check of a provided job: when it is the
// only running job on its channel, what was owed before it is what the
// voucher held now says.
func (m *Manager) trackProvided(id string, deal market.Deal) {
	ch := m.providedChannel(deal)
	held := new(big.Int)
	if v := m.vouchers.get(m.vouchers.data.Received, ch); v != nil {
		held = v.CumulativeAmount.Big()
	}
	r := m.remote
	r.mu.Lock()
	defer r.mu.Unlock()
	others := false
	for o := range r.live {
		if m.providedChannel(r.provided[o]) == ch {
			others = true
		}
	}
	if !others {
		r.floor[ch] = held
	}
	r.provided[id] = deal
	r.live[id] = true
	delete(r.starting, deal.ID) // counted as running from now on
}

// endProvided ends the money check of a provided job: what it cost (its
// run time here, within the deal) is owed before the channel's other jobs.
func (m *Manager) endProvided(id string, started, finished *time.Time) {
	var paused time.Duration
	if m.jobs != nil {
		if j, err := m.jobs.Get(id); err == nil {
			paused = jobPaused(j)
		}
	}
	r := m.remote
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.live[id] {
		return
	}
	deal := r.provided[id]
	ch := m.providedChannel(deal)
	delete(r.live, id)
	delete(r.runSince, id)
	delete(r.pausedSince, id)
	if r.floor[ch] != nil {
		r.floor[ch] = new(big.Int).Add(r.floor[ch], ranCost(deal, started, finished, paused))
	}
}

// jobPaused is how long a job was paused, up to its end.
func jobPaused(j *jobs.Job) time.Duration {
	end := time.Now()
	if j.FinishedAt != nil {
		end = *j.FinishedAt
	}
	return j.Paused(end)
}

// ranCost is what an ended job owes: its run time here less its pauses,
// within its deal's duration; nothing for a job that never ran.
func ranCost(deal market.Deal, started, finished *time.Time, paused time.Duration) *big.Int {
	if started == nil || finished == nil {
		return new(big.Int)
	}
	// Paused for want of pay: owed by no one, as the requester bills it.
	return dealCost(deal, min(max(finished.Sub(*started)-paused, 0), time.Duration(deal.MaxDurationS)*time.Second))
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

// voucherCheckWait bounds the chain read behind a voucher's check; a
// read that takes longer is an outage for the voucher's purpose.
const voucherCheckWait = 2 * time.Second

// outageGrace is how long unchecked vouchers count (Config.OutageGrace;
// zero means 10 min).
func (m *Manager) outageGrace() time.Duration {
	if m.cfg.OutageGrace > 0 {
		return m.cfg.OutageGrace
	}
	return 10 * time.Minute
}

// holdUnchecked keeps v as the channel's unchecked voucher when the
// chain cannot be read and the outage is within its grace.
func (m *Manager) holdUnchecked(v *chain.Voucher) bool {
	r := m.remote
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.chainDown.IsZero() {
		r.chainDown = now
	}
	if now.Sub(r.chainDown) > m.outageGrace() {
		return false
	}
	if old := r.unchecked[v.Channel]; old == nil || old.CumulativeAmount.Cmp(v.CumulativeAmount.Big()) < 0 {
		r.unchecked[v.Channel] = v
		m.log.Warn("the chain cannot be read: voucher held unchecked within the outage grace", "channel", v.Channel,
			"amount", v.CumulativeAmount, "down_for", now.Sub(r.chainDown).Round(time.Second), "grace", m.outageGrace())
	}
	return true
}

// chainAnswered ends an outage: a read of the chain worked.
func (m *Manager) chainAnswered() {
	m.remote.mu.Lock()
	if !m.remote.chainDown.IsZero() {
		m.log.Info("the chain answers again", "down_for", time.Since(m.remote.chainDown).Round(time.Second))
	}
	m.remote.chainDown = time.Time{}
	m.remote.mu.Unlock()
}

// ChainDownSince is when this provider's reads of the chain began to
// fail, zero while they work.
func (m *Manager) ChainDownSince() time.Time {
	m.remote.mu.Lock()
	defer m.remote.mu.Unlock()
	return m.remote.chainDown
}

// recheckUnchecked checks the unchecked vouchers against the chain once
// it answers: each is kept, or refused with the reason.
func (m *Manager) recheckUnchecked(ctx context.Context) {
	m.remote.mu.Lock()
	pending := make([]*chain.Voucher, 0, len(m.remote.unchecked))
	for _, v := range m.remote.unchecked {
		pending = append(pending, v)
	}
	m.remote.mu.Unlock()
	for _, v := range pending {
		ch, err := m.chain.Channel(ctx, v.Payer, v.Payee, v.Token)
		if err != nil {
			return // still down: coverage keeps counting within the grace
		}
		m.chainAnswered()
		m.remote.mu.Lock()
		if m.remote.unchecked[v.Channel] == v {
			delete(m.remote.unchecked, v.Channel)
		}
		m.remote.mu.Unlock()
		if v.CumulativeAmount.Cmp(ch.Deposited.Big()) > 0 {
			why := fmt.Sprintf("voucher refused once the chain answered: cumulative amount %s exceeds channel %s's deposit of %s", v.CumulativeAmount, v.Channel, ch.Deposited)
			m.remote.mu.Lock()
			m.remote.refused[v.Channel] = why
			m.remote.mu.Unlock()
			m.log.Warn("unchecked voucher refused", "channel", v.Channel, "why", why)
			continue
		}
		if _, err := m.vouchers.keepIf(m.vouchers.data.Received, v, func(old *chain.Voucher) bool {
			return old == nil || old.CumulativeAmount.Cmp(v.CumulativeAmount.Big()) < 0
		}); err != nil {
			m.log.Error("unchecked voucher checked but not kept", "channel", v.Channel, "err", err)
		}
	}
}

// coverage is the money check of a channel at now: what its best voucher
// holds, what it owes (what was owed before its running jobs, plus each
// one's price × its run time here so far), and the slack allowed: two
// voucher intervals of each running job (the requester pays once an
// interval, for the time it saw, from when it first saw the job run).
func (m *Manager) coverage(ch common.Hash, now time.Time) (held, owed, slack *big.Int) {
	held = new(big.Int)
	if v := m.vouchers.get(m.vouchers.data.Received, ch); v != nil {
		held = v.CumulativeAmount.Big()
	}
	r := m.remote
	r.mu.Lock()
	defer r.mu.Unlock()
	if v := r.unchecked[ch]; v != nil && !r.chainDown.IsZero() && now.Sub(r.chainDown) <= m.outageGrace() && v.CumulativeAmount.Cmp(held) > 0 {
		held = v.CumulativeAmount.Big() // within the outage grace (holdUnchecked)
	}
	owed, slack = new(big.Int), new(big.Int)
	if f := r.floor[ch]; f != nil {
		owed.Set(f)
	}
	for id := range r.live {
		deal := r.provided[id]
		if m.providedChannel(deal) != ch {
			continue
		}
		since, ok := r.runSince[id]
		if !ok {
			continue // not running yet: nothing owed
		}
		until := now
		if p, paused := r.pausedSince[id]; paused && p.Before(until) {
			until = p // a paused job's time is owed by no one
		}
		owed.Add(owed, dealCost(deal, min(max(until.Sub(since), 0), time.Duration(deal.MaxDurationS)*time.Second)))
		slack.Add(slack, dealCost(deal, paySlack(r.interval)))
	}
	return held, owed, slack
}

// paySlack is the unpaid run time a provider allows each running job: the
// requester pays once an interval (for what it saw, plus an interval), so
// an honest one is up to an interval behind just before it pays; on top,
// a margin for the voucher's delivery, a quarter interval and at least 1 s.
func paySlack(interval time.Duration) time.Duration {
	return interval + max(interval/4, time.Second)
}

// unpaid says why a running provided job must stop for want of pay, or
// "" while the channel's vouchers keep up with its jobs.
func (m *Manager) unpaid(id string, now time.Time) string {
	m.remote.mu.Lock()
	deal, ok := m.remote.provided[id]
	m.remote.mu.Unlock()
	if !ok {
		return ""
	}
	ch := m.providedChannel(deal)
	held, owed, slack := m.coverage(ch, now)
	short := new(big.Int).Sub(owed, held)
	if short.Cmp(slack) <= 0 {
		return ""
	}
	m.remote.mu.Lock()
	why := m.remote.refused[ch]
	m.remote.mu.Unlock()
	reason := fmt.Sprintf("the requester's vouchers stopped covering the job: channel %s holds %s base units, its running jobs owe %s (%s short, %s allowed)",
		ch, held, owed, short, slack)
	if why != "" {
		reason += "; last voucher refused: " + why
	}
	return reason
}

// watchProvided stops a job whose vouchers stop covering it (see
// paySlack), or whose GPU fails, and frees the deal's GPUs when it ends.
func (m *Manager) watchProvided(ctx context.Context, id string, deal market.Deal) {
	defer func() {
		if m.market != nil {
			m.market.Release(deal.ID)
		}
	}()
	defer func() { // a distributed rank's port is free again
		m.remote.mu.Lock()
		if p, ok := m.remote.portOf[id]; ok {
			delete(m.remote.ports, p)
			delete(m.remote.portOf, id)
		}
		nr, onNet := m.remote.netOf[id]
		delete(m.remote.netOf, id)
		m.remote.mu.Unlock()
		if onNet && m.p2p != nil {
			m.p2p.DisallowRelay(nr.id) // the job relay serves its network no more
		}
	}()
	changes, unsub := m.gpus.Subscribe()
	defer unsub()
	ours := map[string]bool{}
	for _, u := range deal.GPUs {
		ours[u] = true
	}
	// Checked four times an interval: a job whose pay stops runs at most a
	// quarter interval past its slack.
	t := time.NewTicker(max(m.remote.interval/4, 100*time.Millisecond))
	defer t.Stop()
	var started, finished *time.Time
	stopping := false // the daemon stops: the job goes on, watched again at the next start
	defer func() {
		if !stopping {
			m.endProvided(id, started, finished)
			if m.portServer != nil {
				m.portServer.CloseJob(id)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			stopping = true
			return
		case c := <-changes:
			if ours[c.UUID] && c.To == gpu.Unhealthy {
				m.log.Warn("a job's GPU failed; stopping the job", "job_id", id, "uuid", c.UUID, "reason", c.Reason)
				m.jobs.Fail(id, fmt.Sprintf("GPU %s became unhealthy: %s", c.UUID, c.Reason))
			}
			continue
		case <-t.C:
		}
		j, err := m.jobs.Get(id)
		if err != nil {
			return
		}
		started, finished = j.StartedAt, j.FinishedAt
		if j.State.Terminal() {
			return
		}
		// Nothing is owed before the job runs (a gang's rank waits for
		// the others, an image loads): the vouchers are due from its start.
		if j.StartedAt != nil {
			m.remote.mu.Lock()
			if _, ok := m.remote.runSince[id]; !ok {
				m.remote.runSince[id] = *j.StartedAt
			}
			m.remote.mu.Unlock()
		}
		if j.State != jobs.Running {
			continue
		}
		// The deal pays for its duration and no more: a service (which
		// has no execution limit of its own) ends with it. A batch job times
		// out first (its execution fits the deal): an interval later.
		if max := time.Duration(deal.MaxDurationS) * time.Second; j.StartedAt != nil && time.Since(*j.StartedAt) >= max+m.remote.interval {
			why := fmt.Sprintf("the deal's duration (%s) ended: a job runs for its deal's duration at most; start a new one to go on", max)
			m.log.Info("deal's duration ended; stopping the job", "job_id", id, "deal_id", short(deal.ID))
			if f, err := m.jobs.Fail(id, why); err == nil {
				started, finished = f.StartedAt, f.FinishedAt
			}
			return
		}
		if why := m.unpaid(id, time.Now()); why != "" {
			if m.pauseUnpaid(ctx, id, why) {
				continue // paused within its grace: pay may resume
			}
			m.log.Warn("vouchers stopped; stopping the job", "job_id", id, "requester", deal.Requester, "why", why)
			if f, err := m.jobs.Fail(id, why); err == nil {
				started, finished = f.StartedAt, f.FinishedAt
			}
			return
		}
		if why := m.resumePaid(ctx, id); why != "" {
			m.log.Warn("paused and not paid up within the grace; stopping the job", "job_id", id, "requester", deal.Requester, "why", why)
			if f, err := m.jobs.Fail(id, why); err == nil {
				started, finished = f.StartedAt, f.FinishedAt
			}
			return
		}
	}
}

// pauseGrace is how long a job whose pay stopped stays paused before it
// is stopped (Config.PauseGrace; zero means 2 min).
func (m *Manager) pauseGrace() time.Duration {
	if m.cfg.PauseGrace > 0 {
		return m.cfg.PauseGrace
	}
	return 2 * time.Minute
}

// pauseUnpaid pauses a job whose vouchers stopped covering it, its GPUs
// still held, rather than stopping it: a requester whose daemon was away
// longer than its prepay may still come back and pay. It reports whether
// the job stays (paused, within the grace); the paused time is owed by
// no one (coverage stops counting it, and the requester bills none).
func (m *Manager) pauseUnpaid(ctx context.Context, id, why string) bool {
	m.remote.mu.Lock()
	_, paused := m.remote.pausedSince[id]
	m.remote.mu.Unlock()
	if m.pauseGrace() < 0 {
		return false
	}
	// The grace is for the whole job, every pause together: a requester
	// that pays a little now and then cannot hold the GPUs paused for
	// the deal's whole duration.
	j, err := m.jobs.Get(id)
	if err != nil || j.Paused(time.Now()) >= m.pauseGrace() {
		return false
	}
	if paused {
		return true
	}
	if _, err := m.jobs.Pause(ctx, id, why); err != nil {
		m.log.Warn("could not pause an unpaid job; stopping it", "job_id", id, "err", err)
		return false
	}
	m.remote.mu.Lock()
	m.remote.pausedSince[id] = time.Now()
	m.remote.mu.Unlock()
	m.log.Warn("vouchers stopped; job paused until they come again", "job_id", id, "grace", m.pauseGrace(), "why", why)
	return true
}

// resumePaid resumes a job paused for want of pay once its vouchers cover
// it again; its run time owed starts again from where it was paused.
func (m *Manager) resumePaid(ctx context.Context, id string) (stop string) {
	m.remote.mu.Lock()
	since, paused := m.remote.pausedSince[id]
	m.remote.mu.Unlock()
	if !paused {
		return ""
	}
	// Resumed once the vouchers cover it within the slack again (the two
	// sides' clocks differ by up to that). A requester paying a little
	// now and then cannot hold the GPUs paused for long: the grace is for
	// all of a job's pauses together (pauseUnpaid).
	if _, err := m.jobs.Resume(ctx, id); err != nil {
		m.log.Warn("could not resume a paid job", "job_id", id, "err", err)
		return ""
	}
	m.remote.mu.Lock()
	delete(m.remote.pausedSince, id)
	if s, ok := m.remote.runSince[id]; ok {
		m.remote.runSince[id] = s.Add(time.Since(since))
	}
	m.remote.mu.Unlock()
	m.log.Info("vouchers cover the job again; resumed", "job_id", id, "paused_for", time.Since(since).Round(time.Second))
	return ""
}

func (m *Manager) handleJobCancel(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	_, r, err := m.providedJob(from, req)
	if err != nil {
		return nil, err
	}
	var j *jobs.Job
	if r.Reason != "" {
		j, err = m.jobs.Fail(r.ID, r.Reason)
	} else {
		j, err = m.jobs.Cancel(r.ID)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// providedJob reads a request about one of our jobs: only the requester of
// its deal may ask.
func (m *Manager) providedJob(from peer.ID, req []byte) (*jobs.Job, jobIDRequest, error) {
	var r jobIDRequest
	if err := json.Unmarshal(req, &r); err != nil {
		return nil, r, err
	}
	m.remote.mu.Lock()
	deal, ok := m.remote.provided[r.ID]
	m.remote.mu.Unlock()
	if !ok || deal.Requester != from.String() {
		return nil, r, fmt.Errorf("no job %s of yours here", r.ID)
	}
	if m.jobs == nil {
		// Restarted without its container runtime: the records are here,
		// the jobs are not reachable.
		return nil, r, fmt.Errorf("this provider cannot run jobs now: %v", m.jobsErr)
	}
	j, err := m.jobs.Get(r.ID)
	return j, r, err
}

func (m *Manager) handleJobStatus(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	j, r, err := m.providedJob(from, req)
	if err != nil {
		return nil, err
	}
	if r.WaitMs > 0 && j.State == r.Seen && !j.State.Terminal() {
		wctx, cancel := context.WithTimeout(ctx, time.Duration(min(r.WaitMs, maxStatusWait.Milliseconds()))*time.Millisecond)
		j, err = m.jobs.AwaitChange(wctx, r.ID, r.Seen)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	// The requester bills no paused time: it is told all of it so far, a
	// duration by this daemon's clock.
	j.PausedMs = j.Paused(time.Now()).Milliseconds()
	m.annotateNet(j)
	return json.Marshal(j)
}

// annotateNet adds a rank's job network, as this daemon carries it.
func (m *Manager) annotateNet(j *jobs.Job) {
	m.remote.mu.Lock()
	nr, ok := m.remote.netOf[j.ID]
	m.remote.mu.Unlock()
	if !ok || m.jobNet == nil {
		return
	}
	st, ok := m.jobNet.Stat(nr.id)
	if !ok {
		return
	}
	n := &jobs.Network{Addr: overlay.RankAddr(nr.rank).String(), Dropped: st.Dropped}
	for _, p := range st.Peers {
		n.Peers = append(n.Peers, jobs.NetworkPeer{Rank: p.Rank, Peer: p.Peer, Path: p.Path, TxBytes: p.TxBytes, RxBytes: p.RxBytes})
	}
	j.Network = n
}

func (m *Manager) handleJobLogs(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	j, r, err := m.providedJob(from, req)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(m.cfg.Dir, "jobs", j.ID, "output.log"))
	if err != nil {
		return json.Marshal(logChunk{Done: j.State.Terminal(), Bytes: r.Offset})
	}
	defer f.Close()
	if r.Offset < 0 {
		return nil, fmt.Errorf("logs: offset %d: want 0 or more", r.Offset)
	}
	if _, err := f.Seek(r.Offset, io.SeekStart); err != nil {
		return nil, fmt.Errorf("logs: offset %d: %w", r.Offset, err)
	}
	buf := make([]byte, maxLogChunk)
	k, _ := io.ReadFull(f, buf)
	return json.Marshal(logChunk{Data: buf[:k], Done: j.State.Terminal() && k < maxLogChunk, Bytes: r.Offset + int64(k)})
}

// paysJobOf reports whether ch pays a job this node runs for peer from.
func (m *Manager) paysJobOf(from peer.ID, ch common.Hash) bool {
	m.remote.mu.Lock()
	defer m.remote.mu.Unlock()
	for _, d := range m.remote.provided {
		if d.Requester == from.String() && m.providedChannel(d) == ch {
			return true
		}
	}
	return false
}

// handleJobVoucher keeps a voucher for one of our jobs, only if it can be
// redeemed for more than the one held: signed by the payer, for this
// wallet, chain and escrow, on the channel of a deal of the sender's here,
// raising the cumulative amount, within the channel's deposit on chain.
// Anything else is refused with the reason, and the voucher held stays.
func (m *Manager) handleJobVoucher(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	v, err := chain.DecodeVoucher(req) // checks the fields and the signature
	if err != nil {
		return nil, err
	}
	if err := m.acceptVoucher(ctx, from, v); err != nil {
		if !errors.Is(err, errVoucherHeld) {
			// Kept (and logged for the operator) only for a channel that
			// pays a job of the sender's here: a stranger's vouchers for
			// channels of its choosing must not grow the map or the log.
			if m.paysJobOf(from, v.Channel) {
				m.remote.mu.Lock()
				m.remote.refused[v.Channel] = err.Error()
				m.remote.mu.Unlock()
				m.log.Warn("voucher refused", "requester", from, "channel", v.Channel, "amount", v.CumulativeAmount, "err", err)
			} else {
				m.log.Debug("voucher refused", "peer_id", from, "channel", v.Channel, "err", err)
			}
			return nil, err
		}
	}
	return []byte("ok"), nil
}

// errVoucherHeld: the voucher is the one already held (a requester resends
// its last when nothing more is owed); nothing changes.
var errVoucherHeld = errors.New("voucher already held")

func (m *Manager) acceptVoucher(ctx context.Context, from peer.ID, v *chain.Voucher) error {
	if v.Payee != m.wallet.Address() || v.ChainID.Big().Cmp(m.chain.ChainID()) != 0 || v.Escrow != m.chain.Escrow() {
		return fmt.Errorf("voucher refused: it pays %s on chain %s through escrow %s; this provider is %s on chain %s through %s",
			v.Payee, v.ChainID, v.Escrow, m.wallet.Address(), m.chain.ChainID(), m.chain.Escrow())
	}
	ours := false
	m.remote.mu.Lock()
	for _, d := range m.remote.provided {
		if d.Requester == from.String() && m.providedChannel(d) == v.Channel {
			ours = true
			break
		}
	}
	m.remote.mu.Unlock()
	if !ours {
		return fmt.Errorf("voucher refused: channel %s (payer %s, token %s) is not the channel of any deal of yours here", v.Channel, v.Payer, v.Token)
	}
	prev := m.vouchers.get(m.vouchers.data.Received, v.Channel)
	if prev != nil {
		switch c := v.CumulativeAmount.Cmp(prev.CumulativeAmount.Big()); {
		case c == 0:
			return errVoucherHeld
		case c < 0:
			return fmt.Errorf("voucher refused: cumulative amount %s is below the %s already held on channel %s; send a voucher for more", v.CumulativeAmount, prev.CumulativeAmount, v.Channel)
		}
	}
	// The check waits on the chain a short while only: a voucher must not
	// arrive late because the RPC is slow or gone (holdUnchecked).
	rctx, cancel := context.WithTimeout(ctx, voucherCheckWait)
	ch, err := m.chain.Channel(rctx, v.Payer, v.Payee, v.Token)
	cancel()
	if err != nil {
		if m.holdUnchecked(v) {
			return nil // checked when the chain answers again (recheckUnchecked)
		}
		return fmt.Errorf("voucher not kept: reading its channel to check the deposit: %w", err)
	}
	m.chainAnswered()
	if v.CumulativeAmount.Cmp(ch.Deposited.Big()) > 0 {
		// Redeem skips it, and it would hide the one that can be redeemed.
		return fmt.Errorf("voucher refused: cumulative amount %s exceeds channel %s's deposit of %s; the voucher held (%s) stays", v.CumulativeAmount, v.Channel, ch.Deposited, amountOf(prev))
	}
	kept, err := m.vouchers.keepIf(m.vouchers.data.Received, v, func(old *chain.Voucher) bool {
		return old == nil || old.CumulativeAmount.Cmp(v.CumulativeAmount.Big()) < 0
	})
	if err != nil {
		return fmt.Errorf("voucher not kept: %w", err)
	}
	if !kept {
		return errVoucherHeld // a higher one came in meanwhile
	}
	m.remote.mu.Lock()
	delete(m.remote.refused, v.Channel)
	m.remote.mu.Unlock()
	return nil
}

func amountOf(v *chain.Voucher) string {
	if v == nil {
		return "none"
	}
	return v.CumulativeAmount.String()
}

// watchClosing is the provider's guard against a payer that closes a
// channel to withdraw: every voucher interval it reads the channels it
// holds vouchers for, and on one that is closing it redeems what it is
// owed at once (the payer may withdraw the rest when the challenge period
// ends) and stops the jobs running on it (nothing more can be paid).
func (m *Manager) watchClosing(ctx context.Context) {
	every(ctx, m.remote.interval, func() { m.checkClosing(ctx) })
}

// checkClosing is one round of watchClosing.
func (m *Manager) checkClosing(ctx context.Context) {
	if m.chain == nil || m.vouchers == nil {
		return
	}
	owed := false
	var closing []common.Hash
	for _, v := range m.vouchers.Received() {
		if v.ChainID.Big().Cmp(m.chain.ChainID()) != 0 || v.Escrow != m.chain.Escrow() {
			continue
		}
		ch, err := m.chain.Channel(ctx, v.Payer, v.Payee, v.Token)
		if err != nil || ch.ClosesAt == 0 {
			continue
		}
		closing = append(closing, ch.ID)
		if v.CumulativeAmount.Cmp(ch.Redeemed.Big()) > 0 && v.CumulativeAmount.Cmp(ch.Deposited.Big()) <= 0 {
			owed = true
		}
	}
	if owed {
		res, err := m.RedeemOwed(ctx, nil)
		if err != nil {
			m.log.Error("a payer is closing a channel; redeeming failed, will try again", "err", err)
		} else if res.Receipt != nil {
			m.log.Info("a payer is closing a channel: redeemed at once", "paid_base", res.Paid, "channels", len(res.Vouchers), "tx", res.Receipt.TxHash)
		}
	}
	for _, ch := range closing {
		m.remote.mu.Lock()
		var stop []string
		for id := range m.remote.live {
			if m.providedChannel(m.remote.provided[id]) == ch {
				stop = append(stop, id)
			}
		}
		m.remote.mu.Unlock()
		for _, id := range stop {
			if m.jobs == nil {
				continue
			}
			m.log.Warn("the requester is closing the job's channel; stopping the job", "job_id", id, "channel", ch)
			m.jobs.Fail(id, fmt.Sprintf("the requester started closing channel %s, which pays for the job: it could withdraw what the job earns from now", ch))
		}
	}
}

// autoRedeem is the provider's redeem policy: every interval, one
// transaction for every kept voucher owed more than its channel paid, when
// the total owed reaches the threshold.
func (m *Manager) autoRedeem(ctx context.Context, interval time.Duration, above *big.Int) {
	every(ctx, interval, func() {
		res, err := m.RedeemOwed(ctx, above)
		switch {
		case err != nil:
			m.log.Warn("timed redeem failed; will try again", "err", err)
		case res.Receipt == nil:
			m.log.Debug("timed redeem: nothing sent", "owed_base", res.Paid, "threshold_base", above)
		default:
			m.log.Info("redeemed vouchers", "paid", m.paidAmount(res), "paid_base", res.Paid, "channels", len(res.Vouchers), "tx", res.Receipt.TxHash)
		}
	})
}

// jobsGet is a provided job's record; an error where this node runs none.
func (m *Manager) jobsGet(id string) (*jobs.Job, error) {
	if m.jobs == nil {
		return nil, errors.New("no jobs here")
	}
	return m.jobs.Get(id)
}
