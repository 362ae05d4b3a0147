package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/overlay"
	"github.com/moby/moby/client"
)

func TestServiceSpec(t *testing.T) {
	base := "name: x\nimage: alpine:3\n"
	svc := base + "kind: service\n"
	for _, tc := range []struct {
		name, yaml, field string // field "" means valid
	}{
		{"batch by default", base, ""},
		{"explicit batch", base + "kind: batch\n", ""},
		{"a service", svc + "ports: [{port: 8080, name: http}, {port: 9090}]\n", ""},
		{"a service without ports", svc, ""},
		{"full service", svc + "ports: [{port: 8080}]\nrestart: {policy: on-failure, max: 5}\nready: {http: \"/healthz?deep=1\", interval: 500ms, timeout: 1s}\n", ""},
		{"tcp check on the second port", svc + "ports: [{port: 8080}, {port: 9000}]\nready: {tcp: true, port: 9000}\n", ""},
		{"never restart", svc + "restart: {policy: never}\n", ""},
		{"unknown kind", base + "kind: daemon\n", "kind"},
		{"ports on a batch job", base + "ports: [{port: 8080}]\n", "ports"},
		{"restart on a batch job", base + "restart: {policy: on-failure}\n", "restart"},
		{"ready on a batch job", base + "ready: {tcp: true}\n", "ready"},
		{"port 0", svc + "ports: [{port: 0}]\n", "ports[0].port"},
		{"port too big", svc + "ports: [{port: 65536}]\n", "ports[0].port"},
		{"port twice", svc + "ports: [{port: 80}, {port: 80}]\n", "ports[1].port"},
		{"bad port name", svc + "ports: [{port: 80, name: Web_UI}]\n", "ports[0].name"},
		{"port name twice", svc + "ports: [{port: 80, name: a}, {port: 81, name: a}]\n", "ports[1].name"},
		{"too many ports", svc + "ports: [" + manyPorts(17) + "]\n", "ports"},
		{"unknown port field", svc + "ports: [{port: 80, host_port: 80}]\n", `unknown field "host_port" in ports[]`},
		{"bad policy", svc + "restart: {policy: always}\n", "restart.policy"},
		{"negative max", svc + "restart: {max: -1}\n", "restart.max"},
		{"too many restarts", svc + "restart: {max: 101}\n", "restart.max"},
		{"two checks", svc + "ports: [{port: 80}]\nready: {http: /h, tcp: true}\n", "ready"},
		{"no check", svc + "ports: [{port: 80}]\nready: {interval: 1s}\n", "ready"},
		{"check without ports", svc + "ready: {tcp: true}\n", "ready"},
		{"check of an undeclared port", svc + "ports: [{port: 80}]\nready: {tcp: true, port: 81}\n", "ready.port"},
		{"relative path", svc + "ports: [{port: 80}]\nready: {http: healthz}\n", "ready.http"},
		{"request injection", svc + "ports: [{port: 80}]\nready: {http: \"/h HTTP/1.1\\r\\nX: y\"}\n", "ready.http"},
		{"bad interval", svc + "ports: [{port: 80}]\nready: {tcp: true, interval: often}\n", "ready.interval"},
		{"tiny timeout", svc + "ports: [{port: 80}]\nready: {tcp: true, timeout: 1ns}\n", "ready.timeout"},
		{"distributed service", svc + "distributed: {nodes: 2}\n", "distributed.nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSpec([]byte(tc.yaml))
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrSpec) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want an error naming %q", err, tc.field)
			}
		})
	}
}

func manyPorts(n int) string {
	var s []string
	for i := range n {
		s = append(s, fmt.Sprintf("{port: %d}", 1000+i))
	}
	return strings.Join(s, ", ")
}

func TestServiceDefaults(t *testing.T) {
	parse := func(y string) *Spec {
		t.Helper()
		s, err := ParseSpec([]byte("name: x\nimage: alpine:3\n" + y))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	batch, svc := parse(""), parse("kind: service\nports: [{port: 8080}]\n")
	if d, ok := batch.ExecutionLimit(); !ok || d != DefaultExecution || batch.MaxRestartCount() != 0 {
		t.Fatalf("batch: limit %s %v, restarts %d", d, ok, batch.MaxRestartCount())
	}
	if _, ok := svc.ExecutionLimit(); ok || svc.MaxRestartCount() != DefaultRestarts {
		t.Fatalf("service: limited %v, restarts %d", ok, svc.MaxRestartCount())
	}
	if d, ok := parse("kind: service\ntimeouts: {execution: 5m}\n").ExecutionLimit(); !ok || d != 5*time.Minute {
		t.Fatalf("an explicit execution timeout on a service: %s %v", d, ok)
	}
	for y, want := range map[string]int{"restart: {policy: never, max: 5}": 0, "restart: {max: 7}": 7, "restart: {policy: on-failure}": DefaultRestarts} {
		if got := parse("kind: service\n" + y + "\n").MaxRestartCount(); got != want {
			t.Errorf("%s: %d restarts, want %d", y, got, want)
		}
	}
	r, ok := parse("kind: service\nports: [{port: 8080}, {port: 9000}]\nready: {http: /h}\n").readyCheck()
	if !ok || r.Port != 8080 || r.Interval != "1s" || r.Timeout != "2s" {
		t.Fatalf("ready defaults %+v", r)
	}
	// Specs without the new fields keep their JSON (records and spec
	// hashes of existing jobs do not move).
	b, _ := json.Marshal(batch)
	for _, k := range []string{"kind", "ports", "restart", "ready"} {
		if strings.Contains(string(b), `"`+k+`"`) {
			t.Errorf("a batch spec's JSON has %q: %s", k, b)
		}
	}
}

// FuzzParseSpec feeds the spec parser what a requester can send: it must
// not panic, and what it accepts must validate again unchanged.
func FuzzParseSpec(f *testing.F) {
	files, _ := filepath.Glob("examples/*.yaml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("name: x\nimage: a\nkind: service\nports: [{port: 1}]\nready: {tcp: true}\n"))
	f.Add([]byte("name: x\nimage: a\nkind: service\nrestart: {policy: never, max: 100}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSpec(b)
		if err != nil {
			if !errors.Is(err, ErrSpec) {
				t.Fatalf("error %v is not ErrSpec", err)
			}
			return
		}
		before, _ := json.Marshal(s)
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted, then invalid: %v", err)
		}
		if after, _ := json.Marshal(s); string(after) != string(before) {
			t.Fatalf("a second Validate changed the spec:\n%s\n%s", before, after)
		}
		if s.IsService() {
			if _, ok := s.readyCheck(); ok && len(s.Ports) == 0 {
				t.Fatal("a readiness check without a port")
			}
		}
	})
}

func serviceJob(args ...string) Spec {
	s := job(args...)
	s.Kind = KindService
	s.Ports = []Port{{Port: 8080, Name: "http"}}
	return s
}

// get fetches path from a service job's port through the Manager's dialer.
func get(t *testing.T, m *Manager, id string, port int, path string) (string, error) {
	t.Helper()
	dial, err := m.PortDialer(id, port)
	if err != nil {
		return "", err
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }}}
	defer c.CloseIdleConnections()
	res, err := c.Get("http://service" + path)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return string(b), err
}

// A service on the real engine: network none, not ready until its check
// passes, reached through its namespace, restarted after a crash (and
// ready again), ended by cancel; a failing one stops after its restarts.
func TestDockerService(t *testing.T) {
	d := dockerOrSkip(t)
	if os.Geteuid() != 0 {
		t.Skip("reaching a container's namespace needs root")
	}
	m, _ := newTestManager(t, d, t.TempDir())
	m.cfg.DialPort = overlay.DialPID
	ctx := context.Background()

	s := serviceJob("serve", ":8080", "2s")
	s.Ready = &Ready{HTTP: "/healthz", Interval: "200ms"}
	j := mustSubmit(t, m, s)
	j = await(t, m, j.ID, "running", time.Minute, func(j *Job) bool { return j.State == Running })
	if j.Ready || !strings.Contains(j.Reason, "not ready until GET /healthz on port 8080 answers") {
		t.Fatalf("just started: ready %v, reason %q", j.Ready, j.Reason)
	}
	j = await(t, m, j.ID, "ready", 30*time.Second, func(j *Job) bool { return j.Ready })
	if j.State != Running || !strings.HasPrefix(j.Reason, "ready") || j.Progress != "" {
		t.Fatalf("ready: %s %q %q", j.State, j.Reason, j.Progress)
	}
	if body, err := get(t, m, j.ID, 8080, "/"); err != nil || body != "hello from jobprog\n" {
		t.Fatalf("GET /: %q, %v", body, err)
	}
	// The provider publishes nothing: no network but loopback, no port
	// bound on the host.
	ins, err := d.Client().ContainerInspect(ctx, j.ContainerID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if hc := ins.Container.HostConfig; hc.NetworkMode != "none" || len(hc.PortBindings) > 0 {
		t.Fatalf("network mode %q, port bindings %v", hc.NetworkMode, hc.PortBindings)
	}
	if _, err := m.PortDialer(j.ID, 22); !errors.Is(err, ErrNotServing) || !strings.Contains(err.Error(), "declares no port 22") {
		t.Fatalf("an undeclared port: %v", err)
	}
	if pid, err := m.ContainerPID(ctx, j.ID); err != nil || pid <= 0 {
		t.Fatalf("pid %d, %v", pid, err)
	}

	// A crash restarts it; it is not ready until the check passes again.
	if body, err := get(t, m, j.ID, 8080, "/crash"); err != nil || body != "crashing\n" {
		t.Fatalf("GET /crash: %q, %v", body, err)
	}
	j = await(t, m, j.ID, "a restart", 30*time.Second, func(j *Job) bool { return j.Restarts == 1 })
	if !strings.Contains(j.Reason, "restarted after exit code 2 (1 of 3)") {
		t.Fatalf("after the crash: %q", j.Reason)
	}
	j = await(t, m, j.ID, "ready again", 30*time.Second, func(j *Job) bool { return j.Ready })
	if body, err := get(t, m, j.ID, 8080, "/healthz"); err != nil || body != "ok\n" {
		t.Fatalf("after the restart: %q, %v", body, err)
	}
	if l := logsOf(t, m, j.ID); strings.Count(l, "serving on :8080") != 2 || strings.Count(l, "crash requested") != 1 {
		t.Fatalf("logs of both runs, once each: %q", l)
	}

	if _, err := m.Cancel(j.ID); err != nil {
		t.Fatal(err)
	}
	if j = waitJob(t, m, j.ID, 30*time.Second); j.State != Canceled || j.Ready {
		t.Fatalf("canceled: %s ready %v", j.State, j.Ready)
	}
	if _, err := m.PortDialer(j.ID, 8080); !errors.Is(err, ErrNotServing) {
		t.Fatalf("a canceled service's port: %v", err)
	}

	t.Run("restarts run out", func(t *testing.T) {
		s := serviceJob("exit", "3")
		s.Restart = &Restart{Max: 2}
		j := waitJob(t, m, mustSubmit(t, m, s).ID, time.Minute)
		if j.State != Failed || j.Restarts != 2 || !strings.Contains(j.Reason, "exited with code 3, after 2 restarts") {
			t.Fatalf("%s %q, %d restarts", j.State, j.Reason, j.Restarts)
		}
		s.Restart = &Restart{Policy: RestartNever}
		if j = waitJob(t, m, mustSubmit(t, m, s).ID, time.Minute); j.State != Failed || j.Restarts != 0 {
			t.Fatalf("policy never: %s %q, %d restarts", j.State, j.Reason, j.Restarts)
		}
	})
	t.Run("tcp check", func(t *testing.T) {
		s := serviceJob("serve", ":8080")
		s.Ready = &Ready{TCP: true, Interval: "100ms"}
		j := mustSubmit(t, m, s)
		await(t, m, j.ID, "ready", time.Minute, func(j *Job) bool { return j.Ready })
		m.Cancel(j.ID)
		waitJob(t, m, j.ID, 30*time.Second)
	})
}
