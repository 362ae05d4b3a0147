package lease

import (
	"context"
	"fmt"
	"math/big"
	"sort"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
)

// listInto adds the requester's market jobs to top, rank 0s and single
// jobs, and returns the other ranks by their rank 0's ID.
func (rq *Requester) listInto(ctx context.Context, top []api.JobListEntry) ([]api.JobListEntry, map[string][]api.JobListEntry) {
	rq.mu.Lock()
	var remote []*Record
	for _, rj := range rq.records {
		if rj.Last != nil {
			remote = append(remote, rj)
		}
	}
	rq.mu.Unlock()
	ranks := map[string][]api.JobListEntry{} // by rank 0's ID
	for _, rj := range remote {
		e := api.JobListEntry{Job: rq.groupView(ctx, rj)}
		if rj.inGang() {
			r := rj.Rank
			e.Rank = &r
			if !rj.isHead() {
				e.GroupOf = rj.Group[0]
				ranks[e.GroupOf] = append(ranks[e.GroupOf], e)
				continue
			}
		}
		top = append(top, e)
	}
	return top, ranks
}

// ids are the requester's market jobs' IDs.
func (rq *Requester) ids() []string {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	ids := make([]string, 0, len(rq.records))
	for id := range rq.records {
		ids = append(ids, id)
	}
	return ids
}

// Cost reads the requester's records of the job's deals; a job
// this node runs for itself, or one it runs for another node, has none.
func (rq *Requester) Cost(ctx context.Context, id string) (api.JobCost, error) {
	rq.mu.Lock()
	rj := rq.records[id]
	var group []*Record
	if rj != nil {
		group = []*Record{rj}
		if rj.inGang() {
			group = group[:0]
			for _, gid := range rj.gangIDs() {
				if o := rq.records[gid]; o != nil {
					group = append(group, o)
				}
			}
		}
	}
	type rankCopy struct {
		rank            int
		id, prov, state string
		deal            market.Deal
		cost, paid      *big.Int
		holdback        string
	}
	var ranks []rankCopy
	for _, o := range group {
		paid, ok := new(big.Int).SetString(o.Vouched, 10)
		if !ok {
			paid = new(big.Int)
		}
		st := ""
		if o.Last != nil {
			st = string(o.Last.State)
		}
		ranks = append(ranks, rankCopy{o.Rank, o.ID, o.Provider, st, o.Deal, jobCost(o), paid, holdbackView(o)})
	}
	rq.mu.Unlock()
	if rj == nil {
		return api.JobCost{}, fmt.Errorf("%w: %s is not a job this node runs through the market (a local job costs nothing; a provider's earnings are on the wallet page)", jobs.ErrNotFound, id)
	}
	out := api.JobCost{JobID: id, Ranks: []api.JobRank{}}
	cost, paid, maxCost := new(big.Int), new(big.Int), new(big.Int)
	for i, r := range ranks {
		if i == 0 && r.deal.Token != "" {
			out.Symbol, out.Decimals, _ = rq.chain.TokenInfo(ctx, dealToken(r.deal))
		}
		price, ok := new(big.Int).SetString(r.deal.Price, 10)
		if !ok { // queued: no deal yet
			price = new(big.Int)
		} else {
			maxCost.Add(maxCost, dealCost(r.deal, time.Duration(r.deal.MaxDurationS)*time.Second))
		}
		cost.Add(cost, r.cost)
		paid.Add(paid, r.paid)
		out.Ranks = append(out.Ranks, api.JobRank{Rank: r.rank, JobID: r.id, Provider: r.prov, State: r.state,
			Price: price.String(), PriceUnits: chain.FormatUnits(price, out.Decimals), GPUs: len(r.deal.GPUs),
			Cost: r.cost.String(), CostUnits: chain.FormatUnits(r.cost, out.Decimals), Holdback: r.holdback})
	}
	out.Cost, out.CostUnits = cost.String(), chain.FormatUnits(cost, out.Decimals)
	out.Paid, out.PaidUnits = paid.String(), chain.FormatUnits(paid, out.Decimals)
	out.MaxCost, out.MaxCostUnits = maxCost.String(), chain.FormatUnits(maxCost, out.Decimals)
	return out, nil
}

// Spending is every market job of the requester with its cost, newest
// first.
func (rq *Requester) Spending(ctx context.Context) api.SpendingInfo {
	rq.mu.Lock()
	type top struct {
		id, name, state string
		created         time.Time
	}
	var ids []top
	for _, rj := range rq.records {
		if (rj.inGang() && !rj.isHead()) || rj.Last == nil {
			continue
		}
		ids = append(ids, top{rj.ID, rj.Spec.Name, string(rj.Last.State), rj.Last.CreatedAt})
	}
	rq.mu.Unlock()
	sort.Slice(ids, func(a, b int) bool { return ids[a].created.After(ids[b].created) })
	out := api.SpendingInfo{Jobs: []api.Spend{}}
	for _, t := range ids {
		c, err := rq.Cost(ctx, t.id)
		if err != nil {
			continue // gone since the list was taken
		}
		out.Jobs = append(out.Jobs, api.Spend{Name: t.name, CreatedAt: t.created, State: t.state, Providers: len(c.Ranks), JobCost: c})
	}
	return out
}

// stats counts the market jobs by state and the deals still running.
func (rq *Requester) stats() (byState map[jobs.State]int, requested int) {
	byState = map[jobs.State]int{}
	rq.mu.Lock()
	defer rq.mu.Unlock()
	for _, rj := range rq.records {
		st := api.JobUnknown
		if rj.Last != nil {
			st = rj.Last.State
		}
		byState[st]++
		if rj.Provider != "" && !st.Terminal() {
			requested++
		}
	}
	return byState, requested
}
