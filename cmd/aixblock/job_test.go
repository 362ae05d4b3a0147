package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs/jobstest"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

const jobImage = jobstest.Image

// jobDocker skips t without a Docker engine and makes sure the engine
// holds jobImage (jobstest.Docker).
func jobDocker(t testing.TB) {
	t.Helper()
	jobstest.Docker(t)
}

type jobStatus struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Reason    string `json:"reason"`
	ExitCode  *int   `json:"exit_code"`
	ResultCID string `json:"result_cid"`
}

// waitState waits until want holds of job id's state, as job status
// tells it.
func waitState(t testing.TB, repo, id string, want func(string) bool) jobStatus {
	t.Helper()
	last := &seenStatus{}
	p2ptest.WaitFor(t, time.Minute, func() bool {
		last.s = jobStatus{}
		runJSON(t, repo, &last.s, "job", "status", id)
		return want(last.s.State)
	}, "job %s is still %s", id, last)
	return last.s
}

// seenStatus prints the status a wait saw last, when the wait gives up.
type seenStatus struct{ s jobStatus }

func (s *seenStatus) String() string { return fmt.Sprintf("%s (%s)", s.s.State, s.s.Reason) }

func terminal(s string) bool {
	return s == "completed" || s == "failed" || s == "canceled" || s == "timed_out"
}

func TestJobsThroughTheDaemon(t *testing.T) {
	jobDocker(t)
	repo := initRepo(t, "jobtest")
	startDaemon(t, repo)

	// run: output streamed, exit status passed on.
	r := run(t, repo, "job", "run", "--local", jobImage, "--", "echo", "hello from the job")
	if r.code != 0 || !strings.Contains(r.stdout, "hello from the job") {
		t.Fatalf("job run: %+v", r)
	}
	r = run(t, repo, "job", "run", "--local", jobImage, "--", "exit", "3")
	if r.code != 3 || !strings.Contains(r.stderr, "exited with code 3") {
		t.Fatalf("job run exit 3: %+v", r)
	}

	// submit a spec, status, logs, results.
	spec := filepath.Join(t.TempDir(), "job.yaml")
	os.WriteFile(spec, []byte("name: writer\nimage: "+jobImage+"\nargs: [write, /outputs/out.txt, result bytes]\nresources: {memory_mib: 64}\n"), 0o600)
	id := strings.TrimSpace(mustRun(t, repo, "job", "submit", spec, "--local"))
	s := waitState(t, repo, id, terminal)
	if s.State != "completed" || s.ExitCode == nil || *s.ExitCode != 0 || s.ResultCID == "" {
		t.Fatalf("status %+v", s)
	}
	out := filepath.Join(t.TempDir(), "results")
	mustRun(t, repo, "job", "results", id, "-o", out)
	if b, _ := os.ReadFile(filepath.Join(out, "out.txt")); string(b) != "result bytes" {
		t.Fatalf("results: %q", b)
	}
	if l := mustRun(t, repo, "job", "list"); !strings.Contains(l, id) || !strings.Contains(l, "completed") {
		t.Fatalf("list:\n%s", l)
	}

	// cancel, and logs -f that ends when the job does.
	id = strings.TrimSpace(mustRun(t, repo, "job", "run", "--local", "-d", jobImage, "--", "sleep", "60s"))
	waitState(t, repo, id, func(s string) bool { return s == "running" })
	logs := make(chan result, 1)
	go func() { logs <- run(t, repo, "job", "logs", "-f", id) }()
	mustRun(t, repo, "job", "cancel", id)
	if s := waitState(t, repo, id, terminal); s.State != "canceled" {
		t.Fatalf("canceled job: %+v", s)
	}
	select {
	case l := <-logs:
		if !strings.Contains(l.stdout, "sleeping 1m0s") {
			t.Fatalf("logs -f: %+v", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("logs -f did not end with the job")
	}

	// Bad specs name the field; nothing runs.
	os.WriteFile(spec, []byte("name: x\nimage: "+jobImage+"\nprivileged: true\n"), 0o600)
	if r := run(t, repo, "job", "submit", spec, "--local"); r.code == 0 || !strings.Contains(r.stderr, "privileged") {
		t.Fatalf("privileged spec: %+v", r)
	}
	if r := run(t, repo, "job", "run", "--local", "--input", "bafkqaaa:/etc/x", jobImage); r.code == 0 || !strings.Contains(r.stderr, "inputs[0].path") {
		t.Fatalf("input outside /inputs: %+v", r)
	}
	if r := run(t, repo, "job", "status", "nosuchjob"); r.code == 0 || !strings.Contains(r.stderr, "no such job") {
		t.Fatalf("unknown job: %+v", r)
	}
}

// A daemon killed with SIGKILL mid-job reattaches after a restart and the
// job completes.
func TestJobSurvivesDaemonKill(t *testing.T) {
	jobDocker(t)
	repo := initRepo(t, "jobtest")
	d := startDaemon(t, repo)
	id := strings.TrimSpace(mustRun(t, repo, "job", "run", "--local", "-d", jobImage, "--", "sleep", "3s"))
	waitState(t, repo, id, func(s string) bool { return s == "running" })
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	os.Remove(filepath.Join(repo, "api")) // a killed daemon leaves it behind
	startDaemon(t, repo)
	s := waitState(t, repo, id, terminal)
	if s.State != "completed" {
		t.Fatalf("after the restart: %+v", s)
	}
	if l := mustRun(t, repo, "job", "logs", id); !strings.Contains(l, "woke up") {
		t.Fatalf("logs %q", l)
	}
}
