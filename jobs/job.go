package jobs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/aixblock/aixblock/internal/atomicfile"
)

// State is where a job is in its life.
type State string

const (
	Pending   State = "pending"
	Preparing State = "preparing"
	Running   State = "running"
	Uploading State = "uploading"
	Completed State = "completed"
	Failed    State = "failed"
	Canceled  State = "canceled"
	TimedOut  State = "timed_out"
)

// Terminal reports whether s is an end state.
func (s State) Terminal() bool {
	return s == Completed || s == Failed || s == Canceled || s == TimedOut
}

// Transition is one state change, as persisted.
type Transition struct {
	State  State     `json:"state"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Job is a job this node runs and everything known about it, as
// persisted (job.json); the daemon's API shows it with what a market
// job's lease adds (its provider, its job network).
type Job struct {
	ID          string `json:"id"`
	Spec        Spec   `json:"spec"`
	State       State  `json:"state"`
	Reason      string `json:"reason,omitempty"`
	ExitCode    *int   `json:"exit_code,omitempty"`
	ResultCID   string `json:"result_cid,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	// NetHolder is the container holding a distributed rank's network
	// namespace (hold.go).
	NetHolder  string       `json:"net_holder,omitempty"`
	GPUs       []string     `json:"gpus,omitempty"`
	CreatedAt  time.Time    `json:"created_at"`
	StartedAt  *time.Time   `json:"started_at,omitempty"`
	FinishedAt *time.Time   `json:"finished_at,omitempty"`
	History    []Transition `json:"history"`
	// Progress says what preparing is doing, e.g. "input 1/2: 12.0 MiB",
	// or, for a service not ready yet, what its last readiness check saw.
	Progress string `json:"progress,omitempty"`
	// Ready: a running service passed its readiness check (or has none).
	// A service stays running while not ready; its reason says so.
	Ready bool `json:"ready,omitempty"`
	// Restarts counts a service's restarts after non-zero exits.
	Restarts int `json:"restarts,omitempty"`
	// PausedAt is when a running job was paused (Pause), nil while it
	// runs; PausedMs is the time of its pauses that ended. A provider
	// bills no paused time.
	PausedAt *time.Time `json:"paused_at,omitempty"`
	PausedMs int64      `json:"paused_ms,omitempty"`
	// CheckpointCID is the newest root of what the job wrote under
	// /checkpoints, added here at most every checkpoint.every, and
	// CheckpointAt when it was added (this node's clock).
	CheckpointCID string     `json:"checkpoint_cid,omitempty"`
	CheckpointAt  *time.Time `json:"checkpoint_at,omitempty"`
	// Generation is an elastic rank's generation of its gang (0 until
	// its first restart); Regroup says why it waits for the next one
	// ("exited with code 1"), "" while it runs.
	Generation int    `json:"generation,omitempty"`
	Regroup    string `json:"regroup,omitempty"`
	// KeepOutputs: SubmitOptions.KeepOutputs.
	KeepOutputs bool `json:"keep_outputs,omitempty"`
	// regroupTo is the newest generation an elastic rank was told to
	// restart as (Manager.mu), taken or not yet.
	regroupTo int
}

// save writes the job record atomically.
func (j *Job) save(dir string) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "job.json"), b, 0o600); err != nil {
		return fmt.Errorf("save job %s: %w", j.ID, err)
	}
	return nil
}

func loadJob(dir string) (*Job, error) {
	b, err := os.ReadFile(filepath.Join(dir, "job.json"))
	if err != nil {
		return nil, err
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("job record %s is corrupt: %w", dir, err)
	}
	return &j, nil
}
