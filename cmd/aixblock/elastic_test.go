package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// ckptFile is what the ddp workload keeps in /checkpoints.
type ckptFile struct {
	Step int     `json:"step"`
	Loss float64 `json:"loss"`
}

// readCheckpoint fetches a checkpoint by CID on repo's daemon and reads
// the workload's ckpt.json from it.
func readCheckpoint(t *testing.T, repo, c string) ckptFile {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ckpt")
	mustRun(t, repo, "data", "get", c, "-o", dir, "-q")
	var ck ckptFile
	b, err := os.ReadFile(filepath.Join(dir, "ckpt.json"))
	if err == nil {
		err = json.Unmarshal(b, &ck)
	}
	if err != nil {
		t.Fatalf("checkpoint %s: %v", c, err)
	}
	return ck
}

// A distributed job's checkpoints reach its requester by CID as the job
// writes them, pinned there and shown in job status; a new job resumes
// from one named in its spec.
func TestDistributedCheckpoint(t *testing.T) {
	ddpImage(t)
	repos, _ := ddpNetwork(t, 2)
	req := repos[2]
	spec := filepath.Join(t.TempDir(), "ddp.yaml")
	os.WriteFile(spec, []byte("name: ddp\nimage: aixblock-test/ddp:latest\nresources: {gpus: 1, memory_mib: 128}\n"+
		"distributed: {nodes: 2}\ncheckpoint: {every: 1s}\nmax_price: \"20\"\nenv: {STEPS: \"300\", STEP_DELAY_MS: \"20\"}\n"), 0o600)
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", spec))
	var st struct {
		State         string `json:"state"`
		CheckpointCID string `json:"checkpoint_cid"`
	}
	p2ptest.WaitFor(t, 2*time.Minute, func() bool {
		runJSON(t, req, &st, "job", "status", id)
		return st.CheckpointCID != "" || terminal(st.State)
	}, "a checkpoint of job %s", id)
	if st.CheckpointCID == "" {
		t.Fatalf("job %s ended %s without a checkpoint", id, st.State)
	}
	if out := mustRun(t, req, "job", "status", id); !strings.Contains(out, "checkpoint") || !strings.Contains(out, st.CheckpointCID) {
		t.Fatalf("job status does not show the checkpoint %s:\n%s", st.CheckpointCID, out)
	}
	if pins := mustRun(t, req, "data", "pin", "ls"); !strings.Contains(pins, st.CheckpointCID) {
		t.Fatalf("checkpoint %s not pinned on the requester:\n%s", st.CheckpointCID, pins)
	}
	if end := waitState(t, req, id, terminal); end.State != "completed" {
		t.Fatalf("job %s: %s (%s)", id, end.State, end.Reason)
	}
	runJSON(t, req, &st, "job", "status", id)
	last := readCheckpoint(t, req, st.CheckpointCID)
	if last.Step < 10 {
		t.Fatalf("the last checkpoint is at step %d", last.Step)
	}

	// A new job resumes from it: the workload starts at its step.
	resume := filepath.Join(t.TempDir(), "resume.yaml")
	os.WriteFile(resume, []byte("name: resume\nimage: aixblock-test/ddp:latest\nresources: {gpus: 1, memory_mib: 128}\n"+
		fmt.Sprintf("checkpoint: {from: %s}\nmax_price: \"20\"\nenv: {STEPS: \"%d\"}\n", st.CheckpointCID, last.Step+20)), 0o600)
	rid := strings.TrimSpace(mustRun(t, req, "job", "submit", resume))
	end := waitState(t, req, rid, terminal)
	if end.State != "completed" {
		t.Fatalf("resumed job %s: %s (%s)", rid, end.State, end.Reason)
	}
	dir := filepath.Join(t.TempDir(), "result")
	mustRun(t, req, "data", "get", end.ResultCID, "-o", dir, "-q")
	var model struct {
		ResumedFrom int `json:"resumed_from"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "model.json"))
	if err == nil {
		err = json.Unmarshal(b, &model)
	}
	if err != nil || model.ResumedFrom != last.Step {
		t.Fatalf("the resumed job started at step %d (%v), want %d", model.ResumedFrom, err, last.Step)
	}
}
