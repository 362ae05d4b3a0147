package main

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// What a new user runs into in the first hour, each checked the way they
// would meet it.

// A line the job prints reaches `job logs -f` while the job still runs.
func TestLiveLogs(t *testing.T) {
	jobDocker(t)
	repo := initRepo(t, "livelogs")
	startDaemon(t, repo)
	id := strings.TrimSpace(mustRun(t, repo, "job", "run", "--local", "-d", jobImage, "--", "sleep", "60s"))
	t.Cleanup(func() { run(t, repo, "job", "cancel", id) })

	cmd := exec.Command(bin, "--repo", repo, "job", "logs", "-f", id)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if !strings.Contains(s, "sleeping 1m0s") {
			t.Fatalf("first line %q", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("logs -f printed nothing while the job ran")
	}
	// The line came first; the job is still running: it was live.
	var s jobStatus
	runJSON(t, repo, &s, "job", "status", id)
	if s.State != "running" {
		t.Fatalf("job %s after its first line, want running", s.State)
	}
	// A unique prefix names the job, as in docker.
	var p jobStatus
	runJSON(t, repo, &p, "job", "status", id[:6])
	if p.ID != id {
		t.Fatalf("status by prefix %q: %+v", id[:6], p)
	}
	mustRun(t, repo, "job", "cancel", id[:8])
	if s := waitState(t, repo, id, terminal); s.State != "canceled" {
		t.Fatalf("cancel by prefix: %+v", s)
	}
}

func TestCLIHabits(t *testing.T) {
	repo := initRepo(t, "habits")

	t.Run("unknown subcommands fail with a suggestion", func(t *testing.T) {
		r := run(t, repo, "job", "lst")
		if r.code == 0 || !strings.Contains(r.stderr, `unknown command "lst" for "aixblock job"`) || !strings.Contains(r.stderr, "\tlist") {
			t.Fatalf("job lst: %+v", r)
		}
		if r := run(t, repo, "gpu", "lsit"); r.code == 0 {
			t.Fatalf("gpu lsit exit 0: %+v", r)
		}
		if r := run(t, repo, "job"); r.code != 0 || !strings.Contains(r.stdout, "Available Commands") {
			t.Fatalf("job alone should show its help: %+v", r)
		}
	})
	t.Run("errors as JSON under --json", func(t *testing.T) {
		r := run(t, repo, "job", "lst", "--json")
		var e struct {
			Error string `json:"error"`
			Code  int    `json:"exit_code"`
		}
		if r.code == 0 || json.Unmarshal([]byte(r.stderr), &e) != nil || !strings.Contains(e.Error, "unknown command") || e.Code != 1 {
			t.Fatalf("--json error: %+v", r)
		}
	})
	t.Run("init --help names its flags' values", func(t *testing.T) {
		r := run(t, repo, "init", "--help")
		if !strings.Contains(r.stdout, "--devchain FILE") || strings.Contains(r.stdout, "--devchain aixblock") {
			t.Fatalf("init --help:\n%s", r.stdout)
		}
	})
	t.Run("config reference", func(t *testing.T) {
		var ref []struct{ Key, Default, Meaning string }
		runJSON(t, repo, &ref, "config", "show", "--defaults")
		found := false
		for _, k := range ref {
			found = found || (k.Key == "market.voucher_interval" && k.Default == "30s")
		}
		if !found || len(ref) < 30 {
			t.Fatalf("config show --defaults: %d keys, voucher_interval found %v", len(ref), found)
		}
		var cfg map[string]any
		runJSON(t, repo, &cfg, "config", "show")
		if cfg["network"] != "habits" {
			t.Fatalf("config show: %v", cfg)
		}
	})
	t.Run("a second testnet down says nothing is running", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "testnet.json"), []byte(`{"dir":"`+dir+`","nodes":[{"name":"node0","pid":0}]}`), 0o600)
		out := mustRun(t, repo, "testnet", "down", "--dir", dir)
		if !strings.Contains(out, "nothing was running") {
			t.Fatalf("testnet down: %q", out)
		}
	})
}

// Two daemons on one machine start without port flags: the second finds
// the default API and gateway taken and takes free ports, and says which.
func TestTwoDaemonsOnDefaults(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:5901", "127.0.0.1:8901"} {
		// The defaults may be free here; hold them so the fallback is what runs.
		if l, err := net.Listen("tcp", addr); err == nil {
			t.Cleanup(func() { l.Close() })
		}
	}
	repo := initRepo(t, "defaults")
	d := startDaemonArgs(t, repo, "--listen", "/ip4/127.0.0.1/tcp/0", "--mdns=false", "--nat=false")
	var id idInfo
	runJSON(t, repo, &id, "id")
	if id.Gateway == "" || strings.HasSuffix(id.Gateway, ":8901") {
		t.Fatalf("gateway %q: want a free port instead of the busy default", id.Gateway)
	}
	if out := mustRun(t, repo, "id"); !strings.Contains(out, "gateway") || !strings.Contains(out, id.Gateway) {
		t.Fatalf("plain id does not show the gateway:\n%s", out)
	}
	if !strings.Contains(d.stderr.String(), "default address in use") {
		t.Fatalf("no warning about the busy default:\n%s", d.stderr)
	}
}

// A node of another network that bootstraps to ours is cut off once
// identified: neither lists the other, and the bootstrap says why.
func TestForeignNetworkBootstrap(t *testing.T) {
	a := initRepo(t, "ours")
	startDaemon(t, a)
	var ida idInfo
	runJSON(t, a, &ida, "id")
	b := initRepo(t, "theirs")
	d := startDaemon(t, b, "--bootstrap", ida.Addrs[0])
	r := run(t, b, "peers", "connect", ida.Addrs[0])
	if r.code == 0 || !strings.Contains(r.stderr, `not a node of network "theirs"`) {
		t.Fatalf("connect to another network: %+v", r)
	}
	for _, repo := range []string{a, b} {
		var peers []peerInfo
		runJSON(t, repo, &peers, "peers")
		if len(peers) != 0 {
			t.Fatalf("%s lists %v", repo, peers)
		}
	}
	if !strings.Contains(d.stderr.String(), "bootstrap peer is not on this network") {
		t.Fatalf("no bootstrap warning:\n%s", d.stderr)
	}
}
