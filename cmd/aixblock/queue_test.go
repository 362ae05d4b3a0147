package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// waitReason polls a job's status until its reason says want or it ends
// without ever saying it.
func waitReason(t testing.TB, repo, id, want string) jobStatus {
	t.Helper()
	last := &seenStatus{}
	p2ptest.WaitFor(t, time.Minute, func() bool {
		last.s = jobStatus{}
		runJSON(t, repo, &last.s, "job", "status", id)
		return strings.Contains(last.s.Reason, want) || terminal(last.s.State)
	}, "job %s is %s, not saying %q", id, last, want)
	return last.s
}

// A market job that no provider can take returns its ID at once, is
// listed as queued with every asked provider's reason while it waits, and
// fails with the last reason when timeouts.queue runs out. A job that
// completes moves its provider's reputation.
func TestMarketJobNobodyCanTake(t *testing.T) {
	jobDocker(t)
	dir := testnetUp(t, "--nodes", "2")
	req, prov := filepath.Join(dir, "node0"), filepath.Join(dir, "node1")
	var pid idInfo
	runJSON(t, prov, &pid, "id")
	p2ptest.WaitFor(t, 30*time.Second, func() bool { return strings.Contains(mustRun(t, req, "market", "providers"), pid.PeerID) },
		"the provider never showed up in the market")
	who := pid.PeerID[:12] + ": "
	for _, c := range []struct {
		name, resources, maxPrice string
		want                      []string
	}{
		{"under the price floor", "{gpus: 1}", "0.5", []string{who + "price floor 2 tUSD per GPU-hour for mock-h100-80gb > max price 0.5 tUSD"}},
		{"more CPU than the provider has", "{gpus: 1, cpu: 512}", "5", []string{who + "need 512 CPU cores, "}},
		{"no such class", "{gpus: 1, gpu_class: h100}", "5", []string{`unknown GPU class "h100" (known: `, "did you mean mock-h100-80gb?"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := filepath.Join(t.TempDir(), "job.yaml")
			writeFile(t, spec, "name: nobody\nimage: "+jobImage+"\nargs: [echo, hi]\nresources: "+c.resources+
				"\nmax_price: \""+c.maxPrice+"\"\ntimeouts: {queue: 5s}\n")
			r := run(t, req, "job", "submit", spec)
			id := strings.TrimSpace(r.stdout)
			if r.code != 0 || id == "" {
				t.Fatalf("submit: %+v", r)
			}
			var s jobStatus
			runJSON(t, req, &s, "job", "status", id)
			if s.State != "queued" {
				t.Fatalf("right after submit: %+v, want queued", s)
			}
			var list []jobStatus
			runJSON(t, req, &list, "job", "list")
			listed := false
			for _, j := range list {
				listed = listed || (j.ID == id && j.State == "queued")
			}
			if !listed {
				t.Fatalf("job list does not show %s queued: %+v", id, list)
			}
			s = waitReason(t, req, id, c.want[0])
			for _, w := range c.want {
				if s.State != "queued" || !strings.Contains(s.Reason, w) {
					t.Fatalf("while queued: %+v, want the reason to say %q", s, w)
				}
			}
			s = waitState(t, req, id, terminal)
			if s.State != "failed" || !strings.Contains(s.Reason, "timeouts.queue") || !strings.Contains(s.Reason, c.want[0]) {
				t.Fatalf("after the queue timeout: %+v", s)
			}
		})
	}

	// Reputation: a completed job counts for its provider.
	id := strings.TrimSpace(mustRun(t, req, "job", "run", "-d", "--gpus", "1", "--max-price", "5", jobImage, "--", "echo", "hi"))
	if s := waitState(t, req, id, terminal); s.State != "completed" {
		t.Fatalf("job %+v", s)
	}
	var found struct {
		Providers []struct {
			PeerID     string `json:"peer_id"`
			Reputation struct {
				Completed int `json:"completed"`
				Failed    int `json:"failed"`
				NoShow    int `json:"no_show"`
			} `json:"reputation"`
		} `json:"providers"`
	}
	p2ptest.WaitFor(t, 30*time.Second, func() bool {
		runJSON(t, req, &found, "market", "providers")
		for _, p := range found.Providers {
			if p.PeerID == pid.PeerID {
				return p.Reputation.Completed == 1 && p.Reputation.Failed == 0 && p.Reputation.NoShow == 0
			}
		}
		return false
	}, "provider's reputation after a completed job: %+v, want 1 ok", &found)
}

// A queued market job survives a SIGKILL of its daemon: after the restart
// it is still queued (resumed, with what is left of timeouts.queue), and
// then fails with the reason.
func TestQueuedJobSurvivesRestart(t *testing.T) {
	info, file := startDevchain(t)
	key := filepath.Join(t.TempDir(), "key")
	writeFile(t, key, info.Accounts[1].PrivateKey)
	repo := filepath.Join(t.TempDir(), "repo")
	mustRun(t, repo, "init", "--network", "queuerestart", "--devchain", file, "--wallet-key", key)
	d := startDaemon(t, repo)
	spec := filepath.Join(t.TempDir(), "job.yaml")
	writeFile(t, spec, "name: alone\nimage: "+jobImage+"\nargs: [echo, hi]\nresources: {gpus: 1}\nmax_price: \"5\"\ntimeouts: {queue: 20s}\n")
	id := strings.TrimSpace(mustRun(t, repo, "job", "submit", spec))
	if s := waitReason(t, repo, id, "no provider bid"); s.State != "queued" {
		t.Fatalf("before the kill: %+v", s)
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	os.Remove(filepath.Join(repo, "api"))
	startDaemon(t, repo)
	var s jobStatus
	runJSON(t, repo, &s, "job", "status", id)
	if s.State != "queued" {
		t.Fatalf("after the restart: %+v, want still queued", s)
	}
	s = waitState(t, repo, id, terminal)
	if s.State != "failed" || !strings.Contains(s.Reason, "timeouts.queue") || !strings.Contains(s.Reason, "no provider bid") {
		t.Fatalf("at the end of the queue: %+v", s)
	}
}
