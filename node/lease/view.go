package lease

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
)

// Get is a job as the API shows it: this node's own, else one it
// runs elsewhere through the market.
func (m *Manager) Get(ctx context.Context, id string) (*jobs.Job, error) {
	if m.jobs != nil {
		if j, err := m.jobs.Get(id); err == nil {
			return j, nil
		}
	}
	return m.remoteJobByID(ctx, id)
}

// Logs copies a job's output to w, local or remote; follow keeps going
// until the job ends.
func (m *Manager) Logs(ctx context.Context, id string, follow bool, w io.Writer) error {
	if m.jobs != nil {
		if _, err := m.jobs.Get(id); err == nil {
			return m.jobs.Logs(ctx, id, follow, w)
		}
	}
	return m.remoteLogs(ctx, id, follow, w)
}

// List is every job this node knows, local and through the market,
// newest first, each rank of a distributed job right after its rank 0.
func (m *Manager) List(ctx context.Context) []api.JobListEntry {
	var top []api.JobListEntry
	if m.jobs != nil {
		for _, j := range m.jobs.List() {
			top = append(top, api.JobListEntry{Job: j})
		}
	}
	m.remote.mu.Lock()
	var remote []*Record
	for _, rj := range m.remote.jobs {
		if rj.Last != nil {
			remote = append(remote, rj)
		}
	}
	m.remote.mu.Unlock()
	ranks := map[string][]api.JobListEntry{} // by rank 0's ID
	for _, rj := range remote {
		e := api.JobListEntry{Job: m.groupView(ctx, rj)}
		if len(rj.Group) > 1 {
			r := rj.Rank
			e.Rank = &r
			if rj.Rank != 0 {
				e.GroupOf = rj.Group[0]
				ranks[e.GroupOf] = append(ranks[e.GroupOf], e)
				continue
			}
		}
		top = append(top, e)
	}
	sort.SliceStable(top, func(a, b int) bool { return top[a].CreatedAt.After(top[b].CreatedAt) })
	out := []api.JobListEntry{}
	for _, e := range top {
		out = append(out, e)
		rs := ranks[e.ID]
		sort.Slice(rs, func(a, b int) bool { return *rs[a].Rank < *rs[b].Rank })
		out = append(out, rs...)
		delete(ranks, e.ID)
	}
	for _, rs := range ranks { // a rank whose rank 0 is gone
		out = append(out, rs...)
	}
	return out
}

// Resolve turns a unique prefix of a job ID into the ID, as docker
// does; an exact ID always wins.
func (m *Manager) Resolve(prefix string) (string, error) {
	var ids []string
	if m.jobs != nil {
		for _, j := range m.jobs.List() {
			ids = append(ids, j.ID)
		}
	}
	m.remote.mu.Lock()
	for id := range m.remote.jobs {
		ids = append(ids, id)
	}
	m.remote.mu.Unlock()
	var match []string
	for _, id := range ids {
		if id == prefix {
			return id, nil
		}
		if prefix != "" && strings.HasPrefix(id, prefix) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return prefix, nil // the lookup says "no such job"
	case 1:
		return match[0], nil
	}
	sort.Strings(match)
	return "", invalid{fmt.Errorf("job ID prefix %q is ambiguous: it matches %s; give more of it", prefix, strings.Join(match, ", "))}
}

// Cost reads the requester's records of the job's deals; a job
// this node runs for itself, or one it runs for another node, has none.
func (m *Manager) Cost(ctx context.Context, id string) (api.JobCost, error) {
	m.remote.mu.Lock()
	rj := m.remote.jobs[id]
	var group []*Record
	if rj != nil {
		group = []*Record{rj}
		if len(rj.Group) > 1 {
			group = group[:0]
			for _, gid := range rj.Group {
				if o := m.remote.jobs[gid]; o != nil {
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
		ranks = append(ranks, rankCopy{o.Rank, o.ID, o.Provider, st, o.Deal, jobCost(o), paid})
	}
	m.remote.mu.Unlock()
	if rj == nil {
		return api.JobCost{}, fmt.Errorf("%w: %s is not a job this node runs through the market (a local job costs nothing; a provider's earnings are on the wallet page)", jobs.ErrNotFound, id)
	}
	out := api.JobCost{JobID: id, Ranks: []api.JobRank{}}
	cost, paid, maxCost := new(big.Int), new(big.Int), new(big.Int)
	for i, r := range ranks {
		if i == 0 && r.deal.Token != "" {
			out.Symbol, out.Decimals, _ = m.chain.TokenInfo(ctx, dealToken(r.deal))
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
			Cost: r.cost.String(), CostUnits: chain.FormatUnits(r.cost, out.Decimals)})
	}
	out.Cost, out.CostUnits = cost.String(), chain.FormatUnits(cost, out.Decimals)
	out.Paid, out.PaidUnits = paid.String(), chain.FormatUnits(paid, out.Decimals)
	out.MaxCost, out.MaxCostUnits = maxCost.String(), chain.FormatUnits(maxCost, out.Decimals)
	return out, nil
}

func (m *Manager) Spending(ctx context.Context) api.SpendingInfo {
	m.remote.mu.Lock()
	type top struct {
		id, name, state string
		created         time.Time
	}
	var ids []top
	for _, rj := range m.remote.jobs {
		if (len(rj.Group) > 1 && rj.Rank != 0) || rj.Last == nil {
			continue
		}
		ids = append(ids, top{rj.ID, rj.Spec.Name, string(rj.Last.State), rj.Last.CreatedAt})
	}
	m.remote.mu.Unlock()
	sort.Slice(ids, func(a, b int) bool { return ids[a].created.After(ids[b].created) })
	out := api.SpendingInfo{Jobs: []api.Spend{}}
	for _, t := range ids {
		c, err := m.Cost(ctx, t.id)
		if err != nil {
			continue // gone since the list was taken
		}
		out.Jobs = append(out.Jobs, api.Spend{Name: t.name, CreatedAt: t.created, State: t.state, Providers: len(c.Ranks), JobCost: c})
	}
	return out
}

// Submit runs spec on this node (local, on its healthy GPUs) or through
// the market.
func (m *Manager) Submit(ctx context.Context, spec *jobs.Spec, local bool) (*jobs.Job, error) {
	if !local {
		return m.submitRemote(ctx, spec)
	}
	if m.jobs == nil {
		return nil, fmt.Errorf("this node cannot run jobs: %v", m.jobsErr)
	}
	var free []string
	for _, g := range m.gpus.Inventory().GPUs {
		if g.Health == gpu.Healthy {
			free = append(free, g.UUID)
		}
	}
	j, err := m.jobs.Submit(*spec, jobs.SubmitOptions{GPUs: free})
	if errors.Is(err, jobs.ErrSpec) {
		return nil, invalid{err}
	}
	return j, err
}

// Cancel stops a job, this node's own or one it runs elsewhere.
func (m *Manager) Cancel(ctx context.Context, id string) (*jobs.Job, error) {
	if m.jobs != nil {
		if _, err := m.jobs.Get(id); err == nil {
			return m.jobs.Cancel(id)
		}
	}
	return m.cancelRemote(ctx, id)
}

// Stats counts, for the metrics, the requester's market jobs by state, its
// deals still running, and the provider's deals whose job has not ended.
func (m *Manager) Stats() (byState map[jobs.State]int, requested, provided int) {
	byState = map[jobs.State]int{}
	m.remote.mu.Lock()
	defer m.remote.mu.Unlock()
	for _, rj := range m.remote.jobs {
		st := jobs.State("unknown")
		if rj.Last != nil {
			st = rj.Last.State
		}
		byState[st]++
		if rj.Provider != "" && !st.Terminal() {
			requested++
		}
	}
	for id := range m.remote.provided {
		if m.jobs != nil {
			if j, err := m.jobs.Get(id); err == nil && !j.State.Terminal() {
				provided++
			}
		}
	}
	return byState, requested, provided
}
