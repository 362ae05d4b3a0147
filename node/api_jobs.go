package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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
		var out []*Job
		if n.jobs != nil {
			out = n.jobs.List()
		}
		n.remote.mu.Lock()
		var remote []*remoteJob
		for _, rj := range n.remote.jobs {
			if rj.Last != nil {
				remote = append(remote, rj)
			}
		}
		n.remote.mu.Unlock()
		for _, rj := range remote {
			out = append(out, n.groupView(r.Context(), rj))
		}
		if out == nil {
			out = []*Job{}
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		j, err := n.lookupJob(r.Context(), r.PathValue("id"))
		jobReply(w, j, err)
	})
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
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
		id := r.PathValue("id")
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
