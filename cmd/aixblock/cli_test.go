package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// bin is the CLI built once for every test in this file.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "aixblock-cli")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "aixblock")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build CLI: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func run(t testing.TB, repo string, args ...string) result {
	t.Helper()
	// A command that should fail at once but does not must not hang the suite.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := cliCommand(ctx, repo, append([]string{"--repo", repo}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

func mustRun(t testing.TB, repo string, args ...string) string {
	t.Helper()
	r := run(t, repo, args...)
	if r.code != 0 {
		t.Fatalf("aixblock %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

func runJSON(t testing.TB, repo string, v any, args ...string) {
	t.Helper()
	out := mustRun(t, repo, append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("aixblock %v --json: %v\n%s", args, err, out)
	}
}

func initRepo(t testing.TB, network string) string {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "repo")
	mustRun(t, repo, "init", "--network", network)
	return repo
}

type daemon struct {
	cmd    *exec.Cmd
	stderr *logBuffer
	done   chan error
}

// logBuffer is a daemon's stderr, which tests read while it writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

func (l *logBuffer) String() string { return string(l.Bytes()) }

// quiet keeps a test daemon on loopback: no mDNS, no NAT port mapping.
var quiet = []string{"--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0", "--gateway", "127.0.0.1:0", "--mdns=false", "--nat=false"}

// quietExcept is quiet without the flags that args sets itself.
func quietExcept(args []string) []string {
	var out []string
	for i := 0; i < len(quiet); i++ {
		flag := quiet[i]
		if strings.Contains(flag, "=") {
			if !slices.Contains(args, flag) {
				out = append(out, flag)
			}
			continue
		}
		if !slices.Contains(args, flag) {
			out = append(out, flag, quiet[i+1])
		}
		i++
	}
	return out
}

func startDaemon(t testing.TB, repo string, extra ...string) *daemon {
	t.Helper()
	return startDaemonArgs(t, repo, append(slices.Clone(quiet), extra...)...)
}

// startDaemonArgs starts a daemon with exactly these flags, without the
// quiet defaults (for tests of the defaults themselves).
func startDaemonArgs(t testing.TB, repo string, args ...string) *daemon {
	t.Helper()
	d := &daemon{stderr: &logBuffer{}, done: make(chan error, 1)}
	d.cmd = cliCommand(context.Background(), repo, append([]string{"--repo", repo, "daemon"}, args...)...)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
		}
	})
	p2ptest.WaitFor(t, 20*time.Second, func() bool {
		select {
		case err := <-d.done:
			t.Fatalf("daemon exited: %v\n%s", err, d.stderr)
		default:
		}
		_, err := os.Stat(filepath.Join(repo, "api"))
		return err == nil
	}, "daemon not ready\n%s", d.stderr)
	return d
}

// later is part of a wait's message that is worked out only if the wait
// gives up (p2ptest.WaitFor formats its args then): a command's output,
// say.
type later func() string

func (f later) String() string { return f() }

type idInfo struct {
	PeerID  string   `json:"peer_id"`
	Addrs   []string `json:"addrs"`
	Network string   `json:"network"`
	Version string   `json:"version"`
	Gateway string   `json:"gateway"`
}

type peerInfo struct {
	PeerID string `json:"peer_id"`
	Addr   string `json:"addr"`
}

func hasPeer(peers []peerInfo, id string) bool {
	for _, p := range peers {
		if p.PeerID == id && p.Addr != "" {
			return true
		}
	}
	return false
}

func TestTwoDaemonsConnect(t *testing.T) {
	r1, r2 := initRepo(t, "clitest"), initRepo(t, "clitest")
	startDaemon(t, r1)
	var id1 idInfo
	runJSON(t, r1, &id1, "id")
	if id1.PeerID == "" || len(id1.Addrs) == 0 || id1.Network != "clitest" || id1.Version == "" {
		t.Fatalf("id --json incomplete: %+v", id1)
	}
	startDaemon(t, r2, "--bootstrap", id1.Addrs[0])
	var id2 idInfo
	runJSON(t, r2, &id2, "id")

	var p1, p2 []peerInfo
	p2ptest.WaitFor(t, 15*time.Second, func() bool {
		p1, p2 = nil, nil
		runJSON(t, r1, &p1, "peers")
		runJSON(t, r2, &p2, "peers")
		return hasPeer(p1, id2.PeerID) && hasPeer(p2, id1.PeerID)
	}, "daemons did not connect: r1 sees %+v, r2 sees %+v", &p1, &p2)

	var st struct {
		PeerID   string   `json:"peer_id"`
		Peers    int      `json:"peers"`
		DHTPeers *int     `json:"dht_peers"`
		UptimeS  *float64 `json:"uptime_s"`
	}
	runJSON(t, r2, &st, "status")
	if st.PeerID != id2.PeerID || st.Peers < 1 || st.DHTPeers == nil || st.UptimeS == nil {
		t.Fatalf("status --json: %+v", st)
	}
	if !strings.Contains(mustRun(t, r1, "peers"), id2.PeerID) {
		t.Fatal("human peers output lacks the other peer")
	}

	t.Run("API requires the token", func(t *testing.T) {
		url := strings.TrimSpace(readFile(t, filepath.Join(r1, "api")))
		token := strings.TrimSpace(readFile(t, filepath.Join(r1, "api.token")))
		for name, tc := range map[string]struct {
			path, auth string
			want       int
		}{
			"no token":         {"/v1/id", "", 401},
			"wrong token":      {"/v1/id", "Bearer " + strings.Repeat("0", len(token)), 401},
			"not bearer":       {"/v1/status", token, 401},
			"metrics too":      {"/metrics", "", 401},
			"right token":      {"/v1/id", "Bearer " + token, 200},
			"liveness probe":   {"/healthz", "", 200},
			"metrics allowed":  {"/metrics", "Bearer " + token, 200},
			"profiler too":     {"/debug/pprof/cmdline", "", 401},
			"profiler allowed": {"/debug/pprof/cmdline", "Bearer " + token, 200},
		} {
			req, _ := http.NewRequest("GET", url+tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s: GET %s = %d, want %d (%s)", name, tc.path, resp.StatusCode, tc.want, body)
			}
			if tc.path == "/metrics" && tc.want == 200 && !bytes.Contains(body, []byte("aixblock_peers 1")) {
				t.Errorf("metrics lack aixblock_peers 1:\n%.500s", body)
			}
		}
	})
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDaemonLifecycle(t *testing.T) {
	repo := initRepo(t, "clitest")
	d := startDaemon(t, repo)

	second := run(t, repo, append([]string{"daemon"}, quiet...)...)
	if second.code == 0 || !strings.Contains(second.stderr, "in use by another daemon") {
		t.Fatalf("second daemon: exit %d, %q", second.code, second.stderr)
	}
	if _, err := os.Stat(filepath.Join(repo, "api")); err != nil {
		t.Fatal("the second daemon removed the first one's api file")
	}

	start := time.Now()
	d.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("daemon exited with %v\n%s", err, d.stderr)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("daemon still running 5s after SIGINT\n%s", d.stderr)
	}
	t.Logf("stopped in %s", time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat(filepath.Join(repo, "api")); !os.IsNotExist(err) {
		t.Fatalf("api file left after exit: %v", err)
	}
	r := run(t, repo, "status")
	if r.code == 0 || !strings.Contains(r.stderr, "no daemon running") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("status without daemon: exit %d, %q", r.code, r.stderr)
	}
	// The lock is free again.
	startDaemon(t, repo)
}

func TestBadInput(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	cases := []struct {
		name  string
		setup func(t *testing.T, repo string) // breaks the repo; nil keeps it good
		args  []string
		want  string
	}{
		{name: "bad listen multiaddr", args: []string{"daemon", "--listen", "/ip4/999.0.0.1/tcp/1"}, want: `listen: "/ip4/999.0.0.1/tcp/1" is not a multiaddr`},
		{name: "bad bootstrap multiaddr", args: []string{"daemon", "--bootstrap", "/ip4/127.0.0.1/tcp/4001"}, want: `bootstrap: "/ip4/127.0.0.1/tcp/4001" is not a multiaddr ending in /p2p/<peer-id>`},
		{name: "bad api address", args: []string{"daemon", "--api", "localhost"}, want: `api: "localhost" is not HOST:PORT`},
		{name: "bad network", args: []string{"daemon", "--network", "No/Such"}, want: `network: network name "No/Such"`},
		{name: "libp2p port in use", args: []string{"daemon", "--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", busyPort)}, want: "address already in use"},
		{name: "api port in use", args: []string{"daemon", "--api", busy.Addr().String()}, want: "api listen: listen tcp " + busy.Addr().String() + ": bind: address already in use"},
		{name: "gateway port in use", args: []string{"daemon", "--gateway", busy.Addr().String()}, want: "gateway listen: listen tcp " + busy.Addr().String() + ": bind: address already in use"},
		{name: "bad log level", args: []string{"daemon", "--log-level", "loud"}, want: `log-level "loud"`},
		{name: "init over a repo", args: []string{"init"}, want: "already exists (found config.json); not overwriting it"},
		{name: "corrupted key", args: []string{"daemon"}, want: "identity.key is corrupt",
			setup: func(t *testing.T, repo string) { writeFile(t, filepath.Join(repo, "identity.key"), "garbage") }},
		{name: "corrupted config", args: []string{"daemon"}, want: "config.json: line 2",
			setup: func(t *testing.T, repo string) {
				writeFile(t, filepath.Join(repo, "config.json"), "{\n  \"network\": ,\n}")
			}},
		{name: "unknown config field", args: []string{"daemon"}, want: `unknown field "netwrok"`,
			setup: func(t *testing.T, repo string) { writeFile(t, filepath.Join(repo, "config.json"), `{"netwrok":"x"}`) }},
		{name: "bad multiaddr in config", args: []string{"daemon"}, want: `listen: "nonsense" is not a multiaddr`,
			setup: func(t *testing.T, repo string) {
				writeFile(t, filepath.Join(repo, "config.json"), `{"network":"x","listen":["nonsense"],"api":"127.0.0.1:0"}`)
			}},
		{name: "no daemon", args: []string{"peers"}, want: "no daemon running on repo"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := initRepo(t, "clitest")
			if tc.setup != nil {
				tc.setup(t, repo)
			}
			before := snapshot(t, repo)
			args := tc.args
			if args[0] == "daemon" {
				args = append(args, quietExcept(args)...)
			}
			r := run(t, repo, args...)
			checkOneLineError(t, r, tc.want)
			if after := snapshot(t, repo); after != before {
				t.Fatalf("repo changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}

	t.Run("no repo", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nothing")
		for _, cmd := range []string{"daemon", "id", "peers", "status"} {
			checkOneLineError(t, run(t, missing, cmd), "no aixblock repo at "+missing)
		}
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Fatal("a command created the missing repo")
		}
	})
	t.Run("init with a bad network creates nothing", func(t *testing.T) {
		repo := filepath.Join(t.TempDir(), "r")
		checkOneLineError(t, run(t, repo, "init", "--network", "UPPER"), `network name "UPPER"`)
		if _, err := os.Stat(repo); !os.IsNotExist(err) {
			t.Fatal("init left a directory behind")
		}
	})
}

func checkOneLineError(t *testing.T, r result, want string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("exit 0, want an error containing %q; stdout %q", want, r.stdout)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "aixblock: ") || !strings.Contains(last, want) {
		t.Fatalf("error %q, want one line containing %q", r.stderr, want)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// snapshot is the repo's files and contents, minus the lock, as one string.
func snapshot(t *testing.T, repo string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(repo, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "repo.lock" {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		fmt.Fprintf(&b, "%s=%x;", rel, readFile(t, p))
		return nil
	})
	return b.String()
}

func TestVersionAndInitJSON(t *testing.T) {
	var v struct{ Version, Go string }
	runJSON(t, t.TempDir(), &v, "version")
	if v.Version == "" || !strings.HasPrefix(v.Go, "go") {
		t.Fatalf("version --json: %+v", v)
	}
	repo := filepath.Join(t.TempDir(), "r")
	var out struct {
		Repo    string `json:"repo"`
		PeerID  string `json:"peer_id"`
		Network string `json:"network"`
	}
	runJSON(t, repo, &out, "init", "--network", "abc")
	if out.Network != "abc" || !strings.HasPrefix(out.PeerID, "12D3KooW") {
		t.Fatalf("init --json: %+v", out)
	}
	for _, f := range []string{"identity.key", "api.token", "config.json"} {
		st, err := os.Stat(filepath.Join(repo, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
}

// repoNetns places a repo's daemon and CLI in a network namespace (the
// NAT topology's hosts): run, mustRun, startDaemon and the helpers over
// them then run there.
var repoNetns sync.Map // repo -> namespace name

// cliCommand is the aixblock binary with args, inside the repo's network
// namespace when it has one.
func cliCommand(ctx context.Context, repo string, args ...string) *exec.Cmd {
	b := bin
	if hb, ok := repoBin.Load(repo); ok {
		b = hb.(string)
	}
	if ns, ok := repoNetns.Load(repo); ok {
		return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.(string), b}, args...)...)
	}
	return exec.CommandContext(ctx, b, args...)
}

// repoBin runs a repo's daemon and CLI from another build of aixblock (a
// hostile provider's).
var repoBin sync.Map // repo -> binary

var (
	hostileOnce sync.Once
	hostile     string
	hostileErr  error
)

// hostileBin is aixblock built with the aixblock_hostile tag: its mock
// GPUs are advertised as the real cards they mimic, as a lying
// provider's would be. Built once per test binary, beside bin.
func hostileBin(t testing.TB) string {
	t.Helper()
	hostileOnce.Do(func() {
		hostile = bin + "-hostile"
		if out, err := exec.Command("go", "build", "-tags", "aixblock_hostile", "-o", hostile, ".").CombinedOutput(); err != nil {
			hostileErr = fmt.Errorf("build the hostile CLI: %v\n%s", err, out)
		}
	})
	if hostileErr != nil {
		t.Fatal(hostileErr)
	}
	return hostile
}
