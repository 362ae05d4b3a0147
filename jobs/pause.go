package jobs

import (
	"context"
	"fmt"
	"time"
)

// Pause freezes a running job's container (its processes stop, its
// memory and GPUs stay): a provider whose pay has stopped holds the job
// for a grace window instead of ending it, and Resume goes on where it
// left off. The state stays Running; PausedAt says since when it is
// paused and Reason why. Pausing a paused job does nothing.
func (m *Manager) Pause(ctx context.Context, id, reason string) (*Job, error) {
	m.mu.Lock()
	j, ok := m.jobs[id]
	if !ok {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	state, container, paused := j.State, j.ContainerID, j.PausedAt != nil
	m.mu.Unlock()
	switch {
	case state != Running || container == "":
		return nil, fmt.Errorf("pause %s: it is %s, not running", id, state)
	case paused:
		return m.Get(id)
	}
	if err := m.cfg.Runtime.Pause(ctx, container); err != nil {
		return nil, fmt.Errorf("pause %s: %w", id, err)
	}
	now := time.Now().UTC()
	m.note(j, func() {
		j.PausedAt, j.Reason = &now, "paused: "+reason
	})
	m.log.Info("job paused", "job_id", id, "reason", reason)
	return m.Get(id)
}

// Resume unfreezes a paused job; the time it was paused is added to
// PausedMs. Resuming a job that is not paused does nothing.
func (m *Manager) Resume(ctx context.Context, id string) (*Job, error) {
	m.mu.Lock()
	j, ok := m.jobs[id]
	if !ok {
		m.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	container, paused := j.ContainerID, j.PausedAt != nil
	m.mu.Unlock()
	if !paused {
		return m.Get(id)
	}
	if err := m.cfg.Runtime.Unpause(ctx, container); err != nil {
		return nil, fmt.Errorf("resume %s: %w", id, err)
	}
	m.note(j, func() {
		if j.PausedAt != nil {
			j.PausedMs += time.Since(*j.PausedAt).Milliseconds()
		}
		j.PausedAt, j.Reason = nil, ""
	})
	m.log.Info("job resumed", "job_id", id)
	return m.Get(id)
}

// note changes a job's record under the lock and saves it, without a
// transition of its state.
func (m *Manager) note(j *Job, change func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	change()
	if err := j.save(m.dir(j)); err != nil {
		m.log.Error("persist job state", "job_id", j.ID, "err", err)
	}
}

// Paused is how long a job has been paused in all, by the clock of the
// daemon that runs it, up to now.
func (j *Job) Paused(now time.Time) time.Duration {
	d := time.Duration(j.PausedMs) * time.Millisecond
	if j.PausedAt != nil && now.After(*j.PausedAt) {
		d += now.Sub(*j.PausedAt)
	}
	return d
}
