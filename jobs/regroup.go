package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aixblock/aixblock/p2p/content"
	"github.com/ipfs/go-cid"
)

// An elastic rank (SubmitOptions.Elastic) does not end when its
// container fails: it waits for its gang's restart (Regroup) for a while,
// and a restart stops a container still running. A restart is a new
// generation of the gang: the rank leaves its job network for a new one,
// gets a new launcher contract and, when named, a new /checkpoints, and
// runs again as the same job (the same deal, paid as one run).

// Regroup is a new generation of an elastic rank's gang.
type Regroup struct {
	// Generation counts the gang's restarts: each one's is higher.
	Generation int
	// JoinNetwork joins the new generation's job network (as
	// SubmitOptions.JoinNetwork); nil runs the rank without one.
	JoinNetwork func(ctx context.Context, nsPath string) (io.Closer, error)
	// Env is the new launcher contract (ValidateGoEnv checks it).
	Env []string
	// Checkpoint, when set, is the CID fetched into /checkpoints in place
	// of what is there.
	Checkpoint string
}

// errRegroup cuts a running rank short for its gang's restart.
var errRegroup = errors.New("its gang restarts")

// Regroup restarts an elastic rank with its gang's new generation: at
// once when it waits for one, else after its running container stops.
func (m *Manager) Regroup(id string, rg Regroup) error {
	if err := ValidateGoEnv(rg.Env); err != nil {
		return err
	}
	if rg.Checkpoint != "" {
		if _, err := cid.Decode(rg.Checkpoint); err != nil {
			return fmt.Errorf("restart: checkpoint %q: %w", rg.Checkpoint, err)
		}
	}
	m.mu.Lock()
	j, ch, stop := m.jobs[id], m.regroups[id], m.runStops[id]
	var gen int
	if j != nil {
		gen = max(j.Generation, j.regroupTo)
	}
	m.mu.Unlock()
	switch {
	case j == nil:
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	case ch == nil:
		return fmt.Errorf("%w: %s is no elastic rank that still runs", ErrFinished, id)
	case rg.Generation <= gen:
		return fmt.Errorf("restart: generation %d is not after the rank's %d", rg.Generation, gen)
	}
	if err := m.queueRegroup(j, ch, rg); err != nil {
		return fmt.Errorf("restart: job %s: %w", id, err)
	}
	if stop != nil {
		stop(errRegroup)
	}
	return nil
}

// queueRegroup leaves rg as the rank's pending restart: a newer
// generation replaces one not taken yet (the gang changed again before
// this rank restarted), an older one is refused.
func (m *Manager) queueRegroup(j *Job, ch chan Regroup, rg Regroup) error {
	m.mu.Lock() // one caller at a time: the take and the put stay together
	defer m.mu.Unlock()
	if rg.Generation <= j.regroupTo {
		return fmt.Errorf("generation %d was asked for already", rg.Generation)
	}
	select {
	case <-ch: // older than rg (regroupTo)
	default:
	}
	ch <- rg // the buffer's one place is free: only this lock's holder puts
	j.regroupTo = rg.Generation
	return nil
}

// elastic: the job is a rank that waits for its gang's restart.
func (m *Manager) elastic(j *Job) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.regroups[j.ID] != nil
}

// runContext is one run's context, which Regroup cuts short.
func (m *Manager) runContext(wctx context.Context, j *Job) (context.Context, func()) {
	rctx, cancel := context.WithCancelCause(wctx)
	m.mu.Lock()
	m.runStops[j.ID] = cancel
	// A restart that came while the last one was being made (no run to
	// stop then) cuts this run short at once.
	pending := len(m.regroups[j.ID]) > 0
	m.mu.Unlock()
	if pending {
		cancel(errRegroup)
	}
	return rctx, func() {
		m.mu.Lock()
		delete(m.runStops, j.ID)
		m.mu.Unlock()
		cancel(nil)
	}
}

// awaitRegroup holds an elastic rank whose run ended (failed, or cut
// short by Regroup) until its gang's restart, and runs it. ok: the rank
// runs again; else state and reason end it ("" : as its exit says).
func (m *Manager) awaitRegroup(ctx, wctx context.Context, j *Job, code int) (ok bool, state State, reason string) {
	m.mu.Lock()
	ch, hold := m.regroups[j.ID], m.holds[j.ID]
	m.mu.Unlock()
	var rg Regroup
	select {
	case rg = <-ch:
	default:
		m.mu.Lock()
		j.Regroup = fmt.Sprintf("exited with code %d", code)
		m.mu.Unlock()
		m.set(j, Running, fmt.Sprintf("exited with code %d; waiting up to %s for its gang's restart", code, hold))
		t := time.NewTimer(hold)
		defer t.Stop()
		select {
		case rg = <-ch:
		case <-t.C:
			return false, Failed, fmt.Sprintf("exited with code %d; its gang did not restart within %s", code, hold)
		case <-ctx.Done():
			state, reason = m.cutShort(ctx, wctx, j)
			return false, state, reason
		case <-wctx.Done():
			state, reason = m.cutShort(ctx, wctx, j)
			return false, state, reason
		}
	}
	if err := m.restartRank(ctx, j, rg); err != nil {
		return false, Failed, fmt.Sprintf("restart as generation %d: %v", rg.Generation, err)
	}
	return true, "", ""
}

// restartRank runs the rank again as generation rg: its old container
// and network gone, the new network joined, /checkpoints replaced when
// named, the new contract set.
func (m *Manager) restartRank(ctx context.Context, j *Job, rg Regroup) error {
	m.mu.Lock()
	c, described := m.described[j.ID]
	old := j.ContainerID
	m.mu.Unlock()
	if !described {
		return errors.New("the rank's container is not known here (the daemon restarted)")
	}
	if err := m.cfg.Runtime.Remove(ctx, old); err != nil {
		return fmt.Errorf("remove the last run's container: %w", err)
	}
	m.releaseNetwork(j)
	if rg.Checkpoint != "" {
		if err := m.swapCheckpoints(ctx, j, rg.Checkpoint); err != nil {
			return err
		}
	}
	c.NetworkOf = ""
	if rg.JoinNetwork != nil {
		holder, err := m.holdNetwork(ctx, j, c, rg.JoinNetwork)
		if err != nil {
			return err
		}
		c.NetworkOf = holder
	}
	c.Env = setEnv(c.Env, rg.Env...)
	id, err := m.cfg.Runtime.Create(ctx, c)
	if err != nil {
		return err
	}
	m.mu.Lock()
	j.ContainerID, j.Generation, j.Regroup = id, rg.Generation, ""
	m.mu.Unlock()
	if err := m.cfg.Runtime.Start(ctx, id); err != nil {
		return err
	}
	m.set(j, Running, fmt.Sprintf("restarted as generation %d of its gang", rg.Generation))
	return nil
}

// swapCheckpoints replaces the rank's /checkpoints with checkpoint c.
func (m *Manager) swapCheckpoints(ctx context.Context, j *Job, c string) error {
	if j.Spec.Checkpoint == nil {
		return fmt.Errorf("checkpoint %s: the spec has no checkpoint", c)
	}
	root, _ := cid.Decode(c)
	dir := m.checkpointsDir(j)
	next := dir + ".next"
	if err := os.RemoveAll(next); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c, err)
	}
	if _, err := m.cfg.Content.GetWith(ctx, root, next, content.GetOptions{}); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c, err)
	}
	if st, err := os.Lstat(next); err != nil || !st.IsDir() {
		return fmt.Errorf("checkpoint %s: not a directory", c)
	}
	if err := openUp(next); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("checkpoint %s: %w", c, err)
	}
	return os.Rename(next, dir)
}
