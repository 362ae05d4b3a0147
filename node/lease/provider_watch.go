package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p/overlay"
	"github.com/libp2p/go-libp2p/core/peer"
)

// watchProvided stops a job whose vouchers stop covering it (see
// paySlack), or whose GPU fails, and frees the deal's GPUs when it ends.
func (pv *Provider) watchProvided(ctx context.Context, id string, deal market.Deal) {
	defer func() {
		if pv.market != nil {
			pv.market.Release(deal.ID)
		}
	}()
	defer pv.freeRank(id)
	changes, unsub := pv.gpus.Subscribe()
	defer unsub()
	ours := map[string]bool{}
	for _, u := range deal.GPUs {
		ours[u] = true
	}
	// Checked four times an interval: a job whose pay stops runs at most a
	// quarter interval past its slack.
	t := time.NewTicker(max(pv.interval/4, 100*time.Millisecond))
	defer t.Stop()
	w := &watched{id: id, deal: deal}
	defer func() {
		if !w.stopping {
			pv.endProvided(id, w.started, w.finished)
			pv.dropNet(id)
			if pv.portServer != nil {
				pv.portServer.CloseJob(id)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			w.stopping = true // the daemon stops: the job goes on, watched again at the next start
			return
		case c := <-changes:
			if ours[c.UUID] && c.To == gpu.Unhealthy {
				pv.log.Warn("a job's GPU failed; stopping the job", "job_id", id, "uuid", c.UUID, "reason", c.Reason)
				pv.jobs.Fail(id, fmt.Sprintf("GPU %s became unhealthy: %s", c.UUID, c.Reason))
			}
			continue
		case <-t.C:
		}
		if pv.checkWatched(ctx, w) {
			return
		}
	}
}

// watched is a provided job as its watch last saw it.
type watched struct {
	id                string
	deal              market.Deal
	started, finished *time.Time
	stopping          bool
}

// fail stops the job with why and keeps its times.
func (w *watched) fail(pv *Provider, why string) {
	if f, err := pv.jobs.Fail(w.id, why); err == nil {
		w.started, w.finished = f.StartedAt, f.FinishedAt
	}
}

// checkWatched is one look at a provided job: it notes its start, and
// stops it when its deal's duration is over or its pay has stopped. It
// reports whether the watch is over.
func (pv *Provider) checkWatched(ctx context.Context, w *watched) bool {
	j, err := pv.jobs.Get(w.id)
	if err != nil {
		return true
	}
	w.started, w.finished = j.StartedAt, j.FinishedAt
	if j.State.Terminal() {
		return true
	}
	// Nothing is owed before the job runs (a gang's rank waits for the
	// others, an image loads): the vouchers are due from its start.
	if j.StartedAt != nil {
		pv.mu.Lock()
		if _, ok := pv.runSince[w.id]; !ok {
			pv.runSince[w.id] = *j.StartedAt
		}
		pv.mu.Unlock()
	}
	if j.State != jobs.Running {
		return false
	}
	// The deal pays for its duration and no more: a service (which has no
	// execution limit of its own) ends with it. A batch job times out
	// first (its execution fits the deal): an interval later.
	if max := time.Duration(w.deal.MaxDurationS) * time.Second; j.StartedAt != nil && time.Since(*j.StartedAt) >= max+pv.interval {
		pv.log.Info("deal's duration ended; stopping the job", "job_id", w.id, "deal_id", short(w.deal.ID))
		w.fail(pv, fmt.Sprintf("the deal's duration (%s) ended: a job runs for its deal's duration at most; start a new one to go on", max))
		return true
	}
	if why := pv.unpaid(w.id, time.Now()); why != "" {
		if pv.pauseUnpaid(ctx, w.id, why) {
			return false // paused within its grace: pay may resume
		}
		pv.log.Warn("vouchers stopped; stopping the job", "job_id", w.id, "requester", w.deal.Requester, "why", why)
		w.fail(pv, why)
		return true
	}
	if why := pv.resumePaid(ctx, w.id); why != "" {
		pv.log.Warn("paused and not paid up within the grace; stopping the job", "job_id", w.id, "requester", w.deal.Requester, "why", why)
		w.fail(pv, why)
		return true
	}
	return false
}

// freeRank frees a distributed rank's port and stops serving its job
// network as a relay.
func (pv *Provider) freeRank(id string) {
	pv.mu.Lock()
	if p, ok := pv.portOf[id]; ok {
		delete(pv.ports, p)
		delete(pv.portOf, id)
	}
	nr, onNet := pv.netOf[id]
	delete(pv.netOf, id)
	pv.mu.Unlock()
	if onNet && pv.p2p != nil {
		pv.p2p.DisallowRelay(nr.id)
	}
}

func (pv *Provider) handleJobCancel(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	_, r, err := pv.providedJob(from, req)
	if err != nil {
		return nil, err
	}
	var j *jobs.Job
	if r.Reason != "" {
		j, err = pv.jobs.Fail(r.ID, r.Reason)
	} else {
		j, err = pv.jobs.Cancel(r.ID)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// providedJob reads a request about one of our jobs: only the requester of
// its deal may ask.
func (pv *Provider) providedJob(from peer.ID, req []byte) (*jobs.Job, jobIDRequest, error) {
	var r jobIDRequest
	if err := json.Unmarshal(req, &r); err != nil {
		return nil, r, err
	}
	pv.mu.Lock()
	deal, ok := pv.provided[r.ID]
	pv.mu.Unlock()
	if !ok || deal.Requester != from.String() {
		return nil, r, fmt.Errorf("no job %s of yours here", r.ID)
	}
	if pv.jobs == nil {
		// Restarted without its container runtime: the records are here,
		// the jobs are not reachable.
		return nil, r, fmt.Errorf("this provider cannot run jobs now: %v", pv.jobsErr)
	}
	j, err := pv.jobs.Get(r.ID)
	return j, r, err
}

func (pv *Provider) handleJobStatus(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	j, r, err := pv.providedJob(from, req)
	if err != nil {
		return nil, err
	}
	if r.WaitMs > 0 && j.State == r.Seen && !j.State.Terminal() {
		wctx, cancel := context.WithTimeout(ctx, time.Duration(min(r.WaitMs, maxStatusWait.Milliseconds()))*time.Millisecond)
		j, err = pv.jobs.AwaitChange(wctx, r.ID, r.Seen)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	// The requester bills no paused time: it is told all of it so far, a
	// duration by this daemon's clock.
	j.PausedMs = j.Paused(time.Now()).Milliseconds()
	v := api.Job{Job: *j}
	pv.annotateNet(&v)
	return json.Marshal(v)
}

// annotateNet adds a rank's job network, as this daemon carries it.
func (pv *Provider) annotateNet(j *api.Job) {
	pv.mu.Lock()
	nr, ok := pv.netOf[j.ID]
	pv.mu.Unlock()
	if !ok || pv.jobNet == nil {
		return
	}
	st, ok := pv.jobNet.Stat(nr.id)
	if !ok {
		return
	}
	n := &api.JobNetwork{Addr: overlay.RankAddr(nr.rank).String(), Dropped: st.Dropped}
	for _, p := range st.Peers {
		n.Peers = append(n.Peers, api.JobNetworkPeer{Rank: p.Rank, Peer: p.Peer, Path: p.Path, TxBytes: p.TxBytes, RxBytes: p.RxBytes})
	}
	j.Network = n
}

func (pv *Provider) handleJobLogs(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	j, r, err := pv.providedJob(from, req)
	if err != nil {
		return nil, err
	}
	if r.Offset < 0 {
		return nil, fmt.Errorf("logs: offset %d: want 0 or more", r.Offset)
	}
	c, err := pv.jobs.ReadLog(j.ID, r.Offset, maxLogChunk)
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	return json.Marshal(logChunk{Data: c.Data, Done: c.Done, Bytes: c.Next})
}

// jobsGet is a provided job's record; an error where this node runs none.
func (pv *Provider) jobsGet(id string) (*jobs.Job, error) {
	if pv.jobs == nil {
		return nil, errors.New("no jobs here")
	}
	return pv.jobs.Get(id)
}

// running counts the deals whose job has not ended.
func (pv *Provider) running() int {
	if pv.jobs == nil {
		return 0
	}
	pv.mu.Lock()
	ids := make([]string, 0, len(pv.provided))
	for id := range pv.provided {
		ids = append(ids, id)
	}
	pv.mu.Unlock()
	n := 0
	for _, id := range ids {
		if j, err := pv.jobs.Get(id); err == nil && !j.State.Terminal() {
			n++
		}
	}
	return n
}
