package jobs

// The manager's state machine on the fake runtime (fake_test.go): every
// transition and each runtime call's failure, without Docker. The Docker
// tests (docker_test.go, service_test.go, hostile_test.go) run the same
// manager on the real engine.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// fakeEnv is a manager on the fake runtime and content, and what the
// hooks the manager calls saw.
type fakeEnv struct {
	m  *Manager
	rt *fakeRuntime
	fc *fakeContent

	backoffs    atomic.Int32  // restart backoffs taken
	backoffWait time.Duration // each one's length; zero unless a case says
	dialOK      atomic.Bool   // DialPort connects (else refuses)
	dialedPid   atomic.Int32
	joinedNS    atomic.Value // string: the namespace JoinNetwork was given
	netClosed   atomic.Bool  // what JoinNetwork returned was closed
}

// fakeManager is a manager on rt and fc in dir. Its jobs are stopped and
// waited for before the test's directories go.
func fakeManager(t *testing.T, dir string, rt *fakeRuntime, fc *fakeContent, cfg func(*Config)) *Manager {
	t.Helper()
	c := Config{Dir: dir, Runtime: rt, Content: fc, Grace: time.Millisecond, MockGPUs: true, Logger: slog.New(slog.DiscardHandler)}
	if cfg != nil {
		cfg(&c)
	}
	m, err := NewManager(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	// Tests talk to loopback only: the fake image's registry resolves
	// here, to a public address.
	m.lookupIP = fakeResolver(map[string][]string{"example.org": {"93.184.216.34"}})
	m.pin = rt.pin
	t.Cleanup(func() {
		for _, j := range m.List() {
			m.Cancel(j.ID)
		}
		m.wg.Wait()
	})
	return m
}

func fakeSpec() Spec {
	return Spec{Name: "t", Image: testFakeImage, Args: []string{"x"}, Resources: Resources{MemoryMiB: 64, CPU: 0.5}}
}

func service(s *Spec) {
	s.Kind, s.Ports = KindService, []Port{{Port: 8080}}
}

func states(j *Job) string {
	var out []string
	for _, h := range j.History {
		out = append(out, string(h.State))
	}
	return strings.Join(out, " ")
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

const noExit = -1

// A job submitted to the manager, from pending to its end state, for each
// way a run ends and each runtime call that fails.
func TestStateMachine(t *testing.T) {
	for _, tc := range slices.Concat(runEndCases(), prepareCases(), imageCases(), runtimeCases(), gateCases(), jobNetCases(), serviceCases(), checkpointCases(), regroupCases(), goCheckpointCases()) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runStateCase(t, tc)
		})
	}
}

// runStateCase submits tc's job and checks how it ended.
func runStateCase(t *testing.T, tc stateCase) {
	e := &fakeEnv{rt: newFakeRuntime(), fc: &fakeContent{}}
	if tc.setup != nil {
		tc.setup(e)
	}
	e.m = fakeManager(t, t.TempDir(), e.rt, e.fc, func(c *Config) {
		if tc.cfg != nil {
			tc.cfg(e, c)
		}
	})
	e.m.backoff = func(int) time.Duration { e.backoffs.Add(1); return e.backoffWait }
	s := fakeSpec()
	if tc.spec != nil {
		tc.spec(&s)
	}
	var opts SubmitOptions
	if tc.opts != nil {
		opts = tc.opts(e)
	}
	j, err := e.m.Submit(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	if tc.act != nil {
		tc.act(t, e, j.ID)
	}
	j = waitJob(t, e.m, j.ID, 30*time.Second)
	checkEnd(t, j, tc.state, tc.reason, tc.exit)
	if tc.history != "" && states(j) != tc.history {
		t.Errorf("states %q, want %q", states(j), tc.history)
	}
	// The record on disk is the one in memory.
	if rec, err := loadJob(filepath.Join(e.m.cfg.Dir, j.ID)); err != nil || rec.State != j.State || len(rec.History) != len(j.History) {
		t.Errorf("persisted %+v, %v", rec, err)
	}
	if tc.check != nil {
		tc.check(t, e, j)
	}
}

// stateCase is one run of TestStateMachine.
type stateCase struct {
	name  string
	spec  func(*Spec)
	opts  func(*fakeEnv) SubmitOptions
	cfg   func(*fakeEnv, *Config)
	setup func(*fakeEnv) // before the manager starts
	// act runs once the job is submitted; the job then runs to its end.
	act     func(t *testing.T, e *fakeEnv, id string)
	state   State
	reason  string // part of the end reason; "" wants none
	exit    int    // noExit: none recorded
	history string // the states in order, when set
	check   func(t *testing.T, e *fakeEnv, j *Job)
}

// runEndCases: how a run ends: its exit, a cancel, a failure, a timeout.
func runEndCases() []stateCase {
	return []stateCase{
		{
			name:  "exit 0 uploads the outputs and completes",
			setup: func(e *fakeEnv) { e.rt.exits = []int{0} },
			state: Completed, exit: 0, history: "pending preparing running uploading completed",
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				dir := filepath.Join(e.m.cfg.Dir, j.ID)
				if want := []string{filepath.Join(dir, "outputs")}; !slices.Equal(e.fc.added, want) {
					t.Errorf("added %q, want %q", e.fc.added, want)
				}
				if j.ResultCID != testCID(filepath.Join(dir, "outputs")).String() {
					t.Errorf("result %q", j.ResultCID)
				}
				if got := readFile(t, filepath.Join(dir, "stdout.log")); got != "run 1\n" {
					t.Errorf("stdout.log %q", got)
				}
				if got := readFile(t, filepath.Join(dir, "stderr.log")); got != "to stderr\n" {
					t.Errorf("stderr.log %q", got)
				}
				if _, ok := e.rt.container(j.ContainerID); ok {
					t.Error("the container was not removed")
				}
				if _, err := os.Stat(filepath.Join(dir, "outputs")); !os.IsNotExist(err) {
					t.Errorf("the outputs' scratch stayed: %v", err)
				}
				c := e.rt.createdSpecs()[0]
				if c.Image != "sha256:fake" || c.Outputs != filepath.Join(dir, "outputs") || c.NetworkOf != "" || c.GPUs != nil {
					t.Errorf("container %+v", c)
				}
				if !slices.Contains(c.Env, "NVIDIA_VISIBLE_DEVICES=none") || !slices.Contains(c.Env, "AIXBLOCK_JOB_ID="+j.ID) {
					t.Errorf("env %q", c.Env)
				}
			},
		},
		{
			name:  "a non-zero exit fails with its code",
			setup: func(e *fakeEnv) { e.rt.exits = []int{3} },
			state: Failed, reason: "exited with code 3", exit: 3, history: "pending preparing running failed",
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if len(e.fc.added) != 0 || j.ResultCID != "" {
					t.Errorf("a failed job's outputs were added: %q", e.fc.added)
				}
			},
		},
		{
			name:  "a run killed for memory says so",
			setup: func(e *fakeEnv) { e.rt.exits, e.rt.oom = []int{137}, true },
			state: Failed, reason: "exited with code 137 (out of memory: raise resources.memory_mib)", exit: 137,
		},
		{
			name: "cancel while running stops the container",
			act: func(t *testing.T, e *fakeEnv, id string) {
				waitRunning(t, e.m, id)
				if _, err := e.m.Cancel(id); err != nil {
					t.Fatal(err)
				}
			},
			state: Canceled, reason: "canceled by the user", exit: 143, history: "pending preparing running canceled",
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if !e.rt.called("Stop", j.ContainerID) || !e.rt.called("Remove", j.ContainerID) {
					t.Errorf("calls %q", e.rt.callList())
				}
			},
		},
		{
			name: "fail while running ends it failed with the reason",
			act: func(t *testing.T, e *fakeEnv, id string) {
				waitRunning(t, e.m, id)
				if _, err := e.m.Fail(id, "GPU-1 is unhealthy: XID 79"); err != nil {
					t.Fatal(err)
				}
			},
			state: Failed, reason: "GPU-1 is unhealthy: XID 79", exit: 143,
		},
		{
			name:  "the execution timeout stops the run",
			spec:  func(s *Spec) { s.Timeouts.Execution = "1s" },
			state: TimedOut, reason: "ran longer than the execution timeout 1s", exit: 143,
		},
		{
			name:  "the total timeout stops the run",
			spec:  func(s *Spec) { s.Timeouts.Total = "1s" },
			state: TimedOut, reason: "took longer than the total timeout 1s", exit: 143,
		},
	}
}

// prepareCases: what ends a job while it prepares.
func prepareCases() []stateCase {
	return []stateCase{
		{
			name:  "the prepare timeout ends a slow pull",
			cfg:   func(_ *fakeEnv, c *Config) { c.PrepareTimeout = 50 * time.Millisecond },
			setup: func(e *fakeEnv) { delete(e.rt.images, testFakeImage); e.rt.blockPull = true },
			state: TimedOut, reason: "preparing took more than 50ms", exit: noExit, history: "pending preparing timed_out",
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if e.rt.called("Create", "") {
					t.Error("a container was made for a job that never prepared")
				}
			},
		},
		{
			// Issue 28 N12: a market job's GPUs are held unpaid while it
			// prepares; its provider bounds that per job, below the
			// daemon's own (30 min) bound.
			name:  "a job's own prepare timeout ends a trickling pull",
			opts:  func(*fakeEnv) SubmitOptions { return SubmitOptions{PrepareTimeout: 50 * time.Millisecond} },
			setup: func(e *fakeEnv) { delete(e.rt.images, testFakeImage); e.rt.blockPull = true },
			state: TimedOut, reason: "preparing took more than 50ms", exit: noExit, history: "pending preparing timed_out",
		},
		{
			name:  "cancel while preparing",
			setup: func(e *fakeEnv) { delete(e.rt.images, testFakeImage); e.rt.blockPull = true },
			act: func(t *testing.T, e *fakeEnv, id string) {
				p2ptest.WaitFor(t, 10*time.Second, func() bool { return e.rt.called("Pull", "") }, "the pull")
				e.m.Cancel(id)
			},
			state: Canceled, reason: "canceled while preparing", exit: noExit,
		},
		{
			// A provider holds a requester's status request until the
			// job's state changes (AwaitChange), or the request's wait
			// ends.
			name:  "a wait for a change is answered by the change",
			setup: func(e *fakeEnv) { delete(e.rt.images, testFakeImage); e.rt.blockPull = true },
			act: func(t *testing.T, e *fakeEnv, id string) {
				p2ptest.WaitFor(t, 10*time.Second, func() bool { return e.rt.called("Pull", "") }, "the pull")
				short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
				j, err := e.m.AwaitChange(short, id, Preparing)
				cancel()
				if err != nil || j.State != Preparing {
					t.Fatalf("a wait that ends unchanged: %v, %v", j, err)
				}
				got := make(chan *Job, 1)
				go func() {
					j, _ := e.m.AwaitChange(t.Context(), id, Preparing)
					got <- j
				}()
				e.m.Cancel(id)
				select {
				case j := <-got:
					if j == nil || j.State == Preparing {
						t.Fatalf("the wait answered %v", j)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("a wait for a change was not answered by the cancel")
				}
			},
			state: Canceled, reason: "canceled while preparing", exit: noExit,
		},
		{
			name:  "fail while preparing",
			setup: func(e *fakeEnv) { delete(e.rt.images, testFakeImage); e.rt.blockPull = true },
			act: func(t *testing.T, e *fakeEnv, id string) {
				p2ptest.WaitFor(t, 10*time.Second, func() bool { return e.rt.called("Pull", "") }, "the pull")
				e.m.Fail(id, "the deal ended")
			},
			state: Failed, reason: "the deal ended", exit: noExit,
		},
	}
}

// imageCases: the image and the inputs a job needs before it runs.
func imageCases() []stateCase {
	inputCID := testCID("input").String()
	return []stateCase{
		{
			name:  "a missing image is not pulled with NoPull",
			cfg:   func(_ *fakeEnv, c *Config) { c.NoPull = true },
			setup: func(e *fakeEnv) { delete(e.rt.images, testFakeImage) },
			state: Failed, reason: "is not in the local engine (docker load it", exit: noExit,
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if e.rt.called("Pull", "") {
					t.Error("pulled with NoPull")
				}
			},
		},
		{
			name: "a missing image is pulled and run by its ID",
			setup: func(e *fakeEnv) {
				delete(e.rt.images, testFakeImage)
				e.rt.registry[testFakeImage], e.rt.exits = "sha256:pulled", []int{0}
			},
			state: Completed, exit: 0,
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if c := e.rt.createdSpecs()[0]; c.Image != "sha256:pulled" {
					t.Errorf("ran image %q", c.Image)
				}
				if img, ok := e.m.loadImages()[testFakeImage]; !ok || img.ID != "sha256:pulled" {
					t.Errorf("the pulled image is not in the cache's record: %+v", e.m.loadImages())
				}
			},
		},
		{
			name:  "a failed pull fails the job",
			setup: func(e *fakeEnv) { delete(e.rt.images, testFakeImage) },
			state: Failed, reason: "image example.org/fake/job:1 is not in the local engine and could not be pulled from example.org (not there, no access, or not answering; the provider's log has the engine's message)", exit: noExit,
		},
		{
			name:  "a pull that brings no such name fails the job",
			setup: func(e *fakeEnv) { delete(e.rt.images, testFakeImage); e.rt.registry[testFakeImage] = "" },
			state: Failed, reason: "pulled, but the engine has no image by that name", exit: noExit,
		},
		{
			name:  "the image lookup fails",
			setup: func(e *fakeEnv) { e.rt.fail("ImageID", errBoom) },
			state: Failed, reason: "boom", exit: noExit,
		},
		{
			name:  "inputs are fetched into the job's directory and mounted",
			spec:  func(s *Spec) { s.Inputs = []Input{{CID: inputCID, Path: "/inputs/data"}} },
			setup: func(e *fakeEnv) { e.rt.exits = []int{0} },
			state: Completed, exit: 0,
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				want := []Mount{{Source: filepath.Join(e.m.cfg.Dir, j.ID, "inputs", "0"), Target: "/inputs/data"}}
				if got := e.rt.createdSpecs()[0].Inputs; !slices.Equal(got, want) {
					t.Errorf("mounts %+v, want %+v", got, want)
				}
			},
		},
		{
			name:  "an input that cannot be fetched fails the job, naming it",
			spec:  func(s *Spec) { s.Inputs = []Input{{CID: inputCID, Path: "/inputs/data"}} },
			setup: func(e *fakeEnv) { e.fc.getErr = errBoom },
			state: Failed, reason: "input 0 (" + inputCID + " → /inputs/data): boom", exit: noExit,
		},
	}
}

// runtimeCases: each runtime call's failure, and GPUs.
func runtimeCases() []stateCase {
	return []stateCase{
		{
			name:  "create fails",
			setup: func(e *fakeEnv) { e.rt.fail("Create", errBoom) },
			state: Failed, reason: "boom", exit: noExit, history: "pending preparing failed",
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if e.rt.called("Start", "") {
					t.Error("started what was not created")
				}
			},
		},
		{
			name:  "start fails and the container goes",
			setup: func(e *fakeEnv) { e.rt.fail("Start", errBoom) },
			state: Failed, reason: "boom", exit: noExit,
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if !e.rt.called("Remove", j.ContainerID) {
					t.Errorf("calls %q", e.rt.callList())
				}
			},
		},
		{
			name:  "wait fails and the container is stopped",
			setup: func(e *fakeEnv) { e.rt.fail("Wait", errBoom) },
			state: Failed, reason: "boom", exit: 143,
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if !e.rt.called("Stop", j.ContainerID) {
					t.Errorf("calls %q", e.rt.callList())
				}
			},
		},
		{
			name:  "failed logs do not fail the job",
			setup: func(e *fakeEnv) { e.rt.fail("Logs", errBoom); e.rt.exits = []int{0} },
			state: Completed, exit: 0,
		},
		{
			name: "a failed upload names /outputs, not the host's path",
			setup: func(e *fakeEnv) {
				e.rt.exits = []int{0}
				e.fc.addErr = func(p string) error { return fmt.Errorf("add %s/x: %w", p, errBoom) }
			},
			state: Failed, reason: "upload outputs: add /outputs/x: boom", exit: 0, history: "pending preparing running uploading failed",
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if strings.Contains(j.Reason, e.m.cfg.Dir) {
					t.Errorf("reason %q names the host's directory", j.Reason)
				}
			},
		},
		{
			name:  "mock GPUs are named, not requested",
			spec:  func(s *Spec) { s.Resources.GPUs = 2 },
			opts:  func(*fakeEnv) SubmitOptions { return SubmitOptions{GPUs: []string{"GPU-a", "GPU-b", "GPU-c"}} },
			setup: func(e *fakeEnv) { e.rt.exits = []int{0} },
			state: Completed, exit: 0,
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				c := e.rt.createdSpecs()[0]
				if c.GPUs != nil || !slices.Contains(c.Env, "NVIDIA_VISIBLE_DEVICES=GPU-a,GPU-b") || !slices.Equal(j.GPUs, []string{"GPU-a", "GPU-b"}) {
					t.Errorf("GPUs %q, env %q, job's %q", c.GPUs, c.Env, j.GPUs)
				}
			},
		},
		{
			name:  "real GPUs are requested by UUID",
			spec:  func(s *Spec) { s.Resources.GPUs = 1 },
			opts:  func(*fakeEnv) SubmitOptions { return SubmitOptions{GPUs: []string{"GPU-a", "GPU-b"}} },
			cfg:   func(_ *fakeEnv, c *Config) { c.MockGPUs = false },
			setup: func(e *fakeEnv) { e.rt.exits = []int{0} },
			state: Completed, exit: 0,
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if c := e.rt.createdSpecs()[0]; !slices.Equal(c.GPUs, []string{"GPU-a"}) {
					t.Errorf("GPUs %q", c.GPUs)
				}
			},
		},
	}
}

// gateCases: a distributed rank's gate.
func gateCases() []stateCase {
	return []stateCase{
		{
			name: "a gated job waits for go, then runs with its env",
			opts: func(*fakeEnv) SubmitOptions {
				return SubmitOptions{Gate: true, Env: []string{"NCCL_SOCKET_IFNAME=aix0"}}
			},
			setup: func(e *fakeEnv) { e.rt.exits = []int{0} },
			act: func(t *testing.T, e *fakeEnv, id string) {
				p2ptest.WaitFor(t, 10*time.Second, func() bool { return e.m.Prepared(id) }, "prepared")
				if e.rt.called("Create", "") {
					t.Fatal("a gated job's container was made before go")
				}
				if err := e.m.Go(id, []string{"RANK=1"}, ""); err != nil {
					t.Fatal(err)
				}
			},
			state: Completed, exit: 0, history: "pending preparing preparing running uploading completed",
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				c := e.rt.createdSpecs()[0]
				if !slices.Contains(c.Env, "RANK=1") || !slices.Contains(c.Env, "NCCL_SOCKET_IFNAME=aix0") {
					t.Errorf("env %q", c.Env)
				}
				if j.History[2].Reason != "prepared; waiting for the other ranks" {
					t.Errorf("history %+v", j.History)
				}
			},
		},
		{
			name: "cancel at the gate",
			opts: func(*fakeEnv) SubmitOptions { return SubmitOptions{Gate: true} },
			act: func(t *testing.T, e *fakeEnv, id string) {
				p2ptest.WaitFor(t, 10*time.Second, func() bool { return e.m.Prepared(id) }, "prepared")
				e.m.Cancel(id)
			},
			state: Canceled, reason: "canceled while waiting for the other ranks", exit: noExit,
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if e.rt.called("Create", "") {
					t.Error("a canceled rank's container was made")
				}
				if err := e.m.Go(j.ID, nil, ""); !errors.Is(err, ErrFinished) {
					t.Errorf("go after the end: %v", err)
				}
			},
		},
		{
			name: "fail at the gate",
			opts: func(*fakeEnv) SubmitOptions { return SubmitOptions{Gate: true} },
			act: func(t *testing.T, e *fakeEnv, id string) {
				p2ptest.WaitFor(t, 10*time.Second, func() bool { return e.m.Prepared(id) }, "prepared")
				e.m.Fail(id, "rank 2 failed")
			},
			state: Failed, reason: "rank 2 failed", exit: noExit,
		},
		{
			name: "a go whose env the daemon owns fails the job",
			opts: func(*fakeEnv) SubmitOptions { return SubmitOptions{Gate: true} },
			act: func(t *testing.T, e *fakeEnv, id string) {
				p2ptest.WaitFor(t, 10*time.Second, func() bool { return e.m.Prepared(id) }, "prepared")
				if err := e.m.Go(id, []string{"NVIDIA_VISIBLE_DEVICES=all"}, ""); err == nil {
					t.Fatal("go with NVIDIA_VISIBLE_DEVICES accepted")
				}
			},
			state: Failed, reason: "distributed start refused", exit: noExit,
		},
	}
}

// jobNetCases: a distributed rank's job network.
func jobNetCases() []stateCase {
	return []stateCase{
		{
			name: "a job network: holder, namespace, release",
			opts: func(e *fakeEnv) SubmitOptions {
				return SubmitOptions{JoinNetwork: func(ctx context.Context, ns string) (io.Closer, error) {
					// A descriptor of this process's, open while join
					// runs: what it names.
					target, _ := os.Readlink(ns)
					e.joinedNS.Store(ns + " → " + target)
					return closerFunc(func() error { e.netClosed.Store(true); return nil }), nil
				}}
			},
			setup: func(e *fakeEnv) { e.rt.exits = []int{0} },
			state: Completed, exit: 0,
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				cs := e.rt.createdSpecs()
				if len(cs) != 2 || !slices.Equal(cs[0].Entrypoint, []string{holdTarget}) || cs[0].Name != "aixblock-"+j.ID+"-net" || cs[1].NetworkOf != "c1" {
					t.Fatalf("containers %+v", cs)
				}
				if ns, _ := e.joinedNS.Load().(string); !strings.HasPrefix(ns, "/proc/self/fd/") || !strings.Contains(ns, "fake-netns-c1-") {
					t.Errorf("joined %q; want the holder c1's namespace by a descriptor", ns)
				}
				if !e.netClosed.Load() || !e.rt.called("Remove", "c1") {
					t.Errorf("network closed %v, calls %q", e.netClosed.Load(), e.rt.callList())
				}
			},
		},
		{
			name: "a job network that cannot be joined fails the job",
			opts: func(e *fakeEnv) SubmitOptions {
				return SubmitOptions{JoinNetwork: func(context.Context, string) (io.Closer, error) { return nil, errBoom }}
			},
			state: Failed, reason: "boom", exit: noExit,
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if len(e.rt.createdSpecs()) != 1 || !e.rt.called("Remove", "c1") {
					t.Errorf("calls %q", e.rt.callList())
				}
			},
		},
		{
			name: "a job network whose holder cannot be made fails the job",
			opts: func(e *fakeEnv) SubmitOptions {
				return SubmitOptions{JoinNetwork: func(context.Context, string) (io.Closer, error) { return nil, nil }}
			},
			setup: func(e *fakeEnv) { e.rt.fail("Create", errBoom) },
			state: Failed, reason: "job network: holder container: boom", exit: noExit,
		},
	}
}

// serviceCases: services: restarts and readiness.
func serviceCases() []stateCase {
	return []stateCase{
		{
			name:  "a service is restarted after a crash, its logs kept whole",
			spec:  service,
			setup: func(e *fakeEnv) { e.rt.exits = []int{1, 0} },
			state: Completed, exit: 0, history: "pending preparing running running uploading completed",
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if j.Restarts != 1 || j.History[3].Reason != "restarted after exit code 1 (1 of 3)" || e.backoffs.Load() != 1 {
					t.Errorf("restarts %d, backoffs %d, history %+v", j.Restarts, e.backoffs.Load(), j.History)
				}
				// Rewritten from the engine's lines, not appended to.
				if got := readFile(t, filepath.Join(e.m.cfg.Dir, j.ID, "stdout.log")); got != "run 1\nrun 2\n" {
					t.Errorf("stdout.log %q", got)
				}
			},
		},
		{
			name:  "a service gives up after its restarts",
			spec:  func(s *Spec) { service(s); s.Restart = &Restart{Max: 2} },
			setup: func(e *fakeEnv) { e.rt.exits = []int{1, 1, 1} },
			state: Failed, reason: "exited with code 1, after 2 restarts", exit: 1, history: "pending preparing running running running failed",
		},
		{
			name:  "a service that never restarts",
			spec:  func(s *Spec) { service(s); s.Restart = &Restart{Policy: RestartNever} },
			setup: func(e *fakeEnv) { e.rt.exits = []int{1} },
			state: Failed, reason: "exited with code 1", exit: 1, history: "pending preparing running failed",
		},
		{
			name:  "a service whose restart fails",
			spec:  service,
			setup: func(e *fakeEnv) { e.rt.exits = []int{1}; e.rt.fail("Start", nil, errBoom) },
			state: Failed, reason: "exited with code 1; restarting it failed: boom", exit: 1,
		},
		{
			name:  "a service canceled while it waits to restart",
			spec:  service,
			setup: func(e *fakeEnv) { e.rt.exits, e.backoffWait = []int{1}, time.Hour },
			act: func(t *testing.T, e *fakeEnv, id string) {
				p2ptest.WaitFor(t, 10*time.Second, func() bool { return e.backoffs.Load() == 1 }, "the restart's backoff")
				e.m.Cancel(id)
			},
			state: Canceled, reason: "canceled by the user", exit: 1, history: "pending preparing running canceled",
		},
		{
			name: "a service is not ready until its check answers",
			spec: func(s *Spec) { service(s); s.Ready = &Ready{TCP: true, Interval: "10ms"} },
			cfg: func(e *fakeEnv, c *Config) {
				c.DialPort = func(ctx context.Context, pid, port int) (net.Conn, error) {
					if !e.dialOK.Load() || port != 8080 {
						return nil, errors.New("connection refused")
					}
					e.dialedPid.Store(int32(pid))
					a, b := net.Pipe()
					b.Close()
					return a, nil
				}
			},
			act: func(t *testing.T, e *fakeEnv, id string) {
				j := await(t, e.m, id, "a failed check", 10*time.Second, func(j *Job) bool { return strings.HasPrefix(j.Progress, "not ready: ") })
				if j.Ready || j.Reason != "not ready until a TCP connect to port 8080 answers" {
					t.Fatalf("before its check passed: ready %v, reason %q", j.Ready, j.Reason)
				}
				e.dialOK.Store(true)
				await(t, e.m, id, "ready", 10*time.Second, func(j *Job) bool { return j.Ready })
				e.m.Cancel(id)
			},
			state: Canceled, reason: "canceled by the user", exit: 143, history: "pending preparing running running canceled",
			check: func(t *testing.T, e *fakeEnv, j *Job) {
				if j.History[3].Reason != "ready: a TCP connect to port 8080 answered" || e.dialedPid.Load() != 1001 || j.Ready {
					t.Errorf("dialed pid %d, ready %v, history %+v", e.dialedPid.Load(), j.Ready, j.History)
				}
			},
		},
	}
}

func checkEnd(t *testing.T, j *Job, state State, reason string, exit int) {
	t.Helper()
	if j.State != state || !strings.Contains(j.Reason, reason) || (reason == "") != (j.Reason == "") {
		t.Errorf("ended %s %q, want %s %q", j.State, j.Reason, state, reason)
	}
	switch {
	case exit == noExit && j.ExitCode != nil:
		t.Errorf("exit code %d, want none", *j.ExitCode)
	case exit != noExit && (j.ExitCode == nil || *j.ExitCode != exit):
		t.Errorf("exit code %v, want %d", j.ExitCode, exit)
	}
	if j.FinishedAt == nil {
		t.Error("no finish time")
	}
}

// A daemon that restarts finds the records its last run left and the
// containers still in the engine, and picks up each job where it was.
func TestReattach(t *testing.T) {
	for _, tc := range slices.Concat(containerCases(), recordCases(), rankCases()) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runReattachCase(t, tc)
		})
	}
}

// runReattachCase leaves tc's record and containers, starts a manager on
// them and checks how the job ended.
func runReattachCase(t *testing.T, tc reattachCase) {
	const id = reattachID
	dir := t.TempDir()
	now := time.Now().UTC()
	j := &Job{ID: id, Spec: fakeSpec(), State: Running, ContainerID: "old", CreatedAt: now, StartedAt: &now,
		History: []Transition{{State: Pending, At: now}, {State: Preparing, At: now}, {State: Running, At: now}}}
	if tc.job != nil {
		tc.job(j)
	}
	if err := os.MkdirAll(filepath.Join(dir, id), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := j.save(filepath.Join(dir, id)); err != nil {
		t.Fatal(err)
	}
	// What the last daemon wrote of the logs; the engine has it all.
	os.WriteFile(filepath.Join(dir, id, "stdout.log"), []byte("stale\n"), 0o600)
	rt := newFakeRuntime()
	if tc.setup != nil {
		tc.setup(rt)
	}
	m := fakeManager(t, dir, rt, &fakeContent{}, tc.cfg)
	if tc.rejoin != nil {
		tc.rejoin(t, m)
	}
	if tc.act != nil {
		tc.act(t, rt)
	}
	got := waitJob(t, m, id, 30*time.Second)
	checkEnd(t, got, tc.state, tc.reason, tc.exit)
	if tc.check != nil {
		tc.check(t, rt, dir)
	}
}

// reattachCase is one run of TestReattach.
type reattachCase struct {
	name  string
	job   func(*Job) // the record as the last daemon left it
	setup func(*fakeRuntime)
	cfg   func(*Config)
	// rejoin acts as the node on the manager, before act.
	rejoin func(t *testing.T, m *Manager)
	act    func(t *testing.T, rt *fakeRuntime)
	state  State
	reason string
	exit   int
	check  func(t *testing.T, rt *fakeRuntime, dir string)
}

// reattachID is the job the last daemon left in each reattach case.
const reattachID = "00000000000000a1"

// containerCases: a running job's container, as the restarted daemon finds it.
func containerCases() []reattachCase {
	return []reattachCase{
		{
			name:  "a running container is followed to its end, its logs rewritten",
			setup: func(rt *fakeRuntime) { rt.add("old", true, 0, "run 1") },
			act: func(t *testing.T, rt *fakeRuntime) {
				p2ptest.WaitFor(t, 10*time.Second, func() bool { return rt.called("Wait", "old") }, "the wait on the old container")
				rt.end("old", 0)
			},
			state: Completed, exit: 0,
			check: func(t *testing.T, rt *fakeRuntime, dir string) {
				if got := readFile(t, filepath.Join(dir, reattachID, "stdout.log")); got != "run 1\n" {
					t.Errorf("stdout.log %q", got)
				}
			},
		},
		{
			name:  "a container that exited meanwhile with 0 completes",
			setup: func(rt *fakeRuntime) { rt.add("old", false, 0) },
			state: Completed, exit: 0,
		},
		{
			name:  "a container that exited meanwhile with 5 fails with its code",
			setup: func(rt *fakeRuntime) { rt.add("old", false, 5) },
			state: Failed, reason: "exited with code 5", exit: 5,
		},
		{
			name:  "a container that vanished fails the job",
			state: Failed, reason: "the container vanished while the daemon was down", exit: noExit,
		},
		{
			name:  "a container whose state is unknown fails the job",
			setup: func(rt *fakeRuntime) { rt.add("old", true, 0); rt.fail("State", errBoom) },
			state: Failed, reason: "container state unknown after a restart: boom", exit: noExit,
			check: func(t *testing.T, rt *fakeRuntime, _ string) {
				if !rt.called("Remove", "old") {
					t.Errorf("calls %q", rt.callList())
				}
			},
		},
	}
}

// recordCases: a record the last daemon left in another state than running.
func recordCases() []reattachCase {
	return []reattachCase{
		{
			name:  "a job caught preparing fails",
			job:   func(j *Job) { j.State, j.ContainerID = Preparing, "" },
			state: Failed, reason: "the daemon restarted while the job was preparing", exit: noExit,
			check: func(t *testing.T, rt *fakeRuntime, _ string) {
				if len(rt.callList()) != 0 {
					t.Errorf("calls %q", rt.callList())
				}
			},
		},
		{
			name:  "a job caught uploading fails, its container removed",
			job:   func(j *Job) { j.State = Uploading },
			setup: func(rt *fakeRuntime) { rt.add("old", false, 0) },
			state: Failed, reason: "the daemon restarted while the job was uploading", exit: noExit,
			check: func(t *testing.T, rt *fakeRuntime, _ string) {
				if !rt.called("Remove", "old") {
					t.Errorf("calls %q", rt.callList())
				}
			},
		},
		{
			name: "the execution timeout counts the time before the restart",
			job: func(j *Job) {
				j.Spec.Timeouts.Execution = "1h"
				started := time.Now().Add(-time.Hour)
				j.StartedAt = &started
			},
			setup: func(rt *fakeRuntime) { rt.add("old", true, 0) },
			state: TimedOut, reason: "ran longer than the execution timeout 1h0m0s", exit: 143,
		},
		{
			name: "a finished job is left as it was",
			job: func(j *Job) {
				zero := 0
				j.State, j.ExitCode, j.ResultCID = Completed, &zero, testCID("result").String()
				j.FinishedAt = &j.CreatedAt
			},
			setup: func(rt *fakeRuntime) { rt.add("old", false, 0) },
			state: Completed, exit: 0,
			check: func(t *testing.T, rt *fakeRuntime, _ string) {
				if len(rt.callList()) != 0 {
					t.Errorf("calls %q", rt.callList())
				}
			},
		},
	}
}

// Submit refuses what the node cannot run before anything is recorded or
// asked of the runtime.
func TestSubmitRefused(t *testing.T) {
	const taken = "00000000000000b2"
	cases := []struct {
		name string
		spec func(*Spec)
		opts SubmitOptions
		want string
	}{
		{"an invalid spec", func(s *Spec) { s.Image = "" }, SubmitOptions{}, "image: required"},
		{"more GPUs than given", func(s *Spec) { s.Resources.GPUs = 2 }, SubmitOptions{GPUs: []string{"GPU-a"}}, "2 requested, 1 free healthy GPUs here"},
		{"several nodes without the market", func(s *Spec) { s.Distributed = &Distributed{Nodes: 2} }, SubmitOptions{}, "need the market"},
		{"a service on the host's network", service, SubmitOptions{HostNetwork: true}, "a service never runs on the host's network"},
		{"a readiness check without a port dialer", func(s *Spec) { service(s); s.Ready = &Ready{TCP: true} }, SubmitOptions{}, "cannot run readiness checks"},
		{"an ID that is not 16 hex digits", nil, SubmitOptions{ID: "ABCDEF0123456789"}, "want 16 lowercase hex digits"},
		{"an ID taken here", nil, SubmitOptions{ID: taken}, "is taken here"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rt := newFakeRuntime()
			rt.exits = []int{0}
			m := fakeManager(t, t.TempDir(), rt, &fakeContent{}, nil)
			first, err := m.Submit(fakeSpec(), SubmitOptions{ID: taken})
			if err != nil {
				t.Fatal(err)
			}
			waitJob(t, m, first.ID, 30*time.Second)
			calls := len(rt.callList())
			s := fakeSpec()
			if tc.spec != nil {
				tc.spec(&s)
			}
			if _, err := m.Submit(s, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("submit: %v, want %q", err, tc.want)
			}
			if n := len(m.List()); n != 1 || len(rt.callList()) != calls {
				t.Fatalf("%d jobs, runtime calls %q", n, rt.callList()[calls:])
			}
		})
	}
}

// Cancel, Fail and Go on jobs that cannot take them.
func TestControlRefused(t *testing.T) {
	rt := newFakeRuntime()
	rt.exits = []int{0}
	m := fakeManager(t, t.TempDir(), rt, &fakeContent{}, nil)
	done, err := m.Submit(fakeSpec(), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitJob(t, m, done.ID, 30*time.Second)
	running, err := m.Submit(fakeSpec(), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, m, running.ID)
	cases := []struct {
		name string
		do   func() error
		want error
	}{
		{"cancel an unknown job", func() error { _, err := m.Cancel("nosuchjob"); return err }, ErrNotFound},
		{"fail an unknown job", func() error { _, err := m.Fail("nosuchjob", "x"); return err }, ErrNotFound},
		{"cancel a finished job", func() error { _, err := m.Cancel(done.ID); return err }, ErrFinished},
		{"fail a finished job", func() error { _, err := m.Fail(done.ID, "x"); return err }, ErrFinished},
		{"go on a job without a gate", func() error { return m.Go(running.ID, nil, "") }, ErrFinished},
	}
	for _, tc := range cases {
		if err := tc.do(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if g, _ := m.Get(running.ID); g.State != Running {
		t.Errorf("the running job is %s after the refusals", g.State)
	}
}

func TestRestartBackoff(t *testing.T) {
	for _, tc := range []struct {
		restarts int
		want     time.Duration
	}{{0, time.Second}, {1, 2 * time.Second}, {4, 16 * time.Second}, {5, 30 * time.Second}, {40, 30 * time.Second}} {
		if got := restartBackoff(tc.restarts); got != tc.want {
			t.Errorf("after %d restarts: %s, want %s", tc.restarts, got, tc.want)
		}
	}
}
