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
	// Unknown: on a requester, a market job whose provider stopped
	// answering; it fails after a grace window.
	Unknown State = "unknown"
	// Queued: on a requester, a market job waiting for a provider to bid
	// (up to timeouts.queue); its reason says why none has.
	Queued State = "queued"
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

// Job is a job and everything known about it; it is what `job status
// --json` prints.
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
	// Provider is the peer running the job, on the requester's side of a
	// market job.
	Provider string `json:"provider,omitempty"`
	// Network is a distributed rank's job network as its provider sees
	// it (filled in by the provider's daemon when it answers).
	Network *Network `json:"network,omitempty"`
	// GangStartMs is how long the gang start of a distributed job took
	// (every rank prepared, then told to go), on rank 0's requester side.
	GangStartMs int64 `json:"gang_start_ms,omitempty"`
}

// Network is a rank's place on its job's private network.
type Network struct {
	Addr    string        `json:"addr"`
	Peers   []NetworkPeer `json:"peers,omitempty"`
	Dropped uint64        `json:"dropped_packets,omitempty"`
}

// NetworkPeer is another rank's provider as one rank's provider reaches
// it: "direct" or "relayed", and the bytes carried each way.
type NetworkPeer struct {
	Rank    int    `json:"rank"`
	Peer    string `json:"peer"`
	Path    string `json:"path,omitempty"`
	TxBytes uint64 `json:"tx_bytes"`
	RxBytes uint64 `json:"rx_bytes"`
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
