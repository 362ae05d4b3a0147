package lease

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The requester's side: a job queued, a deal made, the channel funded,
// the job started on its provider, followed, paid and failed over.

// submitRemote runs a spec through the market. It returns the job queued,
// at once: the deal, the funding and the start follow in the background
// (runQueued), and the job's state and reason say how they go. What can
// be told now (no max_price, a bad token or price, an empty wallet) is
// refused now.
func (m *Manager) submitRemote(ctx context.Context, spec *jobs.Spec) (*jobs.Job, error) {
	return m.SubmitRemote(ctx, spec, RemoteOptions{})
}

// RemoteOptions are a market job's settings on the requester's side only
// (they are in no deal and no spec hash).
type RemoteOptions struct {
	// Prepay, when set, is how far this job's vouchers may run ahead of
	// its run instead of Config.Prepay (job run --prepay).
	Prepay time.Duration
}

// SubmitRemote runs a spec through the market with opts.
func (m *Manager) SubmitRemote(ctx context.Context, spec *jobs.Spec, opts RemoteOptions) (*jobs.Job, error) {
	if spec.MaxPrice == "" {
		return nil, invalid{errors.New("max_price: required for a job through the market (per GPU-hour, in whole units of the token)")}
	}
	if opts.Prepay < 0 {
		return nil, invalid{fmt.Errorf("prepay %s: want a positive duration", opts.Prepay)}
	}
	if err := m.checkFunds(ctx, spec); err != nil {
		return nil, err
	}
	return m.queueRemote(spec, nil, opts.Prepay)
}

// checkFunds refuses a market job that could not be paid for at any
// price: the token and max price must parse, the wallet or a channel
// already funded must hold something of the token, and a wallet that
// will have to deposit must hold the gas for it. Each refusal names the
// amounts and the token by its symbol.
func (m *Manager) checkFunds(ctx context.Context, spec *jobs.Spec) error {
	tok, sym, dec, worst, err := m.specWorst(ctx, spec)
	if err != nil {
		return err
	}
	if m.channelHolds(ctx, tok, worst) {
		return nil // paid from a channel funded before: no deposit, no gas
	}
	bal, err := m.chain.Balance(ctx, tok)
	if err != nil {
		return err
	}
	if bal.Sign() == 0 {
		return invalid{fmt.Errorf("%w: the job may cost up to %s %s (max_price × GPUs × timeouts.execution) and wallet %s holds no %s: fund the wallet first",
			errFunds, chain.FormatUnits(worst, dec), sym, m.wallet.Address(), sym)}
	}
	return m.checkGas(ctx)
}

// specWorst is the token a spec pays in (its symbol and decimals) and
// the most the spec may cost: max_price × GPUs × its execution timeout.
// A token or max_price that does not parse is the caller's error.
func (m *Manager) specWorst(ctx context.Context, spec *jobs.Spec) (tok common.Address, sym string, dec uint8, worst *big.Int, err error) {
	if tok, err = chain.ParseToken("", m.chain.DefaultToken()); err != nil {
		return tok, "", 0, nil, invalid{err} // the error names the token
	}
	if sym, dec, err = m.chain.TokenInfo(ctx, tok); err != nil {
		return tok, "", 0, nil, err
	}
	price, err := chain.ParseUnits(spec.MaxPrice, dec)
	if err != nil {
		return tok, "", 0, nil, invalid{fmt.Errorf("max_price: %w", err)}
	}
	worst = new(big.Int).Mul(price, big.NewInt(int64(max(spec.Resources.GPUs, 1))))
	worst.Mul(worst, big.NewInt(int64(spec.ExecutionTimeout()/time.Second)))
	return tok, sym, dec, worst.Div(worst, big.NewInt(3600)), nil
}

// queueRemote records a market job as queued, starts its wait for a
// provider, and returns it. exclude are providers not to use (a retry's
// failed one).
func (m *Manager) queueRemote(spec *jobs.Spec, exclude []string, prepay time.Duration) (*jobs.Job, error) {
	queue := queueTimeout(spec)
	now := time.Now().UTC()
	id := newJobID()
	reason := "waiting for a provider to bid"
	j := &jobs.Job{ID: id, Spec: *spec, State: jobs.Queued, Reason: reason, CreatedAt: now,
		History: []jobs.Transition{{State: jobs.Queued, Reason: reason, At: now}}}
	rj := &Record{ID: id, Last: j, Vouched: "0", Spec: *spec, QueueUntil: now.Add(queue), Prepay: prepay}
	m.remote.mu.Lock()
	m.remote.jobs[id] = rj
	m.remote.mu.Unlock()
	if err := m.saveRemote(rj); err != nil {
		m.remote.mu.Lock()
		delete(m.remote.jobs, id)
		m.remote.mu.Unlock()
		return nil, err
	}
	m.log.Info("job queued for the market", "job_id", id, "queue", queue)
	m.startQueued(rj, exclude)
	v := *j
	return &v, nil
}

// queueTimeout is the spec's timeouts.queue, 1 min by default.
func queueTimeout(spec *jobs.Spec) time.Duration {
	if d, err := time.ParseDuration(spec.Timeouts.Queue); err == nil && d > 0 {
		return d
	}
	return time.Minute
}

// startQueued runs a queued job's wait in the background.
func (m *Manager) startQueued(rj *Record, exclude []string) {
	ctx, cancel := context.WithCancel(m.remote.ctx)
	m.remote.mu.Lock()
	m.remote.waiting[rj.ID] = cancel
	m.remote.mu.Unlock()
	m.spawn(func(context.Context) {
		defer func() {
			cancel()
			m.remote.mu.Lock()
			delete(m.remote.waiting, rj.ID)
			m.remote.mu.Unlock()
		}()
		m.runQueued(ctx, rj, exclude)
	})
}

// runQueued waits for a deal, funds it and starts the job; on any failure
// the job fails with the reason.
func (m *Manager) runQueued(ctx context.Context, rj *Record, exclude []string) {
	spec := rj.Spec
	progress := func(reason string) { m.setQueued(rj, reason) }
	defer m.doneAwaiting(rj.ID)
	var err error
	if spec.Distributed != nil && spec.Distributed.Nodes > 1 {
		_, err = m.submitGang(ctx, &spec, rj.ID, progress)
	} else {
		err = m.startSingle(ctx, rj, exclude, progress)
	}
	if err == nil {
		return
	}
	if ctx.Err() != nil && m.remote.ctx.Err() != nil {
		return // the daemon is stopping: the record stays queued and resumes
	}
	m.remote.mu.Lock()
	canceled := rj.Last != nil && rj.Last.State == jobs.Canceled
	m.remote.mu.Unlock()
	if canceled {
		return
	}
	m.log.Warn("market job failed before it started", "job_id", rj.ID, "err", err)
	m.endQueued(rj, jobs.Failed, err.Error())
}

// startSingle is runQueued for a job on one provider: wait until the
// wallet can pay the job's worst case, make a deal, fund its channel and
// start the job there. A provider that refuses the start for the
// channel's deposit (another of this node's starts counted it first) is
// asked again with a new deal, a few times within the queue wait.
func (m *Manager) startSingle(ctx context.Context, rj *Record, exclude []string, progress func(string)) error {
	if err := m.awaitFunds(ctx, rj, progress); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := m.startOnce(ctx, rj, exclude, progress)
		if err == nil || !errors.Is(err, errStartFunds) || attempt == 3 || time.Now().After(rj.QueueUntil) {
			return err
		}
		progress(fmt.Sprintf("asking again: %v", err))
	}
}

// errStartFunds: a provider refused a start for its channel's deposit.
var errStartFunds = errors.New("refused for the channel's deposit")

// startOnce makes one deal, funds it and starts the job on its provider.
func (m *Manager) startOnce(ctx context.Context, rj *Record, exclude []string, progress func(string)) error {
	spec := rj.Spec
	deals, err := m.dealsWithin(ctx, &spec, exclude, time.Until(rj.QueueUntil), 1, progress)
	if err != nil {
		return err
	}
	deal := deals[0]
	progress(fmt.Sprintf("deal %s with provider %s; funding the channel", short(deal.ID), short(deal.Provider)))
	release, err := m.fundChannel(ctx, *deal)
	m.doneAwaiting(rj.ID) // deposited or not, the wallet's funds are counted as they are now
	if err != nil {
		m.releaseDeal(ctx, *deal)
		return err
	}
	defer release()
	prov, _ := peer.Decode(deal.Provider)
	req, _ := json.Marshal(startRequest{DealID: deal.ID, Spec: spec, JobID: rj.ID})
	resp, err := m.request(ctx, prov, wireStart, req)
	if err != nil {
		if strings.Contains(err.Error(), fundsRefusal) {
			return fmt.Errorf("provider %s %w: %v", short(deal.Provider), errStartFunds, err)
		}
		if strings.Contains(err.Error(), notFinalRefusal) {
			resp, err = m.startWhenFinal(ctx, rj, prov, req, progress)
		}
	}
	if err != nil {
		m.market.Reputation().NoShow(deal.Provider)
		return fmt.Errorf("provider %s did not start the job: %w", deal.Provider, err)
	}
	var j jobs.Job
	if err := json.Unmarshal(resp, &j); err != nil {
		return fmt.Errorf("provider %s: %w", deal.Provider, err)
	}
	remoteID, err := providerJobID(rj.ID, j.ID)
	if err != nil {
		return fmt.Errorf("provider %s: %w", deal.Provider, err)
	}
	j.ID, j.Provider = rj.ID, deal.Provider
	m.remote.mu.Lock()
	rj.Remote, rj.Provider, rj.Deal, rj.QueueUntil = remoteID, deal.Provider, *deal, time.Time{}
	rj.Answered = time.Now()
	rj.see(&j, rj.Answered)
	m.remote.mu.Unlock()
	if err := m.saveRemote(rj); err != nil {
		m.log.Error("record of a started job not saved", "job_id", rj.ID, "err", err)
	}
	m.watchEdges(rj)
	m.log.Info("job started on a provider", "job_id", rj.ID, "provider", deal.Provider, "deal_id", short(deal.ID))
	return nil
}

// startWhenFinal asks a provider again to start a deal whose deposit
// was not yet at its confirmation depth, every block or so, until it
// starts, refuses for another reason, or the queue wait ends.
func (m *Manager) startWhenFinal(ctx context.Context, rj *Record, prov peer.ID, req []byte, progress func(string)) ([]byte, error) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		resp, err := m.request(ctx, prov, wireStart, req)
		if err == nil || !strings.Contains(err.Error(), notFinalRefusal) || time.Now().After(rj.QueueUntil.Add(2*time.Minute)) {
			return resp, err
		}
		progress("waiting for the deposit to be final at the provider's confirmations: " + err.Error())
	}
}

// awaitFunds keeps a job queued, with the reason, while this node cannot
// pay its worst case (max_price × GPUs × timeouts.execution) on top of
// what the other jobs waiting to start may cost: from the wallet, or from
// what a channel it already funded holds. One top-up of the wallet lets
// the whole queue go. Nothing is asked of any provider meanwhile.
func (m *Manager) awaitFunds(ctx context.Context, rj *Record, progress func(string)) error {
	tok, _, _, worst, err := m.specWorst(ctx, &rj.Spec)
	if err != nil {
		return err
	}
	t := time.NewTicker(max(m.remote.interval/2, time.Second))
	defer t.Stop()
	for {
		bal, err := m.chain.Balance(ctx, tok)
		if err != nil {
			return fmt.Errorf("reading the wallet's balance: %w", err)
		}
		m.remote.mu.Lock()
		others := new(big.Int)
		for id, w := range m.remote.awaiting {
			if id != rj.ID {
				others.Add(others, w)
			}
		}
		enough := new(big.Int).Add(others, worst).Cmp(bal) <= 0
		if enough {
			m.remote.awaiting[rj.ID] = worst
		}
		m.remote.mu.Unlock()
		if m.channelHolds(ctx, tok, worst) {
			return nil // no deposit needed: no gas either
		}
		if enough {
			return m.checkGas(ctx)
		}
		if time.Now().After(rj.QueueUntil) {
			return invalid{fmt.Errorf("%w within timeouts.queue: the job may cost up to %s and the jobs queued before it %s; wallet %s holds %s: fund the wallet, or lower max_price or timeouts.execution",
				errFunds, m.formatAmount(chain.TokenName(tok), worst.String()), m.formatAmount(chain.TokenName(tok), others.String()), m.wallet.Address(), m.formatAmount(chain.TokenName(tok), bal.String()))}
		}
		progress(fmt.Sprintf("waiting for funds: the job may cost up to %s, jobs queued before it %s, wallet %s holds %s; top up the wallet",
			m.formatAmount(chain.TokenName(tok), worst.String()), m.formatAmount(chain.TokenName(tok), others.String()), m.wallet.Address(), m.formatAmount(chain.TokenName(tok), bal.String())))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// checkGas refuses, before any deal, a job whose deposit the wallet
// could not send: it holds too little of the chain's coin for the gas.
func (m *Manager) checkGas(ctx context.Context) error {
	cost, err := m.chain.DepositGasCost(ctx)
	if err != nil {
		return err
	}
	bal, err := m.chain.Balance(ctx, chain.NativeToken)
	if err != nil {
		return fmt.Errorf("reading the wallet's balance: %w", err)
	}
	if bal.Cmp(cost) < 0 {
		return invalid{fmt.Errorf("%w for gas: depositing into the provider's channel costs about %s ETH of gas at the chain's current fees, and wallet %s holds %s ETH: send it some ETH (the chain's coin) first",
			errFunds, chain.FormatUnits(cost, 18), m.wallet.Address(), chain.FormatUnits(bal, 18))}
	}
	return nil
}

// doneAwaiting drops a job's claim on the wallet (awaitFunds) once its
// funding is settled either way.
func (m *Manager) doneAwaiting(id string) {
	m.remote.mu.Lock()
	delete(m.remote.awaiting, id)
	m.remote.mu.Unlock()
}

// channelHolds reports whether a channel this node already funded in
// token holds need beyond what it owes and its jobs may still cost.
func (m *Manager) channelHolds(ctx context.Context, tok common.Address, need *big.Int) bool {
	payees := map[common.Address]bool{}
	m.remote.mu.Lock()
	for _, o := range m.remote.jobs {
		if !o.queued() && dealToken(o.Deal) == tok {
			payees[common.HexToAddress(o.Deal.ProviderWallet)] = true
		}
	}
	m.remote.mu.Unlock()
	for p := range payees {
		ch, err := m.chain.Channel(ctx, m.wallet.Address(), p, tok)
		if err != nil {
			continue
		}
		free := new(big.Int).Sub(ch.Deposited.Big(), m.channelCommitted(p, tok, "", nil))
		if free.Cmp(need) >= 0 {
			return true
		}
	}
	return false
}

// releaseDeal tells a deal's provider that this node will not start it
// (it could not fund it), so that its GPUs are free at once rather than
// held to the end of the start window.
func (m *Manager) releaseDeal(ctx context.Context, deal market.Deal) {
	prov, err := peer.Decode(deal.Provider)
	if err != nil {
		return
	}
	req, _ := json.Marshal(jobIDRequest{ID: deal.ID})
	if _, err := m.request(ctx, prov, wireRelease, req); err != nil {
		m.log.Debug("deal release not delivered", "deal_id", short(deal.ID), "err", err)
	}
}

// setQueued updates a queued job's reason.
func (m *Manager) setQueued(rj *Record, reason string) {
	m.remote.mu.Lock()
	if rj.Last == nil || rj.Last.State != jobs.Queued || !rj.queued() {
		m.remote.mu.Unlock()
		return
	}
	j := *rj.Last
	j.Reason = reason
	rj.Last = &j
	m.remote.mu.Unlock()
	if err := m.saveRemote(rj); err != nil {
		m.log.Warn("queued job's reason not saved", "job_id", rj.ID, "err", err)
	}
}

// endQueued ends a job that never started.
func (m *Manager) endQueued(rj *Record, state jobs.State, reason string) {
	now := time.Now().UTC()
	m.remote.mu.Lock()
	// A gang's rank 0 replaces the queued record once it starts; the
	// record that ends here must still be the job's.
	if rj.Last == nil || rj.Last.State.Terminal() || m.remote.jobs[rj.ID] != rj {
		m.remote.mu.Unlock()
		return
	}
	j := *rj.Last
	j.State, j.Reason, j.FinishedAt = state, reason, &now
	j.History = append(append([]jobs.Transition(nil), j.History...), jobs.Transition{State: state, Reason: reason, At: now})
	rj.Last, rj.Settled = &j, true
	m.remote.mu.Unlock()
	if err := m.saveRemote(rj); err != nil {
		m.log.Error("record of a failed job not saved", "job_id", rj.ID, "err", err)
	}
}

// resumeQueued picks up the jobs that were queued when the daemon
// stopped: each waits out what is left of its queue timeout, and one whose
// timeout passed while the daemon was down fails with that reason.
func (m *Manager) resumeQueued() {
	m.remote.mu.Lock()
	var todo []*Record
	for _, rj := range m.remote.jobs {
		if rj.queued() && rj.Last != nil && rj.Last.State == jobs.Queued && m.remote.waiting[rj.ID] == nil {
			todo = append(todo, rj)
		}
	}
	m.remote.mu.Unlock()
	for _, rj := range todo {
		if time.Now().After(rj.QueueUntil) {
			m.endQueued(rj, jobs.Failed, "timeouts.queue ran out while the daemon was down; last: "+rj.Last.Reason)
			continue
		}
		m.log.Info("queued job resumed", "job_id", rj.ID, "until", rj.QueueUntil)
		m.startQueued(rj, nil)
	}
}

// dealsWithin negotiates up to count deals with different providers from
// one offer, asking again within the queue wait (negative: the spec's
// timeouts.queue) until at least one is made; progress hears why each
// round made none. The caller funds them.
func (m *Manager) dealsWithin(ctx context.Context, spec *jobs.Spec, exclude []string, queue time.Duration, count int, progress func(string)) ([]*market.Deal, error) {
	if queue < 0 {
		queue = queueTimeout(spec)
	}
	deadline := time.Now().Add(queue)
	hash, err := spec.Hash()
	if err != nil {
		return nil, err
	}
	var deals []*market.Deal
	for attempt := 0; ; attempt++ {
		deals, _, err = m.negotiate(ctx, api.OfferRequest{Resources: spec.Resources,
			MaxPrice: spec.MaxPrice, Duration: spec.ExecutionTimeout().String(), Image: spec.Image, SpecHash: hash,
		}, exclude, count)
		if err == nil || !errors.Is(err, market.ErrNoDeal) || time.Now().After(deadline) {
			break
		}
		if progress != nil {
			progress(fmt.Sprintf("waiting for a provider (%s of timeouts.queue left): %s", time.Until(deadline).Round(time.Second), noDealReason(err)))
		}
		pause := time.Duration(200+mrand.IntN(300)*(1+min(attempt, 4))) * time.Millisecond
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
	}
	if err != nil {
		if errors.Is(err, market.ErrNoDeal) {
			return nil, fmt.Errorf("no provider within timeouts.queue (%s): %s", queue, noDealReason(err))
		}
		return nil, err
	}
	return deals, nil
}

// noDealReason is the market's no-deal error without its prefix.
func noDealReason(err error) string {
	return strings.TrimPrefix(err.Error(), market.ErrNoDeal.Error()+": ")
}

// fundChannel makes sure the channel to the provider holds everything
// owed on it, what its running jobs and the deals being started on it may
// still cost, and this deal's maximum: one deposit or top-up, reused by
// later jobs. The deal counts as being started (for the other fundings of
// the channel) until release is called, once its start is settled either
// way. Fundings of one channel take turns, and each covers every deal
// registered by then: a burst of jobs to one provider makes one or two
// deposits, and none is refused for a deposit that its neighbour counted
// too.
func (m *Manager) fundChannel(ctx context.Context, deal market.Deal, pending ...market.Deal) (release func(), err error) {
	payee, token := common.HexToAddress(deal.ProviderWallet), dealToken(deal)
	id := chain.ChannelID(m.wallet.Address(), payee, token)
	m.remote.mu.Lock()
	m.remote.inflight[deal.ID] = deal
	lock := m.remote.funding[id]
	if lock == nil {
		lock = &sync.Mutex{}
		m.remote.funding[id] = lock
	}
	m.remote.mu.Unlock()
	release = func() {
		m.remote.mu.Lock()
		delete(m.remote.inflight, deal.ID)
		m.remote.mu.Unlock()
	}
	defer func() {
		if err != nil {
			release()
			release = nil
		}
	}()
	lock.Lock()
	defer lock.Unlock()

	need := m.channelNeeds(payee, token, deal, pending)
	ch, err := m.chain.Channel(ctx, m.wallet.Address(), payee, token)
	if err != nil {
		return nil, err
	}
	short := new(big.Int).Sub(need, ch.Deposited.Big())
	if short.Sign() <= 0 {
		return release, nil
	}
	bal, err := m.chain.Balance(ctx, token)
	if err != nil {
		return nil, err
	}
	if bal.Cmp(short) < 0 {
		return nil, invalid{fmt.Errorf("%w: the deal may cost up to %s, the channel needs %s more, wallet %s holds %s; fund the wallet, or lower max_price or timeouts.execution",
			errFunds, m.formatAmount(chain.TokenName(token), dealCost(deal, time.Duration(deal.MaxDurationS)*time.Second).String()),
			m.formatAmount(chain.TokenName(token), short.String()), m.wallet.Address(), m.formatAmount(chain.TokenName(token), bal.String()))}
	}
	if _, err := m.chain.Deposit(ctx, payee, token, short); err != nil {
		return nil, fmt.Errorf("fund the channel: %w", err)
	}
	return release, nil
}

// errFunds: the wallet cannot pay what a deal needs deposited.
var errFunds = errors.New("insufficient funds")

// channelNeeds is what the channel to payee must hold for deal to start:
// what is owed on it (the voucher signed, or the exact cost of its jobs
// if more: an ended job's final voucher may not be out yet), the rest of
// its running jobs' and its other starting deals' maximum cost, the
// deal's own, and one voucher interval of it as a margin (a provider
// counts an ended job it has not yet watched end by its own clock).
func (m *Manager) channelNeeds(payee, token common.Address, deal market.Deal, pending []market.Deal) *big.Int {
	need := dealCost(deal, time.Duration(deal.MaxDurationS)*time.Second+m.remote.interval)
	return need.Add(need, m.channelCommitted(payee, token, deal.ID, pending))
}

// channelCommitted is what the channel to payee holds already spoken for:
// what is owed on it, and what its running jobs, the deals being started
// on it other than dealID, and pending may still cost.
func (m *Manager) channelCommitted(payee, token common.Address, dealID string, pending []market.Deal) *big.Int {
	need := new(big.Int)
	same := func(d market.Deal) bool {
		return common.HexToAddress(d.ProviderWallet) == payee && dealToken(d) == token
	}
	for _, p := range pending { // a gang's earlier ranks, funded just before
		if same(p) && p.ID != dealID {
			need.Add(need, dealCost(p, time.Duration(p.MaxDurationS)*time.Second))
		}
	}
	owed := new(big.Int)
	if v := m.vouchers.get(m.vouchers.data.Signed, chain.ChannelID(m.wallet.Address(), payee, token)); v != nil {
		owed = v.CumulativeAmount.Big()
	}
	m.remote.mu.Lock()
	costs := new(big.Int)
	for _, o := range m.remote.jobs {
		if !o.queued() && same(o.Deal) && ended(o) {
			costs.Add(costs, jobCost(o))
		}
	}
	for id, d := range m.remote.inflight {
		if id != dealID && same(d) && !slices.ContainsFunc(pending, func(p market.Deal) bool { return p.ID == id }) {
			need.Add(need, dealCost(d, time.Duration(d.MaxDurationS)*time.Second))
		}
	}
	m.remote.mu.Unlock()
	need.Add(need, m.committedRunning(payee, token))
	if costs.Cmp(owed) > 0 {
		owed = costs
	}
	return need.Add(need, owed)
}

// committedRunning is the rest of the maximum cost of this node's running
// jobs on the channel (what they may still be vouched).
func (m *Manager) committedRunning(payee, token common.Address) *big.Int {
	sum := new(big.Int)
	m.remote.mu.Lock()
	defer m.remote.mu.Unlock()
	for _, rj := range m.remote.jobs {
		if rj.Last != nil && rj.Last.State.Terminal() {
			continue
		}
		if common.HexToAddress(rj.Deal.ProviderWallet) != payee || dealToken(rj.Deal) != token {
			continue
		}
		sum.Add(sum, dealCost(rj.Deal, time.Duration(rj.Deal.MaxDurationS)*time.Second))
	}
	return sum
}

// cancelRemote asks the provider to stop a job.
func (m *Manager) cancelRemote(ctx context.Context, id string) (*jobs.Job, error) {
	m.remote.mu.Lock()
	rj := m.remote.jobs[id]
	m.remote.mu.Unlock()
	if rj == nil {
		return nil, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	m.remote.mu.Lock()
	stopWait, queued := m.remote.waiting[id], rj.queued()
	var last jobs.State
	if rj.Last != nil {
		last = rj.Last.State
	}
	m.remote.mu.Unlock()
	if queued {
		if last.Terminal() {
			return nil, fmt.Errorf("%w: %s is %s", jobs.ErrFinished, id, last)
		}
		m.endQueued(rj, jobs.Canceled, "canceled while queued")
		if stopWait != nil {
			stopWait()
		}
		m.remote.mu.Lock()
		j := *rj.Last
		m.remote.mu.Unlock()
		return &j, nil
	}
	prov, _ := peer.Decode(rj.Provider)
	req, _ := json.Marshal(jobIDRequest{ID: rj.remoteID()})
	resp, err := m.request(ctx, prov, wireCancel, req)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", rj.Provider, err)
	}
	var j jobs.Job
	if err := json.Unmarshal(resp, &j); err != nil {
		return nil, fmt.Errorf("provider %s: %w", rj.Provider, err)
	}
	j.ID, j.Provider = rj.ID, rj.Provider
	m.endForwards(rj.ID) // its local ports close with it, not at the next poll
	return &j, nil
}

// followRemote is the requester's loop: it refreshes its remote jobs'
// states and signs cumulative vouchers for their GPU time every interval,
// and a final one when a job ends.
func (m *Manager) followRemote(ctx context.Context) {
	defer m.remote.stop() // queued jobs stop waiting with the daemon
	m.resumeQueued()
	every(ctx, m.remote.interval, func() { m.followOnce(ctx) })
}

// followOnce is one round of followRemote.
func (m *Manager) followOnce(ctx context.Context) {
	m.remote.mu.Lock()
	var live []*Record
	for _, rj := range m.remote.jobs {
		if !rj.Settled && !rj.queued() {
			live = append(live, rj)
		}
	}
	m.remote.mu.Unlock()
	channels := map[common.Hash]bool{}
	for _, rj := range live {
		if j, err := m.remoteStatus(ctx, rj); err == nil {
			m.observe(ctx, rj, j)
			m.watchEdges(rj)
		} else {
			m.providerMissing(ctx, rj, err)
		}
		channels[chain.ChannelID(m.wallet.Address(), common.HexToAddress(rj.Deal.ProviderWallet), dealToken(rj.Deal))] = true
	}
	for _, rj := range live {
		id := chain.ChannelID(m.wallet.Address(), common.HexToAddress(rj.Deal.ProviderWallet), dealToken(rj.Deal))
		if channels[id] {
			delete(channels, id)
			m.payChannel(ctx, rj)
		}
	}
}

// observe records the provider's answer about a job and acts on its end:
// its forwards close, its provider is rated, and a distributed job fails
// with one of its ranks, as torchrun does.
func (m *Manager) observe(ctx context.Context, rj *Record, j *jobs.Job) {
	m.remote.mu.Lock()
	rj.see(j, time.Now())
	m.remote.mu.Unlock()
	if j.State.Terminal() {
		m.endForwards(rj.ID)
	}
	m.rate(rj)
	if err := m.saveRemote(rj); err != nil {
		m.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
	}
	if len(rj.Group) > 1 && j.State.Terminal() && j.State != jobs.Completed {
		m.failGroup(ctx, rj.Group, fmt.Sprintf("rank %d on provider %s %s: %s", rj.Rank, rj.Provider, j.State, j.Reason))
	}
}

// watchEdges follows one running job's state as it changes (a status
// request the provider holds until it does), so that its start and end
// are seen when they happen and the final voucher goes out at the end,
// not up to an interval later. One watcher a job; the interval's round
// (followOnce) still refreshes, pays and notices a vanished provider.
func (m *Manager) watchEdges(rj *Record) {
	m.remote.mu.Lock()
	if m.remote.edges[rj.ID] || rj.Settled || rj.queued() || (rj.Last != nil && rj.Last.State.Terminal()) {
		m.remote.mu.Unlock()
		return
	}
	m.remote.edges[rj.ID] = true
	m.remote.mu.Unlock()
	m.spawn(func(ctx context.Context) {
		defer func() {
			m.remote.mu.Lock()
			delete(m.remote.edges, rj.ID)
			m.remote.mu.Unlock()
		}()
		for ctx.Err() == nil {
			m.remote.mu.Lock()
			seen := jobs.State("")
			if rj.Last != nil {
				seen = rj.Last.State
			}
			done := rj.Settled || seen.Terminal()
			m.remote.mu.Unlock()
			if done {
				return
			}
			asked := time.Now()
			j, err := m.remoteStatusWait(ctx, rj, seen, maxStatusWait)
			if err != nil || j.State == seen {
				// A provider that cannot hold the answer (or is away):
				// the interval's round carries on; ask again shortly.
				pause := time.Until(asked.Add(min(m.remote.interval, 2*time.Second)))
				select {
				case <-ctx.Done():
					return
				case <-time.After(pause):
				}
				continue
			}
			m.observe(ctx, rj, j)
			if time.Since(asked) < 100*time.Millisecond && !j.State.Terminal() {
				// A provider whose state flips at every answer gets a
				// request a tenth of a second at most, not a busy loop.
				select {
				case <-ctx.Done():
					return
				case <-time.After(100*time.Millisecond - time.Since(asked)):
				}
			}
			switch {
			case j.State.Terminal():
				m.payChannel(ctx, rj) // the final voucher, for the exact run time
				return
			case j.State == jobs.Running && seen != jobs.Running:
				m.payChannel(ctx, rj) // it runs: the prepay goes out now
			}
		}
	})
}

// rate counts a remote job's end in its provider's reputation, once: a
// completed job is a deal kept; a failure that is not the job's own (no
// exit code: the GPU, the container, the inputs on the provider's side)
// one failed. A job that exited non-zero, timed out, was canceled, or
// was stopped because another rank failed says nothing of the provider.
func (m *Manager) rate(rj *Record) {
	m.remote.mu.Lock()
	j := rj.Last
	if rj.Rated || j == nil || !j.State.Terminal() {
		m.remote.mu.Unlock()
		return
	}
	rj.Rated = true
	m.remote.mu.Unlock()
	switch {
	case j.State == jobs.Completed:
		m.market.Reputation().Completed(rj.Provider)
	case j.State == jobs.Failed && j.ExitCode == nil && !strings.HasPrefix(j.Reason, "another rank failed"):
		m.market.Reputation().Failed(rj.Provider)
	}
}

// providerMissing marks a job unknown when its provider stops answering,
// failed after the grace window (five voucher intervals, at least 10 s),
// and then retries it elsewhere if its spec says so.
func (m *Manager) providerMissing(ctx context.Context, rj *Record, err error) {
	grace := max(5*m.remote.interval, 10*time.Second)
	m.remote.mu.Lock()
	last := *rj.Last
	if last.State.Terminal() {
		m.remote.mu.Unlock()
		return
	}
	// A daemon that was down did not look: the grace starts when it
	// started again, not at the last sight before it went down.
	m.spawnMu.Lock()
	since := rj.LastSeen
	if m.started.After(since) {
		since = m.started
	}
	m.spawnMu.Unlock()
	gone := time.Since(since)
	if gone < grace {
		if last.State != jobs.Unknown {
			last.State, last.Reason = jobs.Unknown, fmt.Sprintf("provider %s not answering: %v", short(rj.Provider), err)
			rj.Last = &last
		}
		m.remote.mu.Unlock()
		if err := m.saveRemote(rj); err != nil {
			m.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
		}
		return
	}
	m.remote.mu.Unlock()
	// The job stays unknown while a retry is arranged, so that whoever
	// watches it sees failed and the retry together.
	reason := fmt.Sprintf("provider %s unreachable for %s", rj.Provider, gone.Round(time.Second))
	var retried string
	if rj.Spec.Retry.Attempts > 0 && len(rj.Group) <= 1 {
		spec := rj.Spec
		spec.Retry.Attempts--
		if j, err := m.queueRemote(&spec, []string{rj.Provider}, rj.Prepay); err != nil {
			reason += "; retry failed: " + err.Error()
		} else {
			retried = j.ID
			reason += "; retried as " + j.ID
		}
	}
	m.remote.mu.Lock()
	rated := rj.Rated
	rj.Rated = true
	m.remote.mu.Unlock()
	if !rated {
		m.market.Reputation().Failed(rj.Provider)
	}
	m.log.Warn("remote job failed: provider unreachable", "job_id", rj.ID, "provider", rj.Provider, "retried_as", retried)
	now := time.Now().UTC()
	m.remote.mu.Lock()
	last.State, last.Reason, last.FinishedAt = jobs.Failed, reason, &now
	rj.Last, rj.RetriedAs = &last, retried
	rj.Unreachable, rj.Settled = true, true // no more vouchers: paid up to the last sight
	m.remote.mu.Unlock()
	m.endForwards(rj.ID)
	if err := m.saveRemote(rj); err != nil {
		m.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
	}
	if len(rj.Group) > 1 {
		m.failGroup(ctx, rj.Group, fmt.Sprintf("rank %d: %s", rj.Rank, reason))
	}
}

// jobCost is what a job has cost so far: the run time this node saw, at
// the deal's price, rounded up to the second (billedRun).
func jobCost(rj *Record) *big.Int { return dealCost(rj.Deal, billedRun(rj)) }

// jobPayable is what this node vouches for a job: an ended job's exact
// cost (billedRun); a running one's run time so far plus ahead, the time
// its vouchers run ahead of the work (at least one interval, since an
// honest provider is owed up to an interval between two payments; more
// is a prepay, so that the job goes on while this node is away). ahead is
// a bound on what the provider may be owed, not a charge: what the
// channel's voucher holds beyond the sum of its jobs' exact costs pays
// for later jobs on the channel (payChannel never lowers a voucher).
func jobPayable(rj *Record, ahead time.Duration) *big.Int {
	if ended(rj) {
		return jobCost(rj)
	}
	return dealCost(rj.Deal, observedRun(rj, ahead))
}

// ahead is how far a running job's vouchers run ahead of its observed
// run time: one interval, growing with the job's run up to market.prepay
// (Config.Prepay; zero means ten voucher intervals and at least a
// minute), or a job's own prepay (Record.Prepay) from its start. The ramp bounds what a
// provider that takes the vouchers and fails the job can keep: the
// prepay of a job that ran t is at most t (flat, a provider that failed
// every job at once kept a whole prepay each; TestGPUFaultAndNoFunds).
// A requester away longer than it finds its job paused, not ended
// (pauseUnpaid).
func (m *Manager) ahead(rj *Record) time.Duration {
	if rj.Prepay > 0 {
		// Asked for this job (job run --prepay): taken as it is, its risk
		// accepted, so that a job just started from a laptop survives
		// the laptop's sleep.
		return max(m.remote.interval, rj.Prepay)
	}
	p := m.cfg.Prepay
	if p == 0 {
		p = max(10*m.remote.interval, time.Minute)
	}
	return max(m.remote.interval, min(p, observedRun(rj, 0)))
}

// ended: the job will run no more (terminal, or its provider gone).
func ended(rj *Record) bool {
	return rj.Unreachable || (rj.Last != nil && rj.Last.State.Terminal())
}

// billedRun is what this node pays an ended job for: its observed run
// time rounded up to the second, at least a second for a job its provider
// says ran, within the deal's duration. Where this node did not watch the
// end (a restart or a sleep between RunUntil and EndSeen), the provider's
// own duration counts, but only within that gap: it can neither shorten
// what this node saw run nor stretch past when this node saw it ended.
func billedRun(rj *Record) time.Duration {
	d := observedRun(rj, 0)
	j := rj.Last
	if j != nil && j.State.Terminal() && !rj.EndSeen.IsZero() {
		from := rj.RunSeen
		if from.IsZero() || (!rj.Answered.IsZero() && !from.After(rj.EndSeen.Add(-time.Millisecond))) {
			from = rj.Answered // first seen already ended: it ran since the start was answered
		}
		lo := time.Duration(0)
		if !rj.RunSeen.IsZero() && rj.RunUntil.After(rj.RunSeen) {
			lo = rj.RunUntil.Sub(rj.RunSeen)
		}
		hi := lo
		if !from.IsZero() && rj.EndSeen.After(from) {
			hi = rj.EndSeen.Sub(from)
		}
		d = hi // a provider that gives no duration is paid what this node saw
		if j.StartedAt != nil && j.FinishedAt != nil {
			d = min(max(j.FinishedAt.Sub(*j.StartedAt), lo), hi)
		}
		// Paused for want of pay: billed to no one.
		d = max(d-time.Duration(j.PausedMs)*time.Millisecond, 0)
	}
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	if d == 0 && j != nil && j.StartedAt != nil {
		d = time.Second // it ran: the smallest unit billed
	}
	if limit := time.Duration(rj.Deal.MaxDurationS) * time.Second; d > limit {
		d = limit
	}
	return d
}

// observedRun is the job's run time by this node's own clock: from when
// it first saw the job started to when it saw it end, or last saw it
// (a running job, or one whose provider vanished), plus extra, clamped
// to the deal's maximum duration. The provider's StartedAt and
// FinishedAt count for nothing here: a provider could report any.
func observedRun(rj *Record, extra time.Duration) time.Duration {
	j := rj.Last
	if j == nil {
		return 0
	}
	start := rj.RunSeen
	if start.IsZero() {
		if j.StartedAt == nil || rj.LastSeen.IsZero() {
			return 0
		}
		// A record from before RunSeen was kept: the provider's start,
		// never before this node's record of the job was made.
		start = *j.StartedAt
		if !j.CreatedAt.IsZero() && start.Before(j.CreatedAt) {
			start = j.CreatedAt
		}
	}
	end := rj.LastSeen
	if !rj.EndSeen.IsZero() && (end.IsZero() || rj.EndSeen.Before(end)) {
		end = rj.EndSeen
	}
	// A provider's word on how long it paused the job only lowers what it
	// is paid: taken as it is.
	d := max(end.Sub(start)-time.Duration(j.PausedMs)*time.Millisecond, 0) + extra
	if limit := time.Duration(rj.Deal.MaxDurationS) * time.Second; d > limit {
		d = limit
	}
	return d
}

// payChannel signs and sends the channel's cumulative voucher: every job
// this node ran on it, at its cost so far.
func (m *Manager) payChannel(ctx context.Context, rj *Record) {
	payee, token := common.HexToAddress(rj.Deal.ProviderWallet), dealToken(rj.Deal)
	total := new(big.Int)
	var ended []*Record
	m.remote.mu.Lock()
	for _, o := range m.remote.jobs {
		if common.HexToAddress(o.Deal.ProviderWallet) == payee && dealToken(o.Deal) == token {
			c := jobPayable(o, m.ahead(o))
			o.Vouched = c.String()
			total.Add(total, c)
			if !o.Settled && o.Last != nil && o.Last.State.Terminal() {
				ended = append(ended, o)
			}
		}
	}
	m.remote.mu.Unlock()
	if prev := m.vouchers.get(m.vouchers.data.Signed, chain.ChannelID(m.wallet.Address(), payee, token)); prev != nil && prev.CumulativeAmount.Cmp(total) >= 0 {
		total = prev.CumulativeAmount.Big() // never less than before; resend it
	}
	if total.Sign() == 0 {
		m.remote.mu.Lock()
		for _, o := range ended {
			o.Settled = true // ran for no time: nothing owed
		}
		m.remote.mu.Unlock()
		return
	}
	v, err := m.chain.SignVoucher(payee, token, total)
	if err != nil {
		m.log.Warn("sign voucher", "err", err)
		return
	}
	// Kept before it is sent: a voucher the provider holds and this node
	// forgot would be signed again for less, and the provider refuses less.
	if _, err := m.vouchers.keep(m.vouchers.data.Signed, v); err != nil {
		m.log.Error("voucher not sent: keeping it failed", "provider", rj.Provider, "err", err)
		return
	}
	raw, err := json.Marshal(v)
	if err != nil {
		m.log.Error("voucher not sent", "provider", rj.Provider, "err", err)
		return
	}
	prov, _ := peer.Decode(rj.Provider)
	if _, err := m.request(ctx, prov, wireVoucher, raw); err != nil {
		m.log.Warn("voucher not delivered", "provider", rj.Provider, "err", err)
		return
	}
	m.log.Info("paid: voucher sent", "job_id", rj.ID, "provider", rj.Provider, "channel_total", m.formatAmount(chain.TokenName(token), total.String()), "jobs_settled", len(ended))
	m.remote.mu.Lock()
	for _, o := range ended {
		o.Settled = true
	}
	m.remote.mu.Unlock()
	for _, o := range ended {
		if err := m.saveRemote(o); err != nil {
			m.log.Warn("remote job record not saved", "job_id", o.ID, "err", err)
		}
	}
}

func (m *Manager) remoteStatus(ctx context.Context, rj *Record) (*jobs.Job, error) {
	return m.remoteStatusWait(ctx, rj, "", 0)
}

// remoteStatusWait asks for a job's state, held by the provider until it
// is no longer seen or wait passes (zero: answered at once).
func (m *Manager) remoteStatusWait(ctx context.Context, rj *Record, seen jobs.State, wait time.Duration) (*jobs.Job, error) {
	prov, err := peer.Decode(rj.Provider)
	if err != nil {
		return nil, err
	}
	req, _ := json.Marshal(jobIDRequest{ID: rj.remoteID(), WaitMs: wait.Milliseconds(), Seen: seen})
	resp, err := m.request(ctx, prov, wireStatus, req)
	if err != nil {
		return nil, err
	}
	var j jobs.Job
	if err := json.Unmarshal(resp, &j); err != nil {
		return nil, err
	}
	j.ID, j.Provider, j.GangStartMs = rj.ID, rj.Provider, rj.GangStartMs
	return &j, nil
}

// remoteJobByID is the requester's view of a job on a provider, refreshed.
func (m *Manager) remoteJobByID(ctx context.Context, id string) (*jobs.Job, error) {
	m.remote.mu.Lock()
	rj := m.remote.jobs[id]
	m.remote.mu.Unlock()
	if rj == nil {
		return nil, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	m.remote.mu.Lock()
	queued, settled := rj.queued(), rj.Settled
	m.remote.mu.Unlock()
	if queued {
		m.remote.mu.Lock()
		defer m.remote.mu.Unlock()
		j := *rj.Last
		return &j, nil
	}
	if !settled {
		if j, err := m.remoteStatus(ctx, rj); err == nil {
			m.remote.mu.Lock()
			rj.see(j, time.Now())
			m.remote.mu.Unlock()
		}
	}
	return m.groupView(ctx, rj), nil
}

// groupView is how the requester shows a remote job. Rank 0 of a
// distributed job stands for the whole job, as torchrun's launcher does:
// it is not done until every rank is, a rank's failure is its failure,
// and its result is a directory holding every rank's result by rank
// ("rank-0", "rank-1", ...).
func (m *Manager) groupView(ctx context.Context, rj *Record) *jobs.Job {
	m.remote.mu.Lock()
	if rj.Last == nil || len(rj.Group) < 2 || rj.Rank != 0 {
		defer m.remote.mu.Unlock()
		return rj.Last
	}
	j := *rj.Last
	results := map[string]cid.Cid{}
	var waiting, noResult []string
	for r, id := range rj.Group {
		other := m.remote.jobs[id]
		switch {
		case other == nil || other.Last == nil || !other.Last.State.Terminal():
			waiting = append(waiting, strconv.Itoa(r))
		case other.Last.State != jobs.Completed:
			if j.State == jobs.Completed || !j.State.Terminal() {
				j.State = other.Last.State
				j.Reason = fmt.Sprintf("rank %d on provider %s %s: %s", r, other.Provider, other.Last.State, other.Last.Reason)
			}
		default:
			c, err := cid.Decode(other.Last.ResultCID)
			if err != nil {
				noResult = append(noResult, strconv.Itoa(r))
				continue
			}
			results[fmt.Sprintf("rank-%d", r)] = c
		}
	}
	cached := rj.GroupResult
	m.remote.mu.Unlock()
	if j.State != jobs.Completed {
		return &j
	}
	if len(waiting) > 0 {
		j.State, j.Reason, j.ResultCID = jobs.Running, "rank 0 done; waiting for ranks "+strings.Join(waiting, ", "), ""
		return &j
	}
	if len(noResult) > 0 {
		// A completed rank always reports its outputs' CID; one without is
		// a provider's fault, not a result to leave out quietly.
		j.State, j.ResultCID = jobs.Failed, ""
		j.Reason = "ranks " + strings.Join(noResult, ", ") + " completed without a result CID (a provider fault: run the job again)"
		return &j
	}
	if cached == "" {
		dir, err := m.content.Directory(ctx, results)
		if err != nil {
			j.State, j.Reason, j.ResultCID = jobs.Uploading, "making the result directory: "+err.Error(), ""
			return &j
		}
		cached = dir.String()
		m.remote.mu.Lock()
		rj.GroupResult = cached
		m.remote.mu.Unlock()
		if err := m.saveRemote(rj); err != nil {
			m.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
		}
	}
	j.ResultCID = cached
	return &j
}

// remoteLogs copies a remote job's output; follow keeps asking until it
// ends. For rank 0 of a distributed job it interleaves every rank's lines,
// each prefixed "[rank N] "; for another rank, that rank's, prefixed.
func (m *Manager) remoteLogs(ctx context.Context, id string, follow bool, w io.Writer) error {
	if err := m.awaitStart(ctx, id, follow); err != nil || ctx.Err() != nil {
		return err
	}
	m.remote.mu.Lock()
	rj := m.remote.jobs[id]
	if rj != nil && rj.queued() {
		m.remote.mu.Unlock()
		return nil // it never ran: no output
	}
	type source struct {
		id, prefix string
		prov       peer.ID
		off        int64
		read       int64 // bytes read by this call
		partial    []byte
		done       bool
	}
	var srcs []*source
	if rj != nil {
		ids := []string{id}
		if len(rj.Group) > 1 && rj.Rank == 0 {
			ids = rj.Group
		}
		for _, gid := range ids {
			g := m.remote.jobs[gid]
			if g == nil {
				continue
			}
			p, _ := peer.Decode(g.Provider)
			src := &source{id: g.remoteID(), prov: p}
			if len(g.Group) > 1 {
				src.prefix = fmt.Sprintf("[rank %d] ", g.Rank)
			}
			srcs = append(srcs, src)
		}
	}
	m.remote.mu.Unlock()
	if rj == nil {
		return fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	flusher, _ := w.(interface{ Flush() })
	emit := func(s *source, data []byte, final bool) {
		if s.prefix == "" {
			w.Write(data)
			return
		}
		s.partial = append(s.partial, data...)
		for {
			i := bytes.IndexByte(s.partial, '\n')
			if i < 0 {
				break
			}
			w.Write([]byte(s.prefix))
			w.Write(s.partial[:i+1])
			s.partial = s.partial[i+1:]
		}
		if final && len(s.partial) > 0 {
			w.Write([]byte(s.prefix))
			w.Write(append(s.partial, '\n'))
			s.partial = nil
		}
	}
	for {
		pending := 0
		for _, s := range srcs {
			if s.done {
				continue
			}
			for { // drain what this rank has now
				req, _ := json.Marshal(jobIDRequest{ID: s.id, Offset: s.off})
				resp, err := m.request(ctx, s.prov, wireLogs, req)
				if err != nil {
					if len(srcs) == 1 {
						return err
					}
					s.done = true // a vanished rank's provider: its status says why
					break
				}
				var c logChunk
				if err := json.Unmarshal(resp, &c); err != nil {
					return err
				}
				// A provider's offsets must follow its bytes, and a log read
				// without follow ends: a provider answering full chunks
				// forever would hold the reader for good.
				if want := s.off + int64(len(c.Data)); c.Bytes != want {
					return fmt.Errorf("provider %s: log chunk ends at %d, not %d", s.prov, c.Bytes, want)
				}
				s.off = c.Bytes
				s.read += int64(len(c.Data))
				emit(s, c.Data, c.Done || !follow)
				if len(c.Data) == maxLogChunk && (follow || s.read < maxLogRead) {
					continue
				}
				s.done = c.Done || !follow
				break
			}
			if !s.done {
				pending++
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// awaitStart waits while a job is queued when following its logs: there
// are none until a provider runs it. Without follow, or once it ended
// queued, it returns at once.
func (m *Manager) awaitStart(ctx context.Context, id string, follow bool) error {
	for {
		m.remote.mu.Lock()
		rj := m.remote.jobs[id]
		waiting := rj != nil && rj.queued() && rj.Last != nil && !rj.Last.State.Terminal()
		m.remote.mu.Unlock()
		if rj == nil {
			return fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
		}
		if !waiting || !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
