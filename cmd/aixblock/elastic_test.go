package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	if end := waitState(t, req, id, terminal); end.State != "completed" {
		t.Fatalf("job %s: %s (%s)", id, end.State, end.Reason)
	}
	// While the job runs a newer checkpoint replaces the pin every
	// second; once it ended, the last (added at the exit) settles.
	var out, pins string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("job status:\n%s\ndata pin ls:\n%s", out, pins)
		}
	})
	p2ptest.WaitFor(t, time.Minute, func() bool {
		runJSON(t, req, &st, "job", "status", id)
		out, pins = mustRun(t, req, "job", "status", id), mustRun(t, req, "data", "pin", "ls")
		return strings.Contains(out, "checkpoint") && strings.Contains(out, st.CheckpointCID) && strings.Contains(pins, st.CheckpointCID)
	}, "job status to show checkpoint %s, pinned on the requester", st.CheckpointCID)
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

// An elastic job survives the SIGKILL of one rank's provider: it goes on
// with two ranks from its last checkpoint, grows back to three with the
// spare provider from the market, and completes; each change is an event
// in job status.
func TestElasticRankLost(t *testing.T) {
	ddpImage(t)
	repos, daemons := ddpNetwork(t, 4)
	req := repos[4]
	t.Cleanup(func() { logElastic(t, daemons) })
	spec := filepath.Join(t.TempDir(), "elastic.yaml")
	os.WriteFile(spec, []byte("name: elastic\nimage: aixblock-test/ddp:latest\nresources: {gpus: 1, memory_mib: 128}\n"+
		"distributed: {nodes: 3, min_nodes: 2}\ncheckpoint: {every: 1s}\nmax_price: \"20\"\n"+
		"env: {STEPS: \"2500\", STEP_DELAY_MS: \"20\", CKPT_STEPS: \"20\"}\n"), 0o600)
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", spec))
	killRankMidJob(t, repos[:4], daemons, req, id)
	st := shrinkGrowComplete(t, req, id)
	dir := filepath.Join(t.TempDir(), "result")
	mustRun(t, req, "data", "get", st.ResultCID, "-o", dir, "-q")
	var model struct {
		World       int `json:"world"`
		ResumedFrom int `json:"resumed_from"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "rank-0", "model.json"))
	if err == nil {
		err = json.Unmarshal(b, &model)
	}
	if err != nil || model.World != 3 || model.ResumedFrom == 0 {
		t.Fatalf("the last generation's model: %+v (%v), want 3 ranks resumed from a checkpoint", model, err)
	}
	if out := mustRun(t, req, "job", "status", id); !strings.Contains(out, "restarting 2 ranks") {
		t.Fatalf("job status shows no events:\n%s", out)
	}
}

// killRankMidJob waits for job id's first checkpoint, then SIGKILLs the
// daemon of a provider (one of repos, daemons alike) running a rank other
// than rank 0, and waits for it to die. The rank's containers, which
// outlive their daemon, are removed when the test ends.
func killRankMidJob(t *testing.T, repos []string, daemons []*daemon, req, id string) {
	t.Helper()
	var st elasticStatus
	p2ptest.WaitFor(t, 2*time.Minute, func() bool {
		runJSON(t, req, &st, "job", "status", id)
		return st.CheckpointCID != "" || terminal(st.State)
	}, "a checkpoint of job %s", id)
	victim, rank := otherRank(t, repos, req, id)
	t.Cleanup(func() { removeJobContainers(rank) })
	t.Logf("killing provider %d", victim)
	daemons[victim].cmd.Process.Signal(syscall.SIGKILL)
	<-daemons[victim].done
}

// shrinkGrowComplete waits for elastic job id (3 ranks, one lost) to
// restart on two ranks from a checkpoint, grow back to three with a
// provider that joins, and complete; it returns the job's last status.
func shrinkGrowComplete(t *testing.T, req, id string) elasticStatus {
	t.Helper()
	waitEvent(t, req, id, "restarting 2 ranks from checkpoint")
	return growComplete(t, req, id)
}

// growComplete waits for elastic job id to grow back to three ranks and
// complete, with the events of a lost rank and of one that joins.
func growComplete(t *testing.T, req, id string) elasticStatus {
	t.Helper()
	st := waitEvent(t, req, id, "restarting 3 ranks")
	if !st.hasEvent("lost (provider") || !st.hasEvent("joins (provider") {
		t.Fatalf("events: %+v", st.Events)
	}
	p2ptest.WaitFor(t, 5*time.Minute, func() bool {
		runJSON(t, req, &st, "job", "status", id)
		return terminal(st.State)
	}, "job %s to end", id)
	if st.State != "completed" {
		t.Fatalf("job %s: %s (%s); events %+v", id, st.State, st.Reason, st.Events)
	}
	return st
}

// waitEvent waits for an event of job id that says want, and fails the
// test if the job ends first.
func waitEvent(t *testing.T, req, id, want string) elasticStatus {
	t.Helper()
	var st elasticStatus
	p2ptest.WaitFor(t, 4*time.Minute, func() bool {
		runJSON(t, req, &st, "job", "status", id)
		return st.hasEvent(want) || terminal(st.State)
	}, "event %q of job %s", want, id)
	if !st.hasEvent(want) {
		t.Fatalf("job %s ended %s (%s) without %q: %+v", id, st.State, st.Reason, want, st.Events)
	}
	return st
}

type elasticStatus struct {
	State         string `json:"state"`
	Reason        string `json:"reason"`
	ResultCID     string `json:"result_cid"`
	CheckpointCID string `json:"checkpoint_cid"`
	Events        []struct {
		Text string `json:"text"`
	} `json:"events"`
}

func (s elasticStatus) hasEvent(text string) bool {
	for _, e := range s.Events {
		if strings.Contains(e.Text, text) {
			return true
		}
	}
	return false
}

// logElastic shows a failed test the daemons' lines about the gang.
func logElastic(t *testing.T, daemons []*daemon) {
	if !t.Failed() {
		return
	}
	for i, d := range daemons {
		var lines []string
		for _, l := range strings.Split(d.stderr.String(), "\n") {
			if strings.Contains(l, "[job]") || strings.Contains(l, "gang") || strings.Contains(l, "rank") || strings.Contains(l, "checkpoint") {
				lines = append(lines, l)
			}
		}
		t.Logf("daemon %d:\n%s", i, strings.Join(lines, "\n"))
	}
}
