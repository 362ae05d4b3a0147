package lease

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/node/api"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// followRemote is the requester's loop: it refreshes its remote jobs'
// states and signs cumulative vouchers for their GPU time every interval,
// and a final one when a job ends.
func (rq *Requester) followRemote(ctx context.Context) {
	defer rq.stop() // queued jobs stop waiting with the daemon
	rq.resumeQueued()
	every(ctx, rq.interval, func() { rq.followOnce(ctx) })
}

// followOnce is one round of followRemote.
func (rq *Requester) followOnce(ctx context.Context) {
	rq.mu.Lock()
	var live []*Record
	for _, rj := range rq.records {
		if !rj.Settled && !rj.queued() {
			live = append(live, rj)
		}
	}
	rq.mu.Unlock()
	channels := map[common.Hash]bool{}
	for _, rj := range live {
		if j, err := rq.remoteStatus(ctx, rj); err == nil {
			rq.observe(ctx, rj, j)
			rq.watchEdges(rj)
		} else {
			rq.providerMissing(ctx, rj, err)
		}
		channels[chain.ChannelID(rq.wallet.Address(), common.HexToAddress(rj.Deal.ProviderWallet), dealToken(rj.Deal))] = true
	}
	for _, rj := range live {
		id := chain.ChannelID(rq.wallet.Address(), common.HexToAddress(rj.Deal.ProviderWallet), dealToken(rj.Deal))
		if channels[id] {
			delete(channels, id)
			rq.payChannel(ctx, rj)
		}
	}
	rq.followElastic()
}

// observe records the provider's answer about a job and acts on its end:
// its forwards close, its provider is rated, and a distributed job fails
// with one of its ranks, as torchrun does.
func (rq *Requester) observe(ctx context.Context, rj *Record, j *api.Job) {
	rq.mu.Lock()
	rj.see(j, time.Now())
	rq.mu.Unlock()
	if j.State.Terminal() {
		rq.endForwards(rj.ID)
	}
	rq.rate(rj)
	if err := rq.saveRemote(rj); err != nil {
		rq.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
	}
	rq.noteCheckpoint(rj, j.CheckpointCID)
	switch {
	case rq.elasticGoing(rj):
		rq.followElastic() // its round judges a rank's end or wait
	case len(rj.Group) > 1 && j.State.Terminal() && j.State != jobs.Completed:
		rq.failGroup(ctx, rj.Group, fmt.Sprintf("rank %d on provider %s %s: %s", rj.Rank, rj.Provider, j.State, j.Reason))
	}
}

// watchEdges follows one running job's state as it changes (a status
// request the provider holds until it does), so that its start and end
// are seen when they happen and the final voucher goes out at the end,
// not up to an interval later. One watcher a job; the interval's round
// (followOnce) still refreshes, pays and notices a vanished provider.
func (rq *Requester) watchEdges(rj *Record) {
	rq.mu.Lock()
	if rq.edges[rj.ID] || rj.Settled || rj.queued() || (rj.Last != nil && rj.Last.State.Terminal()) {
		rq.mu.Unlock()
		return
	}
	rq.edges[rj.ID] = true
	rq.mu.Unlock()
	rq.spawn(func(ctx context.Context) {
		defer func() {
			rq.mu.Lock()
			delete(rq.edges, rj.ID)
			rq.mu.Unlock()
		}()
		for ctx.Err() == nil {
			rq.mu.Lock()
			seen := jobs.State("")
			if rj.Last != nil {
				seen = rj.Last.State
			}
			done := rj.Settled || seen.Terminal()
			rq.mu.Unlock()
			if done {
				return
			}
			asked := time.Now()
			j, err := rq.remoteStatusWait(ctx, rj, seen, maxStatusWait)
			if err != nil || j.State == seen {
				// A provider that cannot hold the answer (or is away):
				// the interval's round carries on; ask again shortly.
				pause := time.Until(asked.Add(min(rq.interval, 2*time.Second)))
				select {
				case <-ctx.Done():
					return
				case <-time.After(pause):
				}
				continue
			}
			rq.observe(ctx, rj, j)
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
				rq.payChannel(ctx, rj) // the final voucher, for the exact run time
				return
			case j.State == jobs.Running && seen != jobs.Running:
				rq.payChannel(ctx, rj) // it runs: the prepay goes out now
			}
		}
	})
}

// rate counts a remote job's end in its provider's reputation, once: a
// completed job is a deal kept; a failure that is not the job's own (no
// exit code: the GPU, the container, the inputs on the provider's side)
// one failed. A job that exited non-zero, timed out, was canceled, or
// was stopped because another rank failed says nothing of the provider.
func (rq *Requester) rate(rj *Record) {
	rq.mu.Lock()
	j := rj.Last
	if rj.Rated || j == nil || !j.State.Terminal() {
		rq.mu.Unlock()
		return
	}
	rj.Rated = true
	rq.mu.Unlock()
	switch {
	case j.State == jobs.Completed:
		rq.market.Reputation().Completed(rj.Provider)
	case providerFault(&j.Job):
		rq.market.Reputation().Failed(rj.Provider)
	}
}

// providerMissing marks a job unknown when its provider stops answering,
// failed after the grace window (five voucher intervals, at least 10 s),
// and then retries it elsewhere if its spec says so.
func (rq *Requester) providerMissing(ctx context.Context, rj *Record, err error) {
	grace := max(5*rq.interval, 10*time.Second)
	rq.mu.Lock()
	last := *rj.Last
	if last.State.Terminal() {
		rq.mu.Unlock()
		return
	}
	// A daemon that was down did not look: the grace starts when it
	// started again, not at the last sight before it went down.
	since := rj.LastSeen
	if started := rq.startedAt(); started.After(since) {
		since = started
	}
	gone := time.Since(since)
	if gone < grace {
		if last.State != api.JobUnknown {
			last.State, last.Reason = api.JobUnknown, fmt.Sprintf("provider %s not answering: %v", short(rj.Provider), err)
			rj.Last = &last
		}
		rq.mu.Unlock()
		if err := rq.saveRemote(rj); err != nil {
			rq.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
		}
		return
	}
	rq.mu.Unlock()
	// The job stays unknown while a retry is arranged, so that whoever
	// watches it sees failed and the retry together.
	reason := fmt.Sprintf("provider %s unreachable for %s", rj.Provider, gone.Round(time.Second))
	var retried string
	if rj.Spec.Retry.Attempts > 0 && len(rj.Group) <= 1 {
		spec := rj.Spec
		spec.Retry.Attempts--
		if j, err := rq.queueRemote(&spec, RemoteOptions{Exclude: []string{rj.Provider}, Prepay: rj.Prepay, HoldbackBps: rj.HoldbackBps}); err != nil {
			reason += "; retry failed: " + err.Error()
		} else {
			retried = j.ID
			reason += "; retried as " + j.ID
		}
	}
	rq.mu.Lock()
	rated := rj.Rated
	rj.Rated = true
	rq.mu.Unlock()
	if !rated {
		rq.market.Reputation().Failed(rj.Provider)
	}
	rq.log.Warn("remote job failed: provider unreachable", "job_id", rj.ID, "provider", rj.Provider, "retried_as", retried)
	now := time.Now().UTC()
	rq.mu.Lock()
	last.State, last.Reason, last.FinishedAt = jobs.Failed, reason, &now
	rj.Last, rj.RetriedAs = &last, retried
	rj.Unreachable, rj.Settled = true, true // no more vouchers: paid up to the last sight
	rq.mu.Unlock()
	rq.endForwards(rj.ID)
	if err := rq.saveRemote(rj); err != nil {
		rq.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
	}
	rq.spawn(func(ctx context.Context) { rq.settleReceipt(ctx, rj) })
	if len(rj.Group) > 1 && !rq.elasticGoing(rj) {
		rq.failGroup(ctx, rj.Group, fmt.Sprintf("rank %d: %s", rj.Rank, reason))
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
//
// A deal that holds back part of the pay is vouched for less that share
// until its result is judged paid (Settle).
func jobPayable(rj *Record, ahead time.Duration) *big.Int {
	c := jobCost(rj)
	if !ended(rj) {
		c = dealCost(rj.Deal, observedRun(rj, ahead))
	}
	if holdbackState(rj) == holdbackPaid {
		return c
	}
	return payable(rj.Deal, c)
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
func (rq *Requester) ahead(rj *Record) time.Duration {
	if rj.Deal.HoldbackBps > 0 {
		// What runs ahead is paid before the verdict: a prepay would
		// pay the share held back before the result is judged.
		return rq.interval
	}
	if rj.Prepay > 0 {
		// Asked for this job (job run --prepay): taken as it is, its risk
		// accepted, so that a job just started from a laptop survives
		// the laptop's sleep.
		return max(rq.interval, rj.Prepay)
	}
	p := rq.cfg.Prepay
	if p == 0 {
		p = max(10*rq.interval, time.Minute)
	}
	return max(rq.interval, min(p, observedRun(rj, 0)))
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
func (rq *Requester) payChannel(ctx context.Context, rj *Record) {
	payee, token := common.HexToAddress(rj.Deal.ProviderWallet), dealToken(rj.Deal)
	total := new(big.Int)
	var ended []*Record
	// held is each ended job's holdback as vouched: one that Settle pays
	// meanwhile stays unsettled, for the next voucher to carry.
	held := map[*Record]string{}
	rq.mu.Lock()
	for _, o := range rq.records {
		if common.HexToAddress(o.Deal.ProviderWallet) == payee && dealToken(o.Deal) == token {
			c := jobPayable(o, rq.ahead(o))
			o.Vouched = c.String()
			total.Add(total, c)
			if !o.Settled && o.Last != nil && o.Last.State.Terminal() {
				ended = append(ended, o)
				held[o] = holdbackState(o)
			}
		}
	}
	rq.mu.Unlock()
	if prev := rq.vouchers.get(rq.vouchers.data.Signed, chain.ChannelID(rq.wallet.Address(), payee, token)); prev != nil && prev.CumulativeAmount.Cmp(total) >= 0 {
		total = prev.CumulativeAmount.Big() // never less than before; resend it
	}
	if total.Sign() == 0 {
		rq.mu.Lock()
		for _, o := range ended {
			o.Settled = true // ran for no time: nothing owed
		}
		rq.mu.Unlock()
		return
	}
	v, err := rq.chain.SignVoucher(payee, token, total)
	if err != nil {
		rq.log.Warn("sign voucher", "err", err)
		return
	}
	// Kept before it is sent: a voucher the provider holds and this node
	// forgot would be signed again for less, and the provider refuses less.
	if _, err := rq.vouchers.keep(rq.vouchers.data.Signed, v); err != nil {
		rq.log.Error("voucher not sent: keeping it failed", "provider", rj.Provider, "err", err)
		return
	}
	raw, err := json.Marshal(v)
	if err != nil {
		rq.log.Error("voucher not sent", "provider", rj.Provider, "err", err)
		return
	}
	prov, _ := peer.Decode(rj.Provider)
	if _, err := rq.request(ctx, prov, wireVoucher, raw); err != nil {
		rq.log.Warn("voucher not delivered", "provider", rj.Provider, "err", err)
		return
	}
	rq.log.Info("paid: voucher sent", "job_id", rj.ID, "provider", rj.Provider, "channel_total", rq.formatAmount(chain.TokenName(token), total.String()), "jobs_settled", len(ended))
	var receipts []*Record
	rq.mu.Lock()
	for _, o := range ended {
		if holdbackState(o) != held[o] {
			continue
		}
		o.Settled = true
		if !awaitsVerdict(o) { // else Settle makes it, with the verdict
			receipts = append(receipts, o)
		}
	}
	rq.mu.Unlock()
	for _, o := range ended {
		if err := rq.saveRemote(o); err != nil {
			rq.log.Warn("remote job record not saved", "job_id", o.ID, "err", err)
		}
	}
	for _, o := range receipts {
		rq.spawn(func(ctx context.Context) { rq.settleReceipt(ctx, o) })
	}
}

func (rq *Requester) remoteStatus(ctx context.Context, rj *Record) (*api.Job, error) {
	return rq.remoteStatusWait(ctx, rj, "", 0)
}

// remoteStatusWait asks for a job's state, held by the provider until it
// is no longer seen or wait passes (zero: answered at once).
func (rq *Requester) remoteStatusWait(ctx context.Context, rj *Record, seen jobs.State, wait time.Duration) (*api.Job, error) {
	// A start on another provider (a retry) rewrites these under rq.mu.
	rq.mu.Lock()
	provider, remote, gangMs, placed, wallet := rj.Provider, rj.remoteID(), rj.GangStartMs, rj.Placement, rj.Deal.ProviderWallet
	rq.mu.Unlock()
	prov, err := peer.Decode(provider)
	if err != nil {
		return nil, err
	}
	req, _ := json.Marshal(jobIDRequest{ID: remote, WaitMs: wait.Milliseconds(), Seen: seen})
	resp, err := rq.request(ctx, prov, wireStatus, req)
	if err != nil {
		return nil, err
	}
	var j api.Job
	if err := json.Unmarshal(resp, &j); err != nil {
		return nil, err
	}
	j.ID, j.Provider, j.GangStartMs, j.Placement = rj.ID, provider, gangMs, placed
	j.ProviderWallet, j.ProviderIP = wallet, rq.publicIP(provider)
	return &j, nil
}

// remoteJobByID is the requester's view of a job on a provider, refreshed.
// peek is the requester's view of a job as last seen, not refreshed.
func (rq *Requester) peek(ctx context.Context, id string) (*api.Job, error) {
	rq.mu.Lock()
	rj := rq.records[id]
	rq.mu.Unlock()
	if rj == nil {
		return nil, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	j := *rq.groupView(ctx, rj) // a copy: the record's changes are made under rq.mu
	return &j, nil
}

func (rq *Requester) remoteJobByID(ctx context.Context, id string) (*api.Job, error) {
	rq.mu.Lock()
	rj := rq.records[id]
	refresh := rj != nil && !rj.queued() && !rj.Settled
	rq.mu.Unlock()
	if refresh {
		if j, err := rq.remoteStatus(ctx, rj); err == nil {
			rq.mu.Lock()
			rj.see(j, time.Now())
			rq.mu.Unlock()
		}
	}
	return rq.peek(ctx, id)
}

// groupView is how the requester shows a remote job. Rank 0 of a
// distributed job stands for the whole job, as torchrun's launcher does:
// it is not done until every rank is, a rank's failure is its failure,
// and its result is a directory holding every rank's result by rank
// ("rank-0", "rank-1", ...).
func (rq *Requester) groupView(ctx context.Context, rj *Record) *api.Job {
	return rq.withCheckpoint(rj, rq.rankView(ctx, rj))
}

// rankView is groupView before the checkpoint.
func (rq *Requester) rankView(ctx context.Context, rj *Record) *api.Job {
	rq.mu.Lock()
	if rj.Last == nil || !rj.isHead() {
		defer rq.mu.Unlock()
		return rj.Last
	}
	j := *rj.Last
	results := map[string]cid.Cid{}
	var waiting, noResult []string
	// An elastic job whose restarts go on has lost a rank, not failed:
	// its round restarts the gang (which can wait minutes for a
	// replacement to prepare).
	elastic := rj.Elastic != nil && !rj.Elastic.Over
	for r, id := range rj.Group {
		other := rq.records[id]
		switch {
		case other == nil || other.Last == nil || !other.Last.State.Terminal():
			waiting = append(waiting, strconv.Itoa(r))
		case other.Last.State != jobs.Completed && elastic:
			j.State, j.Reason = jobs.Running, fmt.Sprintf("rank %d lost (%s: %s): the gang restarts", r, other.Last.State, other.Last.Reason)
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
	rq.mu.Unlock()
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
		dir, err := rq.content.Directory(ctx, results)
		if err != nil {
			j.State, j.Reason, j.ResultCID = jobs.Uploading, "making the result directory: "+err.Error(), ""
			return &j
		}
		cached = dir.String()
		rq.mu.Lock()
		rj.GroupResult = cached
		rq.mu.Unlock()
		if err := rq.saveRemote(rj); err != nil {
			rq.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
		}
	}
	j.ResultCID = cached
	return &j
}

// awaitStart waits while a job is queued when following its logs: there
// are none until a provider runs it. Without follow, or once it ended
// queued, it returns at once.
func (rq *Requester) awaitStart(ctx context.Context, id string, follow bool) error {
	for {
		rq.mu.Lock()
		rj := rq.records[id]
		waiting := rj != nil && rj.queued() && rj.Last != nil && !rj.Last.State.Terminal()
		rq.mu.Unlock()
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
