package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// A distributed rank outlives its daemon's restart: the rank's job network
// device stays in its holder's namespace (p2p/overlay), so a daemon that
// restarts finds the rank's container and holder running, follows the
// container again, and waits for the node to rejoin the rank's network
// (RejoinNetwork) within Config.RejoinWindow; a rank not rejoined by then
// fails.

// Rejoin is what the node gives a reattached rank to go on with its job
// network.
type Rejoin struct {
	// JoinNetwork attaches to the rank's network in the holder's
	// namespace at nsPath (as SubmitOptions.JoinNetwork does, with the
	// device already there); what it returns is closed when the job ends.
	JoinNetwork func(ctx context.Context, nsPath string) (io.Closer, error)
	// Elastic, as SubmitOptions.Elastic: how long the rank waits for its
	// gang's restart when its container fails.
	Elastic time.Duration
}

// holdsNetwork: the reattached rank's holder still runs, so its network
// namespace, and the device in it, are as the daemon left them. Otherwise
// it says why not.
func (m *Manager) holdsNetwork(ctx context.Context, j *Job) string {
	st, err := m.cfg.Runtime.State(ctx, j.NetHolder)
	switch {
	case err != nil:
		return "the daemon restarted: the rank's job network holder is in an unknown state: " + err.Error()
	case !st.Running:
		return "the daemon restarted: the rank's job network ended with it"
	}
	return ""
}

// awaitRejoin marks a reattached rank as waiting for RejoinNetwork and
// fails it if none comes within the rejoin window.
func (m *Manager) awaitRejoin(j *Job) {
	m.mu.Lock()
	m.unjoined[j.ID] = true
	m.mu.Unlock()
	time.AfterFunc(m.cfg.RejoinWindow, func() {
		m.mu.Lock()
		waiting := m.unjoined[j.ID]
		delete(m.unjoined, j.ID)
		m.mu.Unlock()
		if waiting {
			m.Fail(j.ID, "the daemon restarted: the rank's job network was not rejoined")
		}
	})
}

// RejoinNetwork puts a rank that outlived the daemon's restart back on its
// job network: the holder's namespace is handed to rj.JoinNetwork as at
// the start. Only a reattached rank waiting for it may rejoin, once; a
// rejoin that fails fails the job.
func (m *Manager) RejoinNetwork(ctx context.Context, id string, rj Rejoin) error {
	m.mu.Lock()
	j, waiting := m.jobs[id], m.unjoined[id]
	delete(m.unjoined, id)
	m.mu.Unlock()
	switch {
	case j == nil:
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	case !waiting || rj.JoinNetwork == nil:
		return fmt.Errorf("job %s: no rank here waiting to rejoin its job network", id)
	}
	closer, err := m.joinHolder(ctx, j, j.NetHolder, rj.JoinNetwork)
	if err != nil {
		err = fmt.Errorf("rejoin the rank's job network: %w", err)
		if _, ferr := m.Fail(id, "the daemon restarted: "+err.Error()); ferr != nil && !errors.Is(ferr, ErrFinished) {
			err = errors.Join(err, ferr)
		}
		return err
	}
	m.mu.Lock()
	ended := j.State.Terminal()
	if !ended {
		m.nets[id] = closer
		if rj.Elastic > 0 && m.regroups[id] == nil {
			m.regroups[id], m.holds[id] = make(chan Regroup, 1), rj.Elastic
		}
	}
	m.mu.Unlock()
	if ended { // it ended while joining: its network goes with it
		closer.Close()
		return fmt.Errorf("%w: %s", ErrFinished, id)
	}
	m.log.Info("rank rejoined its job network after a restart", "job_id", id)
	return nil
}
