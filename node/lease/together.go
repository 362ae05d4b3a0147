package lease

import (
	"context"
	"fmt"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
)

// Jobs dealt for together: a replicated job's runs go to k providers
// that share no owner from one offer and one bid window (its bidders
// kept apart by the market), not from k offers one after another. Each
// run is then an ordinary market job: funded, started and followed on
// its own; one whose deal does not start (its provider refused, or no
// deal came for it) makes a deal alone, as any queued job does.

// together is one offer's deals for its jobs: ready once negotiated.
type together struct {
	ready chan struct{}
	deals map[string]*market.Deal // job ID -> its deal; taken once
}

// SubmitTogether queues k market jobs of spec whose deals are made from
// one offer, with different providers kept apart as opts says.
func (rq *Requester) SubmitTogether(ctx context.Context, spec *jobs.Spec, k int, opts RemoteOptions) ([]*api.Job, error) {
	if k < 1 {
		return nil, invalid{fmt.Errorf("%d jobs to deal for together: want 1 or more", k)}
	}
	if err := rq.checkRemote(ctx, spec, &opts); err != nil {
		return nil, err
	}
	t := &together{ready: make(chan struct{}), deals: map[string]*market.Deal{}}
	var rjs []*Record
	var out []*api.Job
	for range k {
		rj, j, err := rq.recordQueued(spec, opts)
		if err != nil {
			close(t.ready)
			for _, o := range rjs { // queued already: each deals alone
				rq.startQueued(o, avoid{opts.Exclude, opts.Apart})
			}
			return nil, err
		}
		rjs, out = append(rjs, rj), append(out, j)
	}
	rq.mu.Lock()
	for _, rj := range rjs {
		rq.together[rj.ID] = t
	}
	rq.mu.Unlock()
	rq.spawn(func(ctx context.Context) { rq.dealTogether(ctx, t, rjs, opts) })
	for _, rj := range rjs {
		rq.startQueued(rj, avoid{opts.Exclude, opts.Apart})
	}
	return out, nil
}

// dealTogether negotiates one round for every job of t, then lets their
// starts go on: each with its deal, or alone.
func (rq *Requester) dealTogether(ctx context.Context, t *together, rjs []*Record, opts RemoteOptions) {
	defer close(t.ready)
	spec := rjs[0].Spec
	deals, err := rq.dealsWithin(ctx, &spec, dealAsk{exclude: avoid{opts.Exclude, opts.Apart}, count: len(rjs), holdback: opts.HoldbackBps}, nil)
	if err != nil {
		rq.log.Info("jobs dealt for together: no deal from the shared offer; each asks alone", "jobs", len(rjs), "err", err)
		return
	}
	rq.mu.Lock()
	defer rq.mu.Unlock()
	for i, d := range deals {
		if i < len(rjs) {
			t.deals[rjs[i].ID] = d
		}
	}
	rq.log.Info("jobs dealt for together from one offer", "jobs", len(rjs), "deals", len(deals))
}

// dealtTogether is job id's deal from its shared offer, once that was
// negotiated; nil when the job was not dealt for together, or its deal
// was taken or never made.
func (rq *Requester) dealtTogether(ctx context.Context, id string) (*market.Deal, error) {
	rq.mu.Lock()
	t := rq.together[id]
	rq.mu.Unlock()
	if t == nil {
		return nil, nil
	}
	select {
	case <-t.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	rq.mu.Lock()
	defer rq.mu.Unlock()
	d := t.deals[id]
	delete(t.deals, id)
	delete(rq.together, id)
	return d, nil
}
