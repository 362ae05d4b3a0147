package lease

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/node/api"
)

// Get is a job as the API shows it: this node's own, else one it
// runs elsewhere through the market.
func (m *Manager) Get(ctx context.Context, id string) (*api.Job, error) {
	if m.jobs != nil {
		if j, err := m.jobs.Get(id); err == nil {
			return localView(j), nil
		}
	}
	return m.req.remoteJobByID(ctx, id)
}

// Peek is Get without asking a provider: a market job as this node last
// saw it (its own follow sees a job's end as it happens), for a caller
// that reads often, such as the checker of replicated jobs.
func (m *Manager) Peek(ctx context.Context, id string) (*api.Job, error) {
	if m.jobs != nil {
		if j, err := m.jobs.Get(id); err == nil {
			return localView(j), nil
		}
	}
	return m.req.peek(ctx, id)
}

// localView is a job of this node's own as the API shows it: its record,
// with nothing a lease adds.
func localView(j *jobs.Job) *api.Job { return &api.Job{Job: *j} }

// Logs copies a job's output to w, local or remote; follow keeps going
// until the job ends.
func (m *Manager) Logs(ctx context.Context, id string, follow bool, w io.Writer) error {
	if m.jobs != nil {
		if _, err := m.jobs.Get(id); err == nil {
			return m.jobs.Logs(ctx, id, follow, w)
		}
	}
	return m.req.remoteLogs(ctx, id, follow, w)
}

// List is every job this node knows, local and through the market,
// newest first, each rank of a distributed job right after its rank 0.
func (m *Manager) List(ctx context.Context) []api.JobListEntry {
	var top []api.JobListEntry
	if m.jobs != nil {
		for _, j := range m.jobs.List() {
			top = append(top, api.JobListEntry{Job: localView(j)})
		}
	}
	top, ranks := m.req.listInto(ctx, top)
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
	ids = append(ids, m.req.ids()...)
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

// Cost is what a market job of this node's cost and paid so far.
func (m *Manager) Cost(ctx context.Context, id string) (api.JobCost, error) {
	return m.req.Cost(ctx, id)
}

// Spending is every market job of this node with its cost.
func (m *Manager) Spending(ctx context.Context) api.SpendingInfo { return m.req.Spending(ctx) }

// Submit runs spec on this node (local, on its healthy GPUs) or through
// the market.
func (m *Manager) Submit(ctx context.Context, spec *jobs.Spec, local bool) (*api.Job, error) {
	if !local {
		return m.req.submitRemote(ctx, spec)
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
	if err != nil {
		if errors.Is(err, jobs.ErrSpec) {
			return nil, invalid{err}
		}
		return nil, err
	}
	return localView(j), nil
}

// Cancel stops a job, this node's own or one it runs elsewhere.
func (m *Manager) Cancel(ctx context.Context, id string) (*api.Job, error) {
	if m.jobs != nil {
		if _, err := m.jobs.Get(id); err == nil {
			j, err := m.jobs.Cancel(id)
			if err != nil {
				return nil, err
			}
			return localView(j), nil
		}
	}
	return m.req.cancelRemote(ctx, id)
}

// Stats counts, for the metrics, the requester's market jobs by state, its
// deals still running, and the provider's deals whose job has not ended.
func (m *Manager) Stats() (byState map[jobs.State]int, requested, provided int) {
	byState, requested = m.req.stats()
	return byState, requested, m.prov.running()
}
