package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/node/lease"
	"github.com/aixblock/aixblock/p2p/overlay"
)

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
		// A service's ports are reached inside its container's network
		// namespace, never published on this host.
		DialPort: overlay.DialPID,
		// Image pulls never reach this host's own network, save the
		// registries the operator names.
		AllowRegistries: n.repo.Config.Market.AllowRegistries,
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
			writeJSON(w, http.StatusServiceUnavailable, apiError(fmt.Sprintf("this node cannot run jobs: %v", n.jobsErr)))
			return false
		}
		return true
	}
	mux.HandleFunc("POST /v1/jobs", func(w http.ResponseWriter, r *http.Request) {
		var req api.SubmitRequest
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
		writeJSON(w, http.StatusOK, n.lease.List(r.Context()))
	})
	mux.HandleFunc("GET /v1/jobs/{id}", func(w http.ResponseWriter, r *http.Request) {
		if j := n.checkedJob(r.PathValue("id")); j != nil {
			reply(w, j, nil)
			return
		}
		id, err := n.lease.Resolve(r.PathValue("id"))
		if err != nil {
			jobReply(w, nil, err)
			return
		}
		j, err := n.lease.Get(r.Context(), id)
		jobReply(w, n.withVerification(j), err)
	})
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		if n.checkedJob(r.PathValue("id")) != nil {
			_, err := n.replicas.Cancel(r.Context(), r.PathValue("id"))
			jobReply(w, n.checkedJob(r.PathValue("id")), err)
			return
		}
		id, err := n.lease.Resolve(r.PathValue("id"))
		if err != nil {
			jobReply(w, nil, err)
			return
		}
		j, err := n.lease.Cancel(r.Context(), id)
		jobReply(w, j, err)
	})
	mux.HandleFunc("POST /v1/jobs/{id}/forward", func(w http.ResponseWriter, r *http.Request) {
		var req api.ForwardRequest
		if !readJSON(w, r, &req) {
			return
		}
		id, err := n.lease.Resolve(r.PathValue("id"))
		if err != nil {
			jobReply(w, nil, err)
			return
		}
		f, err := n.lease.Requester().Forward(r.Context(), id, req.Port, req.Listen)
		if err != nil {
			jobReply(w, nil, err)
			return
		}
		writeJSON(w, http.StatusOK, f)
	})
	mux.HandleFunc("GET /v1/jobs/{id}/forwards", func(w http.ResponseWriter, r *http.Request) {
		id, err := n.lease.Resolve(r.PathValue("id"))
		if err != nil {
			jobReply(w, nil, err)
			return
		}
		writeJSON(w, http.StatusOK, n.lease.Requester().Forwards(id))
	})
	mux.HandleFunc("GET /v1/forwards", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.lease.Requester().Forwards(""))
	})
	mux.HandleFunc("GET /v1/jobs/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		path := r.PathValue("id")
		if j := n.checkedJob(path); j != nil {
			path = j.Verification.Runs[0].JobID // a replicated job's output: its first run's
		}
		id, err := n.lease.Resolve(path)
		if err != nil {
			jobReply(w, nil, err)
			return
		}
		if _, err := n.lease.Get(r.Context(), id); err != nil {
			jobReply(w, nil, err)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		n.lease.Logs(r.Context(), id, r.URL.Query().Get("follow") == "1", newFlushWriter(w))
	})
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

func jobReply(w http.ResponseWriter, j *api.Job, err error) {
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError(err.Error()))
	case errors.Is(err, jobs.ErrFinished):
		writeJSON(w, http.StatusConflict, apiError(err.Error()))
	default:
		reply(w, j, err)
	}
}

func (n *Node) submit(ctx context.Context, req api.SubmitRequest) (*api.Job, error) {
	var spec *jobs.Spec
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
	if v := n.repo.Config.Market.DefaultVerify(spec); v != nil && !req.Local && req.Prepay == "" {
		spec.Verify = v // the requester-wide spot check
	}
	if req.Prepay != "" {
		d, err := time.ParseDuration(req.Prepay)
		switch {
		case err != nil || d <= 0:
			return nil, badRequest{fmt.Errorf("prepay %q: not a positive duration like 10m or 2h", req.Prepay)}
		case req.Local:
			return nil, badRequest{errors.New("prepay: only for a job through the market (a --local job is not paid for)")}
		}
		return n.lease.Requester().SubmitRemote(ctx, spec, lease.RemoteOptions{Prepay: d})
	}
	if spec.Verify != nil {
		if req.Local {
			return nil, badRequest{errors.New("verify: a --local job runs here, on no provider to check: drop verify or --local")}
		}
		return n.submitChecked(ctx, spec)
	}
	return n.lease.Submit(ctx, spec, req.Local)
}
