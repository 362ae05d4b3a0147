package jobs

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs/jobstest"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/content"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/moby/moby/client"
)

// dockerOrSkip is the engine as a Runtime, holding jobstest.Image; it
// skips (or fails) as jobstest.Docker does.
func dockerOrSkip(t testing.TB) *Docker {
	t.Helper()
	return &Docker{jobstest.Docker(t)}
}

// newTestManager is a manager on the real engine with a real block store.
func newTestManager(t *testing.T, rt Runtime, dir string) (*Manager, *content.Store) {
	t.Helper()
	ctx := context.Background()
	pn, err := p2p.New(ctx, p2p.Config{Network: "jobstest", NoNAT: true, DHTRefresh: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pn.Close() })
	store, err := content.New(ctx, pn.Host, content.Config{Datastore: dssync.MutexWrap(ds.NewMapDatastore())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	m, err := NewManager(ctx, Config{Dir: dir, Runtime: rt, Content: store, Grace: time.Second, MockGPUs: true})
	if err != nil {
		t.Fatal(err)
	}
	return m, store
}

func mustSubmit(t *testing.T, m *Manager, s Spec) *Job {
	t.Helper()
	j, err := m.Submit(s, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// waitJob waits for job id to end.
func waitJob(t testing.TB, m *Manager, id string, limit time.Duration) *Job {
	t.Helper()
	return await(t, m, id, "its end", limit, func(j *Job) bool { return j.State.Terminal() })
}

// await waits until ok holds of job id, failing t as soon as the job
// ends without it, or at limit, with what the job was doing.
func await(t testing.TB, m *Manager, id, what string, limit time.Duration, ok func(*Job) bool) *Job {
	t.Helper()
	last := &seenJob{}
	p2ptest.WaitFor(t, limit, func() bool {
		j, err := m.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		last.j = j
		return ok(j) || j.State.Terminal()
	}, "job %s: waited for %s; it is %s", id, what, last)
	if !ok(last.j) {
		t.Fatalf("job %s: waited for %s; it ended %s", id, what, last)
	}
	return last.j
}

// seenJob prints the job a wait saw last, when the wait gives up.
type seenJob struct{ j *Job }

func (s *seenJob) String() string {
	return fmt.Sprintf("%s (%s), progress %q", s.j.State, s.j.Reason, s.j.Progress)
}

// waitRunning waits for job id to be running.
func waitRunning(t testing.TB, m *Manager, id string) *Job {
	t.Helper()
	return await(t, m, id, "running", time.Minute, func(j *Job) bool { return j.State == Running })
}

func logsOf(t testing.TB, m *Manager, id string) string {
	var b bytes.Buffer
	if err := m.Logs(context.Background(), id, false, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func job(args ...string) Spec {
	return Spec{Name: "t", Image: jobstest.Image, Args: args, Resources: Resources{MemoryMiB: 64, CPU: 0.5}}
}

func TestDockerJobs(t *testing.T) {
	d := dockerOrSkip(t)
	m, store := newTestManager(t, d, t.TempDir())
	e := &dockerEnv{d: d, m: m, store: store}
	for _, c := range []struct {
		name string
		test func(*dockerEnv, *testing.T)
	}{
		{"prints and exits 0", (*dockerEnv).printsAndExits},
		{"pause holds a job past its end; resume lets it finish", (*dockerEnv).pauseResume},
		{"exit 3 fails with the code", (*dockerEnv).exitCode},
		{"inputs are readable, not writable; outputs come back", (*dockerEnv).inputsOutputs},
		{"execution timeout kills", (*dockerEnv).executionTimeout},
		{"cancel", (*dockerEnv).cancel},
		{"mock GPUs are named, not requested", (*dockerEnv).mockGPUs},
		{"sandbox", (*dockerEnv).sandbox},
	} {
		t.Run(c.name, func(t *testing.T) { c.test(e, t) })
	}
}

// dockerEnv is the manager on the real engine that TestDockerJobs's
// subtests share, one after the other.
type dockerEnv struct {
	d     *Docker
	m     *Manager
	store *content.Store
}

// run submits s and waits for its end.
func (e *dockerEnv) run(t *testing.T, s Spec, opts SubmitOptions) *Job {
	t.Helper()
	j, err := e.m.Submit(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	return waitJob(t, e.m, j.ID, time.Minute)
}

func (e *dockerEnv) printsAndExits(t *testing.T) {
	j := e.run(t, job("echo", "hello", "world"), SubmitOptions{})
	if j.State != Completed || j.ExitCode == nil || *j.ExitCode != 0 || j.ResultCID == "" {
		t.Fatalf("job %+v", j)
	}
	if l := logsOf(t, e.m, j.ID); !strings.Contains(l, "hello") || !strings.Contains(l, "world") || !strings.Contains(l, "to stderr") {
		t.Fatalf("logs %q", l)
	}
	if b, _ := os.ReadFile(filepath.Join(e.m.dir(j), "stdout.log")); string(b) != "hello\nworld\n" {
		t.Fatalf("stdout.log %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(e.m.dir(j), "stderr.log")); string(b) != "to stderr\n" {
		t.Fatalf("stderr.log %q", b)
	}
	var states []State
	for _, h := range j.History {
		states = append(states, h.State)
	}
	if got := fmtStates(states); got != "pending preparing running uploading completed" {
		t.Fatalf("states %s", got)
	}
}

func (e *dockerEnv) pauseResume(t *testing.T) {
	ctx := context.Background()
	j, err := e.m.Submit(job("sleep", "1s"), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitFor(t, time.Minute, func() bool {
		g, _ := e.m.Get(j.ID)
		return g.State == Running && g.ContainerID != ""
	}, "job %s never ran", j.ID)
	if _, err := e.m.Pause(ctx, j.ID, "the requester's vouchers stopped"); err != nil {
		t.Fatal(err)
	}
	g, _ := e.m.Get(j.ID)
	if st, err := e.d.State(ctx, g.ContainerID); err != nil || !st.Paused {
		t.Fatalf("the engine says the paused job's container is %+v (%v)", st, err)
	}
	// Frozen, the 1 s sleep cannot end: the job is still running,
	// paused, well after it would have.
	pausedAt := time.Now()
	p2ptest.WaitFor(t, time.Minute, func() bool { return time.Since(pausedAt) > 3*time.Second }, "")
	if g, _ := e.m.Get(j.ID); g.State != Running || g.PausedAt == nil || !strings.Contains(g.Reason, "paused") {
		t.Fatalf("a paused 1 s job, 3 s later: %s (%s), paused at %v", g.State, g.Reason, g.PausedAt)
	}
	if _, err := e.m.Resume(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	g = waitJob(t, e.m, j.ID, time.Minute)
	if g.State != Completed || g.PausedAt != nil || g.Paused(time.Now()) < 3*time.Second {
		t.Fatalf("after resume: %s (%s), paused %s", g.State, g.Reason, g.Paused(time.Now()))
	}
}

func (e *dockerEnv) exitCode(t *testing.T) {
	j := e.run(t, job("exit", "3"), SubmitOptions{})
	if j.State != Failed || j.ExitCode == nil || *j.ExitCode != 3 || !strings.Contains(j.Reason, "code 3") {
		t.Fatalf("job %+v", j)
	}
}

func (e *dockerEnv) inputsOutputs(t *testing.T) {
	ctx := context.Background()
	in := filepath.Join(t.TempDir(), "in.txt")
	os.WriteFile(in, []byte("input bytes"), 0o644)
	root, err := e.store.Add(ctx, in, content.AddOptions{Pin: true})
	if err != nil {
		t.Fatal(err)
	}
	s := job("read", "/inputs/data")
	s.Inputs = []Input{{CID: root.String(), Path: "/inputs/data"}}
	j := e.run(t, s, SubmitOptions{})
	l := logsOf(t, e.m, j.ID)
	if j.State != Completed || !strings.Contains(l, "content: input bytes") || !strings.Contains(l, "input write refused") {
		t.Fatalf("job %s %s, logs %q", j.State, j.Reason, l)
	}
	j = e.run(t, job("write", "/outputs/result.txt", "the result"), SubmitOptions{})
	if j.State != Completed {
		t.Fatalf("job %+v", j)
	}
	out := filepath.Join(t.TempDir(), "out")
	rc, _ := cidDecode(j.ResultCID)
	if _, err := e.store.Get(ctx, rc, out, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "result.txt")); string(b) != "the result" {
		t.Fatalf("result file %q", b)
	}
}

func (e *dockerEnv) executionTimeout(t *testing.T) {
	s := job("sleep", "60s")
	s.Timeouts.Execution = "2s"
	j := e.run(t, s, SubmitOptions{})
	if j.State != TimedOut {
		t.Fatalf("job %+v", j)
	}
}

func (e *dockerEnv) cancel(t *testing.T) {
	j, err := e.m.Submit(job("sleep", "60s"), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, e.m, j.ID)
	if _, err := e.m.Cancel(j.ID); err != nil {
		t.Fatal(err)
	}
	if g := waitJob(t, e.m, j.ID, 30*time.Second); g.State != Canceled {
		t.Fatalf("job %+v", g)
	}
	if _, err := e.m.Cancel(j.ID); err == nil {
		t.Fatal("canceling a finished job succeeded")
	}
}

func (e *dockerEnv) mockGPUs(t *testing.T) {
	s := job("env")
	s.Resources.GPUs = 2
	j := e.run(t, s, SubmitOptions{GPUs: []string{"GPU-aaa", "GPU-bbb", "GPU-ccc"}})
	if l := logsOf(t, e.m, j.ID); j.State != Completed || !strings.Contains(l, "NVIDIA_VISIBLE_DEVICES=GPU-aaa,GPU-bbb") {
		t.Fatalf("job %s, logs %q", j.State, l)
	}
}

func (e *dockerEnv) sandbox(t *testing.T) {
	s := job("sandbox")
	s.Resources.MemoryMiB = 256
	j := e.run(t, s, SubmitOptions{})
	l := logsOf(t, e.m, j.ID)
	t.Logf("sandbox report:\n%s", l)
	for _, what := range []string{"mount", "write /", "raw socket", "docker socket", "network", "fork bomb"} {
		if !strings.Contains(l, "blocked "+what) {
			t.Errorf("%s was not blocked", what)
		}
	}
	if strings.Contains(l, "ALLOWED") {
		t.Errorf("something was allowed")
	}
}

func fmtStates(s []State) string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = string(x)
	}
	return strings.Join(out, " ")
}

// stuck is a runtime whose follow never ends: the manager using it stands
// for a daemon that died mid-job.
type stuck struct{ Runtime }

func (stuck) Wait(ctx context.Context, id string) (int, error) { select {} }
func (stuck) Logs(ctx context.Context, id string, _, _ io.Writer) error {
	<-ctx.Done()
	return nil
}

// A daemon that dies mid-job and restarts reattaches to the container,
// and the job completes with its logs whole.
func TestReattachAfterRestart(t *testing.T) {
	d := dockerOrSkip(t)
	dir := t.TempDir()
	first, _ := newTestManager(t, stuck{d}, dir)
	j, err := first.Submit(job("sleep", "2s"), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, first, j.ID)
	second, _ := newTestManager(t, d, dir) // the restarted daemon
	got := waitJob(t, second, j.ID, time.Minute)
	if got.State != Completed {
		t.Fatalf("after reattach: %+v", got)
	}
	if l := logsOf(t, second, j.ID); !strings.Contains(l, "sleeping 2s") || !strings.Contains(l, "woke up") {
		t.Fatalf("logs %q", l)
	}

	// A container that vanished while the daemon was down fails the job.
	third, _ := newTestManager(t, stuck{d}, t.TempDir())
	k, _ := third.Submit(job("sleep", "30s"), SubmitOptions{})
	d.Remove(context.Background(), waitRunning(t, third, k.ID).ContainerID)
	fourth, _ := newTestManager(t, d, third.cfg.Dir)
	if g, _ := fourth.Get(k.ID); g.State != Failed || !strings.Contains(g.Reason, "vanished") {
		t.Fatalf("vanished container: %+v", g)
	}
}

// An image given as ipfs://CID of its tarball is fetched and loaded, and
// runs under the tarball's own tag.
func TestImageByCID(t *testing.T) {
	d := dockerOrSkip(t)
	m, store := newTestManager(t, d, t.TempDir())
	ctx := context.Background()
	const tag = "aixblock-test/jobprog-cid:latest"
	d.Client().ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true})
	t.Cleanup(func() { d.Client().ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true}) })
	saved, err := d.Client().ImageSave(ctx, []string{jobstest.Image})
	if err != nil {
		t.Fatal(err)
	}
	// Retag inside the tarball, so that loading it makes a new image name.
	path := filepath.Join(t.TempDir(), "image.tar")
	f, _ := os.Create(path)
	tr, tw := tar.NewReader(saved), tar.NewWriter(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if h.Name == "manifest.json" || h.Name == "repositories" {
			body = bytes.ReplaceAll(body, []byte("aixblock-test/jobprog"), []byte("aixblock-test/jobprog-cid"))
			h.Size = int64(len(body))
		}
		tw.WriteHeader(h)
		tw.Write(body)
	}
	tw.Close()
	f.Close()
	saved.Close()
	root, err := store.Add(ctx, path, content.AddOptions{Pin: true})
	if err != nil {
		t.Fatal(err)
	}
	s := job("echo", "from a tarball")
	s.Image = "ipfs://" + root.String()
	j, err := m.Submit(s, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, m, j.ID, time.Minute)
	if l := logsOf(t, m, j.ID); j.State != Completed || !strings.Contains(l, "from a tarball") {
		t.Fatalf("job %s %s, logs %q", j.State, j.Reason, l)
	}
	// Loaded under the daemon's CID-derived tag, never the tarball's own.
	loaded := ipfsImageTag(root)
	t.Cleanup(func() { d.Client().ImageRemove(context.Background(), loaded, client.ImageRemoveOptions{Force: true}) })
	if ok, _ := d.HasImage(ctx, loaded); !ok {
		t.Fatalf("the tarball's image was not loaded as %s", loaded)
	}
	if ok, _ := d.HasImage(ctx, tag); ok {
		t.Fatalf("the tarball's own tag %s was written", tag)
	}
	// The same CID again runs the loaded image without fetching it.
	if j = waitJob(t, m, mustSubmit(t, m, s).ID, time.Minute); j.State != Completed {
		t.Fatalf("second run: %s %s", j.State, j.Reason)
	}
	// With a cache of 1 MiB the loaded image goes; the operator's own
	// image (imported by the test, not fetched by a job) stays.
	small, err := NewManager(ctx, Config{Dir: m.cfg.Dir, Runtime: d, Content: store, ImageCacheMiB: 1, MockGPUs: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = small
	if ok, _ := d.HasImage(ctx, loaded); ok {
		t.Fatal("the image cache kept an image over its bound")
	}
	if ok, _ := d.HasImage(ctx, jobstest.Image); !ok {
		t.Fatal("the cache evicted an image it did not fetch")
	}
	// Not a tarball: a clear error.
	junk := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(junk, []byte("not an image"), 0o644)
	jr, _ := store.Add(ctx, junk, content.AddOptions{Pin: true})
	s.Image = "ipfs://" + jr.String()
	j, _ = m.Submit(s, SubmitOptions{})
	if j = waitJob(t, m, j.ID, time.Minute); j.State != Failed || !strings.Contains(j.Reason, "image tarball refused") {
		t.Fatalf("junk image: %s %s", j.State, j.Reason)
	}
}
