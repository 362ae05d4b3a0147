package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Requester is the requester's side of market jobs: a job queued, a deal
// made, the channel funded, the job started on its provider, followed,
// paid and failed over. It shares no state with the Provider; its lock is
// never held together with the provider's.
type Requester struct {
	*base
	market  buyer
	chain   payer
	jobs    localJobs
	content directory
	pins    pinner

	// mu guards the fields below it. It is never held across a request to
	// a provider or a chain call; a method named ...Locked expects it held.
	mu sync.Mutex
	// records are the market jobs, by job ID (remote/ID.json).
	records map[string]*Record
	// waiting: each queued job's cancel; queued jobs wait under the
	// manager's context.
	waiting map[string]context.CancelFunc
	// together: the jobs dealt for from one offer (SubmitTogether), by ID.
	together map[string]*together
	// forwards: the published ports of service jobs.
	forwards map[string][]*forward
	// edges: the jobs whose state changes are watched (watchEdges).
	edges map[string]bool
	// inflight: the deals funded and not yet started, by deal ID; funding:
	// the lock each channel's fundings take turns on (taken without mu
	// held); awaiting: what each job waiting to start may cost at most
	// (awaitFunds).
	inflight map[string]market.Deal
	funding  map[common.Hash]*sync.Mutex
	awaiting map[string]*big.Int
	// pinning: the jobs whose new checkpoint is being fetched and pinned.
	pinning map[string]bool
	// elastic: the lock each elastic job's rounds take turns on (taken
	// without mu held); spares: a replacement funded for one, waiting to
	// join; seeking: the jobs whose replacement is being sought.
	elastic map[string]*sync.Mutex
	spares  map[string]*spare
	seeking map[string]bool
}

// newRequester loads the requester's records.
func newRequester(b *base) (*Requester, error) {
	rq := makeRequester(b)
	if err := rq.loadRecords(); err != nil {
		return nil, err
	}
	rq.rememberAddrs()
	return rq, nil
}

// makeRequester is a requester with nothing loaded.
func makeRequester(b *base) *Requester {
	rq := &Requester{base: b, records: map[string]*Record{}, waiting: map[string]context.CancelFunc{},
		forwards: map[string][]*forward{}, together: map[string]*together{}, edges: map[string]bool{}, inflight: map[string]market.Deal{},
		funding: map[common.Hash]*sync.Mutex{}, awaiting: map[string]*big.Int{}, pinning: map[string]bool{},
		elastic: map[string]*sync.Mutex{}, spares: map[string]*spare{}, seeking: map[string]bool{}}
	// A nil service stays a nil interface, so that "rq.jobs != nil" means
	// what it says.
	if c := b.cfg; c.Market != nil {
		rq.market = c.Market
	}
	if c := b.cfg; c.Chain != nil {
		rq.chain = c.Chain
	}
	if c := b.cfg; c.Jobs != nil {
		rq.jobs = c.Jobs
	}
	if c := b.cfg; c.Content != nil {
		rq.content, rq.pins = c.Content, c.Content
	}
	return rq
}

// submitRemote runs a spec through the market. It returns the job queued,
// at once: the deal, the funding and the start follow in the background
// (runQueued), and the job's state and reason say how they go. What can
// be told now (no max_price, a bad token or price, an empty wallet) is
// refused now.
func (rq *Requester) submitRemote(ctx context.Context, spec *jobs.Spec) (*api.Job, error) {
	return rq.SubmitRemote(ctx, spec, RemoteOptions{})
}

// RemoteOptions are a market job's settings on the requester's side only
// (they are in no deal and no spec hash).
type RemoteOptions struct {
	// Prepay, when set, is how far this job's vouchers may run ahead of
	// its run instead of Config.Prepay (job run --prepay).
	Prepay time.Duration
	// Exclude are providers (peer IDs) this job must not run on: a
	// replica's others.
	Exclude []string
	// HoldbackBps of the job's pay waits for its result's verification
	// (a checked job's run): see Requester.Settle.
	HoldbackBps int
	// Apart keeps it off providers that share a peer ID, wallet or
	// public IP with those it holds, and holds its own: a replicated
	// job's runs (market.OfferRequest.Apart).
	Apart *market.Apart
}

// avoid is what a job's deal stays off: providers by peer ID, and the
// owners apart holds.
type avoid struct {
	peers []string
	apart *market.Apart
}

// avoidPeers avoids providers by peer ID only (a retry's failed one).
func avoidPeers(peers ...string) avoid { return avoid{peers: peers} }

// SubmitRemote runs a spec through the market with opts.
func (rq *Requester) SubmitRemote(ctx context.Context, spec *jobs.Spec, opts RemoteOptions) (*api.Job, error) {
	if err := rq.checkRemote(ctx, spec, &opts); err != nil {
		return nil, err
	}
	return rq.queueRemote(spec, opts)
}

// checkRemote checks a market job's spec and options, and fills in the
// options' defaults.
func (rq *Requester) checkRemote(ctx context.Context, spec *jobs.Spec, opts *RemoteOptions) error {
	if spec.MaxPrice == "" {
		return invalid{errors.New("max_price: required for a job through the market (per GPU-hour, in whole units of the token)")}
	}
	if opts.Prepay < 0 {
		return invalid{fmt.Errorf("prepay %s: want a positive duration", opts.Prepay)}
	}
	if err := rq.checkFunds(ctx, spec); err != nil {
		return err
	}
	if opts.HoldbackBps == 0 {
		opts.HoldbackBps = spec.Verify.HoldbackBps()
	}
	return nil
}

// queueRemote records a market job as queued, starts its wait for a
// provider, and returns it. exclude are providers not to use (a retry's
// failed one).
func (rq *Requester) queueRemote(spec *jobs.Spec, opts RemoteOptions) (*api.Job, error) {
	rj, j, err := rq.recordQueued(spec, opts)
	if err != nil {
		return nil, err
	}
	rq.startQueued(rj, avoid{opts.Exclude, opts.Apart})
	return j, nil
}

// recordQueued records a market job as queued and returns its record and
// a copy of the job.
func (rq *Requester) recordQueued(spec *jobs.Spec, opts RemoteOptions) (*Record, *api.Job, error) {
	queue := queueTimeout(spec)
	now := time.Now().UTC()
	id := newJobID()
	reason := "waiting for a provider to bid"
	j := &api.Job{Job: jobs.Job{ID: id, Spec: *spec, State: api.JobQueued, Reason: reason, CreatedAt: now,
		History: []jobs.Transition{{State: api.JobQueued, Reason: reason, At: now}}}}
	rj := &Record{ID: id, Last: j, Vouched: "0", Spec: *spec, QueueUntil: now.Add(queue), Prepay: opts.Prepay, HoldbackBps: opts.HoldbackBps,
		submitted: true}
	rq.mu.Lock()
	rq.records[id] = rj
	rq.mu.Unlock()
	if err := rq.saveRemote(rj); err != nil {
		rq.mu.Lock()
		delete(rq.records, id)
		rq.mu.Unlock()
		return nil, nil, err
	}
	rq.log.Info("job queued for the market", "job_id", id, "queue", queue)
	v := *j
	return rj, &v, nil
}

// queueTimeout is the spec's timeouts.queue, 1 min by default.
func queueTimeout(spec *jobs.Spec) time.Duration {
	if d, err := time.ParseDuration(spec.Timeouts.Queue); err == nil && d > 0 {
		return d
	}
	return time.Minute
}

// startQueued runs a queued job's wait in the background.
func (rq *Requester) startQueued(rj *Record, exclude avoid) {
	ctx, cancel := context.WithCancel(rq.ctx)
	rq.mu.Lock()
	rq.waiting[rj.ID] = cancel
	rq.mu.Unlock()
	rq.spawn(func(context.Context) {
		defer func() {
			cancel()
			rq.mu.Lock()
			delete(rq.waiting, rj.ID)
			rq.mu.Unlock()
		}()
		rq.runQueued(ctx, rj, exclude)
	})
}

// runQueued waits for a deal, funds it and starts the job; on any failure
// the job fails with the reason.
func (rq *Requester) runQueued(ctx context.Context, rj *Record, exclude avoid) {
	spec := rj.Spec
	progress := func(reason string) { rq.setQueued(rj, reason) }
	defer rq.doneAwaiting(rj.ID)
	var err error
	if spec.Distributed != nil && spec.Distributed.Nodes > 1 {
		err = rq.retryFunds(rj, progress, func() error {
			_, err := rq.submitGang(ctx, &spec, rj.ID, progress)
			return err
		})
	} else {
		err = rq.startSingle(ctx, rj, exclude, progress)
	}
	if err == nil {
		return
	}
	if ctx.Err() != nil && rq.ctx.Err() != nil {
		return // the daemon is stopping: the record stays queued and resumes
	}
	rq.mu.Lock()
	canceled := rj.Last != nil && rj.Last.State == jobs.Canceled
	rq.mu.Unlock()
	if canceled {
		return
	}
	rq.log.Warn("market job failed before it started", "job_id", rj.ID, "err", err)
	rq.endQueued(rj, jobs.Failed, err.Error())
}

// startSingle is runQueued for a job on one provider: wait until the
// wallet can pay the job's worst case, make a deal, fund its channel and
// start the job there. A provider that refuses the start for the
// channel's deposit (another of this node's starts counted it first) is
// asked again with a new deal, a few times within the queue wait.
func (rq *Requester) startSingle(ctx context.Context, rj *Record, exclude avoid, progress func(string)) error {
	if err := rq.awaitFunds(ctx, rj, progress); err != nil {
		return err
	}
	return rq.retryFunds(rj, progress, func() error { return rq.startOnce(ctx, rj, exclude, progress) })
}

// retryFunds runs start again, up to three times within the job's queue
// time, while a provider refuses it for its channel's deposit: what the
// provider counts against the deposit may lag what the requester knows
// (a rank it just cancelled still stopping there), and a new deal is
// funded for what is owed then.
func (rq *Requester) retryFunds(rj *Record, progress func(string), start func() error) error {
	for attempt := 1; ; attempt++ {
		err := start()
		if err == nil || !errors.Is(err, errStartFunds) || attempt == 3 || time.Now().After(rj.QueueUntil) {
			return err
		}
		progress(fmt.Sprintf("asking again: %v", err))
	}
}

// errStartFunds: a provider refused a start for its channel's deposit.
var errStartFunds = errors.New("refused for the channel's deposit")

// startOnce makes one deal, funds it and starts the job on its provider.
func (rq *Requester) startOnce(ctx context.Context, rj *Record, exclude avoid, progress func(string)) error {
	spec := rj.Spec
	deal, err := rq.dealtTogether(ctx, rj.ID)
	if err != nil {
		return err
	}
	if deal == nil {
		deals, err := rq.dealsWithin(ctx, &spec, dealAsk{exclude: exclude, queue: time.Until(rj.QueueUntil), count: 1, holdback: rj.HoldbackBps}, progress)
		if err != nil {
			return err
		}
		deal = deals[0]
	}
	progress(fmt.Sprintf("deal %s with provider %s; funding the channel", short(deal.ID), short(deal.Provider)))
	release, err := rq.fundChannel(ctx, *deal)
	rq.doneAwaiting(rj.ID) // deposited or not, the wallet's funds are counted as they are now
	if err != nil {
		rq.releaseDeal(ctx, *deal)
		return err
	}
	defer release()
	prov, _ := peer.Decode(deal.Provider)
	req, _ := json.Marshal(startRequest{DealID: deal.ID, Spec: spec, JobID: rj.ID})
	resp, err := rq.request(ctx, prov, wireStart, req)
	if err != nil {
		if strings.Contains(err.Error(), fundsRefusal) {
			return fmt.Errorf("provider %s %w: %v", short(deal.Provider), errStartFunds, err)
		}
		if strings.Contains(err.Error(), notFinalRefusal) {
			resp, err = rq.startWhenFinal(ctx, rj, prov, req, progress)
		}
	}
	if err != nil {
		rq.market.Reputation().NoShow(deal.Provider)
		return fmt.Errorf("provider %s did not start the job: %w", deal.Provider, err)
	}
	var j api.Job
	if err := json.Unmarshal(resp, &j); err != nil {
		return fmt.Errorf("provider %s: %w", deal.Provider, err)
	}
	remoteID, err := providerJobID(rj.ID, j.ID)
	if err != nil {
		return fmt.Errorf("provider %s: %w", deal.Provider, err)
	}
	j.ID, j.Provider, j.ProviderWallet, j.ProviderIP = rj.ID, deal.Provider, deal.ProviderWallet, rq.publicIP(deal.Provider)
	rq.mu.Lock()
	rj.Remote, rj.Provider, rj.Deal, rj.QueueUntil = remoteID, deal.Provider, *deal, time.Time{}
	rj.Answered = time.Now()
	rj.see(&j, rj.Answered)
	rq.mu.Unlock()
	if err := rq.saveRemote(rj); err != nil {
		rq.log.Error("record of a started job not saved", "job_id", rj.ID, "err", err)
	}
	rq.watchEdges(rj)
	rq.log.Info("job started on a provider", "job_id", rj.ID, "provider", deal.Provider, "deal_id", short(deal.ID))
	return nil
}

// startWhenFinal asks a provider again to start a deal whose deposit
// was not yet at its confirmation depth, every block or so, until it
// starts, refuses for another reason, or the queue wait ends.
func (rq *Requester) startWhenFinal(ctx context.Context, rj *Record, prov peer.ID, req []byte, progress func(string)) ([]byte, error) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		resp, err := rq.request(ctx, prov, wireStart, req)
		if err == nil || !strings.Contains(err.Error(), notFinalRefusal) || time.Now().After(rj.QueueUntil.Add(2*time.Minute)) {
			return resp, err
		}
		progress("waiting for the deposit to be final at the provider's confirmations: " + err.Error())
	}
}

// releaseDeal tells a deal's provider that this node will not start it
// (it could not fund it), so that its GPUs are free at once rather than
// held to the end of the start window.
func (rq *Requester) releaseDeal(ctx context.Context, deal market.Deal) {
	prov, err := peer.Decode(deal.Provider)
	if err != nil {
		return
	}
	req, _ := json.Marshal(jobIDRequest{ID: deal.ID})
	if _, err := rq.request(ctx, prov, wireRelease, req); err != nil {
		rq.log.Debug("deal release not delivered", "deal_id", short(deal.ID), "err", err)
	}
}

// setQueued updates a queued job's reason.
func (rq *Requester) setQueued(rj *Record, reason string) {
	rq.mu.Lock()
	if rj.Last == nil || rj.Last.State != api.JobQueued || !rj.queued() {
		rq.mu.Unlock()
		return
	}
	j := *rj.Last
	j.Reason = reason
	rj.Last = &j
	rq.mu.Unlock()
	if err := rq.saveRemote(rj); err != nil {
		rq.log.Warn("queued job's reason not saved", "job_id", rj.ID, "err", err)
	}
}

// endQueued ends a job that never started.
func (rq *Requester) endQueued(rj *Record, state jobs.State, reason string) {
	now := time.Now().UTC()
	rq.mu.Lock()
	// A gang's rank 0 replaces the queued record once it starts; the
	// record that ends here must still be the job's.
	if rj.Last == nil || rj.Last.State.Terminal() || rq.records[rj.ID] != rj {
		rq.mu.Unlock()
		return
	}
	j := *rj.Last
	j.State, j.Reason, j.FinishedAt = state, reason, &now
	j.History = append(append([]jobs.Transition(nil), j.History...), jobs.Transition{State: state, Reason: reason, At: now})
	rj.Last, rj.Settled = &j, true
	rq.mu.Unlock()
	if err := rq.saveRemote(rj); err != nil {
		rq.log.Error("record of a failed job not saved", "job_id", rj.ID, "err", err)
	}
}

// resumeQueued picks up the jobs that were queued when the daemon
// stopped: each waits out what is left of its queue timeout, and one whose
// timeout passed while the daemon was down fails with that reason.
func (rq *Requester) resumeQueued() {
	rq.mu.Lock()
	var todo []*Record
	for _, rj := range rq.records {
		if rj.queued() && rj.Last != nil && rj.Last.State == api.JobQueued && rq.waiting[rj.ID] == nil && !rj.submitted {
			todo = append(todo, rj)
		}
	}
	rq.mu.Unlock()
	for _, rj := range todo {
		if time.Now().After(rj.QueueUntil) {
			rq.endQueued(rj, jobs.Failed, "timeouts.queue ran out while the daemon was down; last: "+rj.Last.Reason)
			continue
		}
		rq.log.Info("queued job resumed", "job_id", rj.ID, "until", rj.QueueUntil)
		rq.startQueued(rj, avoid{})
	}
}

// dealAsk is what dealsWithin asks the market for besides the spec.
type dealAsk struct {
	exclude avoid         // providers not to deal with
	queue   time.Duration // how long to ask again; negative: timeouts.queue
	count   int           // deals with different providers, from one offer
	// holdback of the pay, in basis points, waits for the result's verdict.
	holdback int
	// place, when set, chooses among several bidders (a gang's ranks).
	place market.Placer
}

// dealsWithin negotiates up to count deals with different providers from
// one offer, asking again within the queue wait (negative: the spec's
// timeouts.queue) until at least one is made; progress hears why each
// round made none. The caller funds them.
func (rq *Requester) dealsWithin(ctx context.Context, spec *jobs.Spec, ask dealAsk, progress func(string)) ([]*market.Deal, error) {
	exclude, queue, count := ask.exclude, ask.queue, ask.count
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
		deals, _, err = rq.negotiate(ctx, api.OfferRequest{Resources: spec.Resources,
			MaxPrice: spec.MaxPrice, Duration: spec.ExecutionTimeout().String(), Image: spec.Image, SpecHash: hash,
			Verified: spec.Require != nil && spec.Require.Verified, HoldbackBps: ask.holdback,
		}, exclude, count, ask.place)
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

// cancelRemote asks the provider to stop a job.
func (rq *Requester) cancelRemote(ctx context.Context, id string) (*api.Job, error) {
	rq.mu.Lock()
	rj := rq.records[id]
	rq.mu.Unlock()
	if rj == nil {
		return nil, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	rq.mu.Lock()
	stopWait, queued := rq.waiting[id], rj.queued()
	var last jobs.State
	if rj.Last != nil {
		last = rj.Last.State
	}
	rq.mu.Unlock()
	if queued {
		if last.Terminal() {
			return nil, fmt.Errorf("%w: %s is %s", jobs.ErrFinished, id, last)
		}
		rq.endQueued(rj, jobs.Canceled, "canceled while queued")
		if stopWait != nil {
			stopWait()
		}
		rq.mu.Lock()
		j := *rj.Last
		rq.mu.Unlock()
		return &j, nil
	}
	prov, _ := peer.Decode(rj.Provider)
	req, _ := json.Marshal(jobIDRequest{ID: rj.remoteID()})
	resp, err := rq.request(ctx, prov, wireCancel, req)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", rj.Provider, err)
	}
	var j api.Job
	if err := json.Unmarshal(resp, &j); err != nil {
		return nil, fmt.Errorf("provider %s: %w", rj.Provider, err)
	}
	j.ID, j.Provider, j.ProviderWallet, j.ProviderIP = rj.ID, rj.Provider, rj.Deal.ProviderWallet, rq.publicIP(rj.Provider)
	rq.endForwards(rj.ID) // its local ports close with it, not at the next poll
	return &j, nil
}
