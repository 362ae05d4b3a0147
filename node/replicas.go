package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/node/lease"
	"github.com/aixblock/aixblock/node/replica"
	"github.com/ipfs/go-cid"
)

// openReplicas starts the checker of replicated and spot-checked jobs,
// over the lease's requester side.
func (n *Node) openReplicas(log *slog.Logger) error {
	c, err := replica.New(replica.Config{Dir: filepath.Join(n.repo.Dir, "checked"), Lease: replicaLease{n},
		Digest: n.outputsDigest, Compare: n.compareResults, Log: log,
		Owners: func() replica.Owners { return &market.Apart{} },
		Outvoted: func(provider, jobID string) {
			log.Warn("provider outvoted: its result differs from the majority's", "peer_id", provider, "job_id", jobID)
			if n.market != nil {
				n.market.Reputation().Failed(provider)
			}
		}})
	if err != nil {
		return fmt.Errorf("checked jobs: %w", err)
	}
	n.replicas = c
	return nil
}

// replicaLease is the checker's view of the lease.
type replicaLease struct{ n *Node }

func (l replicaLease) Submit(ctx context.Context, spec *jobs.Spec, owners replica.Owners, holdbackBps int) (*api.Job, error) {
	apart, ok := owners.(*market.Apart)
	if !ok { // the checker makes them with Config.Owners, above
		return nil, fmt.Errorf("replica owners %T: want a market.Apart", owners)
	}
	return l.n.lease.Requester().SubmitRemote(ctx, spec, lease.RemoteOptions{Apart: apart, HoldbackBps: holdbackBps})
}

func (l replicaLease) SubmitTogether(ctx context.Context, spec *jobs.Spec, k int, owners replica.Owners, holdbackBps int) ([]*api.Job, error) {
	apart, ok := owners.(*market.Apart)
	if !ok {
		return nil, fmt.Errorf("replica owners %T: want a market.Apart", owners)
	}
	return l.n.lease.Requester().SubmitTogether(ctx, spec, k, lease.RemoteOptions{Apart: apart, HoldbackBps: holdbackBps})
}

// Settle: replica's verdicts are the receipts' outcomes by name
// (TestVerdictsAreOutcomes).
func (l replicaLease) Settle(ctx context.Context, id, verdict string) error {
	return l.n.lease.Requester().Settle(ctx, id, verdict)
}

// Get reads a run as the lease last saw it: the lease follows each run
// itself (it sees the end as it happens), so the checker's frequent
// reads ask no provider.
func (l replicaLease) Get(ctx context.Context, id string) (*api.Job, error) {
	return l.n.lease.Peek(ctx, id)
}

func (l replicaLease) Cancel(ctx context.Context, id string) (*api.Job, error) {
	return l.n.lease.Cancel(ctx, id)
}

// outputsDigest is the SHA-256 over the named outputs of a result, each
// with its path, fetched by CID.
func (n *Node) outputsDigest(ctx context.Context, resultCID string, paths []string) (string, error) {
	root, err := cid.Decode(resultCID)
	if err != nil {
		return "", fmt.Errorf("result %q: %w", resultCID, err)
	}
	dir, err := os.MkdirTemp("", "aixblock-check")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "r")
	if _, err := n.content.Get(ctx, root, out, nil); err != nil {
		return "", fmt.Errorf("fetch result %s: %w", resultCID, err)
	}
	h := sha256.New()
	for _, p := range paths {
		rel := strings.TrimPrefix(p, "/outputs/")
		f, err := os.Open(filepath.Join(out, filepath.FromSlash(rel)))
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(h, "%s\x00missing\x00", rel)
			continue
		}
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00", rel)
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// submitChecked submits a market job whose spec asks for verify: a
// replicated job is the checker's; a sampled one runs as usual, watched.
func (n *Node) submitChecked(ctx context.Context, spec *jobs.Spec) (*api.Job, error) {
	if spec.Verify.Replicas > 1 {
		g, err := n.replicas.Replicate(ctx, spec)
		if err != nil {
			return nil, err
		}
		return n.groupJob(g), nil
	}
	j, err := n.lease.Requester().SubmitRemote(ctx, spec, lease.RemoteOptions{})
	if err != nil {
		return nil, err
	}
	if _, err := n.replicas.Sample(j); err != nil {
		return nil, err
	}
	return j, nil
}

// groupJob is a replicated job as the API shows it: its spec, its state,
// the majority's result, and each run.
func (n *Node) groupJob(g *replica.Group) *api.Job {
	j := &api.Job{Job: jobs.Job{ID: g.ID, Spec: g.Spec, State: g.State, Reason: g.Reason, ResultCID: g.ResultCID,
		CreatedAt: g.CreatedAt}}
	if !g.EndedAt.IsZero() {
		t := g.EndedAt
		j.FinishedAt = &t
	}
	j.Verification = n.verification(g)
	return j
}

// verification is how g's runs came out, with where each run's
// held-back pay stands (the lease's word).
func (n *Node) verification(g *replica.Group) *api.Verification {
	v := &api.Verification{JobID: g.ID, Mode: g.Mode, State: g.State, Reason: g.Reason, Checked: g.Checked}
	for _, r := range g.Replicas {
		v.Runs = append(v.Runs, api.CheckRun{JobID: r.JobID, Role: r.Role, Provider: r.Provider, State: r.State,
			ResultCID: r.ResultCID, Outcome: r.Outcome, Holdback: n.lease.Requester().Holdback(r.JobID), Wallet: r.Wallet, IP: r.IP})
	}
	for _, c := range g.Comparisons {
		v.Comparisons = append(v.Comparisons, api.Comparison(c))
	}
	return v
}

// checkedJob is GET /v1/jobs/{id} for a replicated job, or nil when id
// is none.
func (n *Node) checkedJob(id string) *api.Job {
	if n.replicas == nil || !n.replicas.IsGroup(id) {
		return nil
	}
	g, _ := n.replicas.Get(id)
	return n.groupJob(g)
}

// withVerification adds what the checker knows of j (a run of a checked
// job, or a sampled job).
func (n *Node) withVerification(j *api.Job) *api.Job {
	if j == nil || n.replicas == nil {
		return j
	}
	if g, ok := n.replicas.Get(j.ID); ok {
		j.Verification = n.verification(g)
	}
	return j
}

// compareResults runs a spec's comparator on two results as a local job
// of this node: its image and command, the results read-only at
// /inputs/a and /inputs/b (fetched by CID as any job's inputs), locked
// down like every job. Exit 0: equivalent; another exit: not; a job that
// could not run (no image, a result not fetched) is an error.
func (n *Node) compareResults(ctx context.Context, c *jobs.Comparator, a, b string) (bool, error) {
	if n.jobs == nil {
		return false, fmt.Errorf("this node cannot run the comparator: %v", n.jobsErr)
	}
	spec := jobs.Spec{Name: "verify-comparator", Image: c.Image, Command: c.Command, Args: c.Args,
		Inputs:    []jobs.Input{{CID: a, Path: "/inputs/a"}, {CID: b, Path: "/inputs/b"}},
		Resources: jobs.Resources{CPU: 1}, Timeouts: jobs.Timeouts{Total: compareTimeout.String()}}
	j, err := n.jobs.Submit(spec, jobs.SubmitOptions{})
	if err != nil {
		return false, fmt.Errorf("comparator: %w", err)
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !j.State.Terminal() {
		select {
		case <-ctx.Done():
			_, _ = n.jobs.Cancel(j.ID)
			return false, ctx.Err()
		case <-t.C:
		}
		if j, err = n.jobs.Get(j.ID); err != nil {
			return false, fmt.Errorf("comparator job: %w", err)
		}
	}
	switch {
	case j.State == jobs.Completed:
		return true, nil
	case j.State == jobs.Failed && j.ExitCode != nil && *j.ExitCode != 0:
		return false, nil
	}
	return false, fmt.Errorf("comparator job %s %s: %s", j.ID, j.State, j.Reason)
}

// compareTimeout bounds one comparison, fetches included.
const compareTimeout = 10 * time.Minute
