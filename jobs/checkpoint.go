package jobs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aixblock/aixblock/p2p/content"
	"github.com/ipfs/go-cid"
)

// CheckpointDir is where a job with a checkpoint spec writes what it
// needs to resume.
const CheckpointDir = "/checkpoints"

// Checkpoint bounds and default.
const (
	DefaultCheckpointEvery = 30 * time.Second
	MinCheckpointEvery     = time.Second
	MaxCheckpointEvery     = 24 * time.Hour
)

// Checkpoint is a job's /checkpoints: writable by the job, added to
// content by the daemon while the job runs (dot files left out, so a job
// writes a checkpoint under a dot name and renames it into place), and
// its newest root reported in the job's status.
type Checkpoint struct {
	// Every is the most often the daemon adds /checkpoints to content
	// ("30s", at least 1s); empty means DefaultCheckpointEvery.
	Every string `yaml:"every,omitempty" json:"every,omitempty"`
	// From is the CID of an earlier checkpoint, a directory fetched into
	// /checkpoints before the job starts (a resume); empty starts empty.
	From string `yaml:"from,omitempty" json:"from,omitempty"`
}

func (c *Checkpoint) validate() error {
	if c == nil {
		return nil
	}
	if c.Every != "" {
		d, err := time.ParseDuration(c.Every)
		if err != nil || d < MinCheckpointEvery || d > MaxCheckpointEvery {
			return specErr("checkpoint.every", "%q: want a duration from %s to %s", c.Every, MinCheckpointEvery, MaxCheckpointEvery)
		}
	}
	if c.From != "" {
		if _, err := cid.Decode(c.From); err != nil {
			return specErr("checkpoint.from", "%q is not a CID", c.From)
		}
	}
	return nil
}

// validateElastic checks min_nodes and max_restarts.
func (d *Distributed) validateElastic() error {
	switch {
	case d.MinNodes < 0 || d.MinNodes > d.Nodes:
		return specErr("distributed.min_nodes", "%d: want 1 to nodes (%d), or leave it out for a job that fails with any rank", d.MinNodes, d.Nodes)
	case d.MaxRestarts < 0 || d.MaxRestarts > MaxRestarts:
		return specErr("distributed.max_restarts", "%d: want 0 to %d", d.MaxRestarts, MaxRestarts)
	case d.MaxRestarts > 0 && d.MinNodes == 0:
		return specErr("distributed.max_restarts", "only an elastic job restarts: set distributed.min_nodes")
	case d.MinNodes > 0 && d.HostNetwork():
		return specErr("distributed.min_nodes", "an elastic job restarts its ranks on a new job network: leave distributed.network out")
	}
	return nil
}

// Interval is how often /checkpoints is added.
func (c *Checkpoint) Interval() time.Duration {
	if d, err := time.ParseDuration(c.Every); err == nil && d > 0 {
		return d
	}
	return DefaultCheckpointEvery
}

// checkpointsDir is where the job's /checkpoints lives on this host.
func (m *Manager) checkpointsDir(j *Job) string {
	return filepath.Join(m.scratch(j), "checkpoints")
}

// checkStartCheckpoint checks SubmitOptions.Checkpoint: a CID, for a
// spec with a checkpoint.
func checkStartCheckpoint(spec Spec, c string) error {
	if c == "" {
		return nil
	}
	if spec.Checkpoint == nil {
		return specErr("checkpoint", "none in the spec: a rank cannot start from checkpoint %s", c)
	}
	if _, err := cid.Decode(c); err != nil {
		return specErr("checkpoint", "%q is not a CID", c)
	}
	return nil
}

// prepareCheckpoints makes the job's /checkpoints: fetched from `from`
// when given, else empty, and writable by the job either way.
func (m *Manager) prepareCheckpoints(ctx context.Context, j *Job, from string) (string, error) {
	dir := m.checkpointsDir(j)
	if from == "" {
		if err := os.Mkdir(dir, 0o777); err != nil {
			return "", fmt.Errorf("checkpoints: %w", err)
		}
		return dir, os.Chmod(dir, 0o777)
	}
	root, err := cid.Decode(from)
	if err != nil {
		return "", fmt.Errorf("checkpoint.from: %w", err)
	}
	progress := func(st content.FetchStats) {
		m.progress(j, fmt.Sprintf("checkpoint %s: %.1f MiB", from, float64(st.Bytes)/(1<<20)))
	}
	if _, err := m.cfg.Content.GetWith(ctx, root, dir, content.GetOptions{Progress: progress}); err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", from, err)
	}
	if st, err := os.Lstat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("checkpoint %s: not a directory (a checkpoint is what a job wrote under %s)", from, CheckpointDir)
	}
	return dir, openUp(dir)
}

// startCheckpoint puts checkpoint c (when named) in /checkpoints just
// before a gated rank starts: what its gang saved while it prepared.
func (m *Manager) startCheckpoint(ctx context.Context, j *Job, c string) error {
	if c == "" {
		return nil
	}
	m.progress(j, "checkpoint "+c+": fetching the gang's newest")
	if err := m.swapCheckpoints(ctx, j, c); err != nil {
		return fmt.Errorf("at the start: %w", err)
	}
	return nil
}

// openUp lets the job (nobody) replace what the daemon fetched: its
// directories and files, never a link (WalkDir does not follow them, and
// only their own kinds are changed).
func openUp(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			return os.Chmod(p, 0o777)
		case d.Type().IsRegular():
			return os.Chmod(p, 0o666)
		}
		return nil
	})
}

// followCheckpointed follows the job (follow), adding its /checkpoints
// as it runs when its spec has a checkpoint.
func (m *Manager) followCheckpointed(ctx context.Context, j *Job, reattached bool) {
	if j.Spec.Checkpoint != nil {
		cctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			m.snapshotCheckpoints(cctx, j)
		}()
		defer func() { stop(); <-done }()
	}
	m.follow(ctx, j, reattached)
}

// snapshotCheckpoints adds the job's /checkpoints every interval until
// ctx ends.
func (m *Manager) snapshotCheckpoints(ctx context.Context, j *Job) {
	t := time.NewTicker(j.Spec.Checkpoint.Interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.checkpoint(ctx, j); err != nil && ctx.Err() == nil {
				m.log.Warn("checkpoint not added", "job_id", j.ID, "err", err)
			}
		}
	}
}

// checkpoint adds /checkpoints to content and records its root when it
// changed. An empty directory is no checkpoint (ranks that leave the
// writing to rank 0 report none). The pin expires as a result's does:
// the requester pins what it keeps.
func (m *Manager) checkpoint(ctx context.Context, j *Job) error {
	dir := m.checkpointsDir(j)
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		return err
	}
	root, err := m.cfg.Content.Add(ctx, dir, content.AddOptions{Pin: true, Result: true})
	if err != nil {
		// The reason goes to the requester: the path as the job knows it.
		return fmt.Errorf("add %s: %w", CheckpointDir, errors.New(strings.ReplaceAll(err.Error(), dir, CheckpointDir)))
	}
	now := time.Now().UTC()
	m.mu.Lock()
	defer m.mu.Unlock()
	if j.CheckpointCID == root.String() || j.State.Terminal() {
		return nil
	}
	j.CheckpointCID, j.CheckpointAt = root.String(), &now
	if err := j.save(m.dir(j)); err != nil {
		return err
	}
	m.log.Info("checkpoint added", "job_id", j.ID, "cid", root)
	return nil
}
