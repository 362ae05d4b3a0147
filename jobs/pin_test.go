package jobs

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/moby/moby/client"
)

// PID reuse from the hostile side (issue 28, N10), on the fake runtime:
// the engine gives a container's PID, and by the time the daemon uses
// it the container's process has gone and the number names a process of
// the host (5555 here). A port dial or a job network's join by that PID
// would land in the host's namespace; the daemon must refuse instead.
func TestReusedPIDNeverCounts(t *testing.T) {
	t.Run("a port dial by a PID the engine gave before its process changed", testStalePIDDial)
	t.Run("a dial during which the process exits and its PID is reused", testPIDReusedDuringDial)
	t.Run("a job network joined by a reused PID", testJobNetReusedPID)
}

// reusedPID is the host's process whose number the engine's stale answers
// give.
const reusedPID = 5555

// pidDialer records the PIDs a manager's DialPort was given and the
// connections it handed back.
type pidDialer struct {
	mu     sync.Mutex
	pids   []int
	conns  []net.Conn
	during func(pid int) // runs inside the dial
}

// reusedPIDManager is a manager on a fake runtime on whose host pid
// reusedPID runs, dialing ports through d.
func reusedPIDManager(t *testing.T, d *pidDialer) (*Manager, *fakeRuntime) {
	rt := newFakeRuntime()
	rt.hostPids[reusedPID] = true
	m := fakeManager(t, t.TempDir(), rt, &fakeContent{}, func(c *Config) {
		c.DialPort = func(ctx context.Context, pid, port int) (net.Conn, error) {
			if d.during != nil {
				d.during(pid)
			}
			a, b := net.Pipe()
			t.Cleanup(func() { a.Close(); b.Close() })
			d.mu.Lock()
			defer d.mu.Unlock()
			d.pids, d.conns = append(d.pids, pid), append(d.conns, a)
			return a, nil
		}
	})
	return m, rt
}

func testStalePIDDial(t *testing.T) {
	d := &pidDialer{}
	m, rt := reusedPIDManager(t, d)
	rt.add("svc", true, 0) // pid 4242
	rt.stale["svc"] = []ContainerState{{Exists: true, Running: true, Pid: reusedPID}}
	j := &Job{ContainerID: "svc"}
	c, err := m.dialPort(context.Background(), j, 8080)
	t.Logf("dial: %v; dialed pids %v", err, d.pids)
	if slices.Contains(d.pids, reusedPID) {
		t.Errorf("dialed in the namespace of pid %d, a host process", reusedPID)
	}
	if err == nil || !strings.Contains(err.Error(), "pid 5555 is not used") {
		t.Errorf("dial: %v, %v; want a refusal naming pid %d", c, err, reusedPID)
	}
	// The engine's next answer is the truth: the container's own.
	if c, err := m.dialPort(context.Background(), j, 8080); err != nil || d.pids[len(d.pids)-1] != 4242 {
		t.Fatalf("the next dial: %v, %v, pids %v", c, err, d.pids)
	}
}

func testPIDReusedDuringDial(t *testing.T) {
	d := &pidDialer{}
	m, rt := reusedPIDManager(t, d)
	rt.add("svc", true, 0) // pid 4242
	d.during = func(pid int) {
		rt.end("svc", 137)
		rt.mu.Lock()
		rt.hostPids[pid] = true
		rt.mu.Unlock()
	}
	c, err := m.dialPort(context.Background(), &Job{ContainerID: "svc"}, 8080)
	t.Logf("dial: %v", err)
	if err == nil || !strings.Contains(err.Error(), "exited during the dial") {
		t.Errorf("dial: %v, %v; want a refusal", c, err)
	}
	// The connection made is closed, never handed on.
	if len(d.conns) != 1 {
		t.Fatalf("%d dials", len(d.conns))
	}
	d.conns[0].SetWriteDeadline(time.Now().Add(time.Second))
	if _, werr := d.conns[0].Write([]byte("x")); werr == nil || !strings.Contains(werr.Error(), "closed") {
		t.Errorf("the dial's connection is still open: %v", werr)
	}
}

func testJobNetReusedPID(t *testing.T) {
	m, rt := reusedPIDManager(t, &pidDialer{})
	// c1 is the holder; the engine's first answer of it is stale.
	rt.stale["c1"] = []ContainerState{{Exists: true, Running: true, Pid: reusedPID}}
	var mu sync.Mutex
	var joined []string
	j, err := m.Submit(fakeSpec(), SubmitOptions{JoinNetwork: func(ctx context.Context, ns string) (io.Closer, error) {
		target, _ := os.Readlink(ns)
		mu.Lock()
		joined = append(joined, ns+" → "+target)
		mu.Unlock()
		return nil, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	id := j.ID
	p2ptest.WaitFor(t, 10*time.Second, func() bool {
		j, _ = m.Get(id)
		return j.State == Running || j.State.Terminal()
	}, "job %s running or ended", id)
	t.Logf("%s %q; joined %q", j.State, j.Reason, joined)
	for _, ns := range joined {
		if strings.Contains(ns, "/5555/") || strings.Contains(ns, "fake-netns-host") {
			t.Errorf("the job network went into the namespace of pid %d, a host process: %s", reusedPID, ns)
		}
	}
	if j.State != Failed || !strings.Contains(j.Reason, "job network: holder container: the container's process changed from pid 5555 to 1001") {
		t.Errorf("%s %q; want the job failed naming pid %d", j.State, j.Reason, reusedPID)
	}
}

// The real hold (pinPID): a process held by its pidfd is alive until
// it is reaped, its namespace is the one /proc/PID/ns/net names, the
// descriptor's /proc/self/fd path opens that same namespace, and once it
// is reaped nothing more is opened by its PID through the hold.
func TestPinPID(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	p, err := pinPID(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !p.Alive() {
		t.Fatal("a running process reads as gone")
	}
	ns, err := p.NetNS()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	ino := func(path string) uint64 {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(ns.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	want := ino("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if st.Ino != want || ino("/proc/self/fd/"+strconv.Itoa(int(ns.Fd()))) != want {
		t.Fatalf("namespace inode %d, by descriptor path %d; /proc/%d/ns/net is %d", st.Ino, ino("/proc/self/fd/"+strconv.Itoa(int(ns.Fd()))), pid, want)
	}

	cmd.Process.Kill()
	cmd.Wait() // reaped: the PID is free for reuse
	if p.Alive() {
		t.Fatal("a reaped process reads as alive")
	}
	if f, err := p.NetNS(); err == nil {
		f.Close()
		t.Fatal("a namespace opened through the hold of a reaped process")
	}
	if _, err := pinPID(1 << 30); err == nil {
		t.Fatal("held a process that does not exist")
	}
}

// On the real engine: the namespace a distributed rank's job network is
// given is the holder container's, reached through a descriptor the
// daemon holds (not /proc/PID), and not the host's.
func TestDockerJobNetworkNamespace(t *testing.T) {
	d := dockerOrSkip(t)
	if os.Geteuid() != 0 {
		t.Skip("opening a container's namespace needs root")
	}
	m, _ := newTestManager(t, d, t.TempDir())
	id := strings.TrimPrefix(randomText(t), "host secret ")
	ino := func(path string) (uint64, error) {
		var st syscall.Stat_t
		err := syscall.Stat(path, &st)
		return st.Ino, err
	}
	type seen struct {
		path              string
		got, holder, host uint64
		err               error
	}
	var mu sync.Mutex
	var s seen
	join := func(ctx context.Context, ns string) (io.Closer, error) {
		mu.Lock()
		defer mu.Unlock()
		s.path = ns
		ins, err := d.Client().ContainerInspect(ctx, "aixblock-"+id+"-net", client.ContainerInspectOptions{})
		if err != nil {
			s.err = err
			return nil, err
		}
		s.got, s.err = ino(ns)
		s.holder, _ = ino("/proc/" + strconv.Itoa(ins.Container.State.Pid) + "/ns/net")
		s.host, _ = ino("/proc/self/ns/net")
		return nil, nil
	}
	j, err := m.Submit(job("exit", "0"), SubmitOptions{ID: id, JoinNetwork: join})
	if err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID, time.Minute)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%s %q; join got %s: inode %d, holder's %d, host's %d, %v", j.State, j.Reason, s.path, s.got, s.holder, s.host, s.err)
	if j.State != Completed || s.err != nil || !strings.HasPrefix(s.path, "/proc/self/fd/") || s.got == 0 || s.got != s.holder || s.got == s.host {
		t.Fatal("the job network was not given the holder's namespace by a descriptor")
	}
}
