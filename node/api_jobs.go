package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/jobs"
)

// Job types as the API and the CLI see them.
type (
	Job     = jobs.Job
	JobSpec = jobs.Spec
)

// SubmitRequest is POST /v1/jobs: a spec as YAML (as in a spec file) or as
// JSON, run on this node when Local is set.
type SubmitRequest struct {
	SpecYAML string   `json:"spec_yaml,omitempty"`
	Spec     *JobSpec `json:"spec,omitempty"`
	Local    bool     `json:"local"`
}

// ParseJobSpec reads a YAML spec as the daemon does, for the CLI to check
// a file before sending it.
func ParseJobSpec(b []byte) (*JobSpec, error) { return jobs.ParseSpec(b) }

// openJobs starts the job manager on the local Docker engine. A node
// without an engine still runs; its job routes say what is missing.
func (n *Node) openJobs(ctx context.Context) {
	d, err := jobs.NewDocker(ctx)
	if err != nil {
		n.jobsErr = err
		n.log.Warn("no container runtime: this node cannot run jobs", "err", err)
		return
	}
	m, err := jobs.NewManager(ctx, jobs.Config{
		Dir: n.repo.Dir + "/jobs", Runtime: d, Content: n.content,
		MockGPUs: strings.HasPrefix(n.gpus.Inventory().Source, "mock:"), Logger: n.log,
	})
	if err != nil {
		d.Close()
		n.jobsErr = err
		n.log.Warn("jobs unavailable", "err", err)
		return
	}
	n.jobs, n.docker = m, d
}

func (n *Node) jobRoutes(mux *http.ServeMux) {
	need := func(w http.ResponseWriter) bool {
		if n.jobs == nil {
			writeJSON(w, http.StatusServiceUnavailable, apiError{fmt.Sprintf("this node cannot run jobs: %v", n.jobsErr)})
			return false
		}
		return true
	}
	mux.HandleFunc("POST /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		var req SubmitRequest
		if !readJSON(w, r, &req) {
			return
		}
		if req.Local && !need(w) {
			return
		}
		j, err := n.submit(r.Context(), req)
		reply(w, j, err)
	})
	mux.HandleFunc("GET /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.listJobs(r.Context()))
	})
	mux.HandleFunc("GET /v1/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := n.resolveJobID(r.PathValue("id"))
		if err != nil {
			jobReply(w, nil, err)
			return
		}
		j, err := n.lookupJob(r.Context(), id)
		jobReply(w, j, err)
	})
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		id, err := n.resolveJobID(r.PathValue("id"))
		if err != nil {
			jobReply(w, nil, err)
			return
		}
		if n.jobs != nil {
			if _, err := n.jobs.Get(id); err == nil {
				j, err := n.jobs.Cancel(id)
				jobReply(w, j, err)
				return
			}
		}
		j, err := n.cancelRemote(r.Context(), id)
		jobReply(w, j, err)
	})
	mux.HandleFunc("GET /v1/jobs/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		id, err := n.resolveJobID(r.PathValue("id"))
		if err != nil {
			jobReply(w, nil, err)
			return
		}
		if _, err := n.lookupJob(r.Context(), id); err != nil {
			jobReply(w, nil, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		n.jobLogs(r.Context(), id, r.URL.Query().Get("follow") == "1", newFlushWriter(w))
	})
}

// lookupJob is a job as the API shows it: this node's own, else one it
// runs elsewhere through the market.
func (n *Node) lookupJob(ctx context.Context, id string) (*Job, error) {
	if n.jobs != nil {
		if j, err := n.jobs.Get(id); err == nil {
			return j, nil
		}
	}
	return n.remoteJobByID(ctx, id)
}

// jobLogs copies a job's output to w, local or remote; follow keeps going
// until the job ends.
func (n *Node) jobLogs(ctx context.Context, id string, follow bool, w io.Writer) error {
	if n.jobs != nil {
		if _, err := n.jobs.Get(id); err == nil {
			return n.jobs.Logs(ctx, id, follow, w)
		}
	}
	return n.remoteLogs(ctx, id, follow, w)
}

// flushWriter pushes each chunk of a streamed answer to the client at once.
// The ResponseController unwraps the metrics recorder around w, which has
// no Flush of its own: a type assertion on w would find none and hold every
// line until the job ends.
type flushWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newFlushWriter(w http.ResponseWriter) flushWriter {
	return flushWriter{w, http.NewResponseController(w)}
}

func (f flushWriter) Write(p []byte) (int, error) { return f.w.Write(p) }
func (f flushWriter) Flush()                      { _ = f.rc.Flush() }

// JobListEntry is one job of GET /v1/jobs: the job, and for a rank of a
// distributed job its rank and the job it belongs to (rank 0's ID).
type JobListEntry struct {
	*Job
	Rank    *int   `json:"rank,omitempty"`
	GroupOf string `json:"group_of,omitempty"`
}

// listJobs is every job this node knows, local and through the market,
// newest first, each rank of a distributed job right after its rank 0.
func (n *Node) listJobs(ctx context.Context) []JobListEntry {
	var top []JobListEntry
	if n.jobs != nil {
		for _, j := range n.jobs.List() {
			top = append(top, JobListEntry{Job: j})
		}
	}
	n.remote.mu.Lock()
	var remote []*remoteJob
	for _, rj := range n.remote.jobs {
		if rj.Last != nil {
			remote = append(remote, rj)
		}
	}
	n.remote.mu.Unlock()
	ranks := map[string][]JobListEntry{} // by rank 0's ID
	for _, rj := range remote {
		e := JobListEntry{Job: n.groupView(ctx, rj)}
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
	out := []JobListEntry{}
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

// resolveJobID turns a unique prefix of a job ID into the ID, as docker
// does; an exact ID always wins.
func (n *Node) resolveJobID(prefix string) (string, error) {
	var ids []string
	if n.jobs != nil {
		for _, j := range n.jobs.List() {
			ids = append(ids, j.ID)
		}
	}
	n.remote.mu.Lock()
	for id := range n.remote.jobs {
		ids = append(ids, id)
	}
	n.remote.mu.Unlock()
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
	return "", badRequest{fmt.Errorf("job ID prefix %q is ambiguous: it matches %s; give more of it", prefix, strings.Join(match, ", "))}
}

func jobReply(w http.ResponseWriter, j *Job, err error) {
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{err.Error()})
	case errors.Is(err, jobs.ErrFinished):
		writeJSON(w, http.StatusConflict, apiError{err.Error()})
	default:
		reply(w, j, err)
	}
}

func (n *Node) submit(ctx context.Context, req SubmitRequest) (*Job, error) {
	var spec *JobSpec
	var err error
	switch {
	case req.SpecYAML != "" && req.Spec != nil:
		return nil, badRequest{errors.New("give spec_yaml or spec, not both")}
	case req.SpecYAML != "":
		spec, err = jobs.ParseSpec([]byte(req.SpecYAML))
	case req.Spec != nil:
		spec, err = req.Spec, req.Spec.Validate()
	default:
		return nil, badRequest{errors.New("no spec")}
	}
	if err != nil {
		return nil, badRequest{err}
	}
	if !req.Local {
		return n.submitRemote(ctx, spec)
	}
	var free []string
	for _, g := range n.gpus.Inventory().GPUs {
		if g.Health == gpu.Healthy {
			free = append(free, g.UUID)
		}
	}
	j, err := n.jobs.Submit(*spec, jobs.SubmitOptions{GPUs: free})
	if errors.Is(err, jobs.ErrSpec) {
		return nil, badRequest{err}
	}
	return j, err
}

// JobInput is one input of a spec.
type JobInput = jobs.Input
