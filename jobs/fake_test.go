package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aixblock/aixblock/p2p/content"
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// fakeRuntime is the Runtime in memory, standing in for Docker in tests
// of the manager's state machine. A job container's runs exit at once
// with the codes in exits, in order; once those are used up a run lasts
// until the test ends it (end) or the manager stops it. errs makes the
// next calls of a method fail. Every call is recorded, in order.
type fakeRuntime struct {
	mu         sync.Mutex
	images     map[string]string // ref → image ID, what the engine holds
	registry   map[string]string // what Pull brings: ref → image ID ("" brings nothing)
	blockPull  bool              // Pull waits for its context to end
	exits      []int
	oom        bool // runs that exit were killed for memory
	containers map[string]*fakeContainer
	created    []Container     // what Create was asked for, in order
	graces     []time.Duration // what each Stop was given
	// errs holds, per method name, what its next calls return (nil:
	// succeed); a method whose queue is empty succeeds.
	errs  map[string][]error
	calls []string
	n     int
	// hostPids are processes outside every container (the host's), by
	// PID: what a container's PID may name once it is reused.
	hostPids map[int]bool
	// stale holds, per container, what State answers before the truth:
	// an engine's answer from before its process changed.
	stale map[string][]ContainerState
}

type fakeContainer struct {
	spec    Container
	running bool
	exit    int
	pid     int
	runs    int
	ended   chan struct{} // closed when the current run ends
	stdout  []string      // every run's lines, as the engine keeps them
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{images: map[string]string{testFakeImage: "sha256:fake"}, registry: map[string]string{},
		containers: map[string]*fakeContainer{}, errs: map[string][]error{}, hostPids: map[int]bool{}, stale: map[string][]ContainerState{}}
}

const testFakeImage = "example.org/fake/job:1"

// call records a call and pops the method's next error.
func (f *fakeRuntime) call(method, arg string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, strings.TrimSpace(method+" "+arg))
	q := f.errs[method]
	if len(q) == 0 {
		return nil
	}
	f.errs[method] = q[1:]
	return q[0]
}

// fail queues errs for the next calls of method.
func (f *fakeRuntime) fail(method string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[method] = append(f.errs[method], errs...)
}

// called reports whether method was called with arg ("" for any).
func (f *fakeRuntime) called(method, arg string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.ContainsFunc(f.calls, func(c string) bool {
		m, a, _ := strings.Cut(c, " ")
		return m == method && (arg == "" || a == arg)
	})
}

// callList is every call so far, as "Method arg".
func (f *fakeRuntime) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// createdSpecs is what Create was asked for so far.
func (f *fakeRuntime) createdSpecs() []Container {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.created)
}

func (f *fakeRuntime) container(id string) (*fakeContainer, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	return c, ok
}

// add puts a container in the engine, as a daemon that restarts finds
// it; running or exited with exit.
func (f *fakeRuntime) add(id string, running bool, exit int, stdout ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &fakeContainer{spec: Container{Name: id}, running: running, exit: exit, runs: 1, ended: make(chan struct{}), stdout: stdout}
	if running {
		c.pid = 4242
	} else {
		close(c.ended)
	}
	f.containers[id] = c
}

// end ends the container's current run with code.
func (f *fakeRuntime) end(id string, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.containers[id]; c != nil {
		c.stop(code)
	}
}

func (c *fakeContainer) stop(code int) {
	if c.running {
		c.running, c.exit, c.pid = false, code, 0
		close(c.ended)
	}
}

func (f *fakeRuntime) ImageID(ctx context.Context, ref string) (string, error) {
	if err := f.call("ImageID", ref); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.images[ref], nil
}

func (f *fakeRuntime) Pull(ctx context.Context, image string) error {
	if err := f.call("Pull", image); err != nil {
		return err
	}
	f.mu.Lock()
	block := f.blockPull
	id, ok := f.registry[image]
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return fmt.Errorf("fake pull %s: %w", image, ctx.Err())
	}
	if !ok {
		return fmt.Errorf("fake pull %s: not in the registry", image)
	}
	if id != "" {
		f.mu.Lock()
		f.images[image] = id
		f.mu.Unlock()
	}
	return nil
}

func (f *fakeRuntime) ImageSize(ctx context.Context, image string) (int64, error) {
	return 1 << 20, f.call("ImageSize", image)
}

func (f *fakeRuntime) RemoveImage(ctx context.Context, image string) error {
	if err := f.call("RemoveImage", image); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.images, image)
	return nil
}

func (f *fakeRuntime) LoadImage(ctx context.Context, r io.Reader) error {
	if err := f.call("LoadImage", ""); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, r)
	return err
}

func (f *fakeRuntime) Create(ctx context.Context, c Container) (string, error) {
	if err := f.call("Create", c.Name); err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	f.created = append(f.created, c)
	id := fmt.Sprintf("c%d", f.n)
	ended := make(chan struct{})
	close(ended)
	f.containers[id] = &fakeContainer{spec: c, ended: ended}
	return id, nil
}

func (f *fakeRuntime) Start(ctx context.Context, id string) error {
	if err := f.call("Start", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	switch {
	case c == nil:
		return fmt.Errorf("fake start: no such container %s", id)
	case c.running:
		return fmt.Errorf("fake start: %s is running", id)
	}
	c.running, c.ended, c.pid = true, make(chan struct{}), 1000+f.n
	c.runs++
	// The holder of a job network waits forever; the job's container
	// runs as exits says.
	if slices.Equal(c.spec.Entrypoint, []string{holdTarget}) {
		return nil
	}
	c.stdout = append(c.stdout, fmt.Sprintf("run %d", c.runs))
	if len(f.exits) > 0 {
		code := f.exits[0]
		f.exits = f.exits[1:]
		c.stop(code)
	}
	return nil
}

func (f *fakeRuntime) Wait(ctx context.Context, id string) (int, error) {
	if err := f.call("Wait", id); err != nil {
		return -1, err
	}
	c, ok := f.container(id)
	if !ok {
		return -1, fmt.Errorf("fake wait: no such container %s", id)
	}
	f.mu.Lock()
	ended := c.ended
	f.mu.Unlock()
	select {
	case <-ended:
		f.mu.Lock()
		defer f.mu.Unlock()
		return c.exit, nil
	case <-ctx.Done():
		return -1, fmt.Errorf("fake wait: %w", ctx.Err())
	}
}

// Logs writes every run's lines, then follows until the run ends, as the
// engine does.
func (f *fakeRuntime) Logs(ctx context.Context, id string, stdout, stderr io.Writer) error {
	if err := f.call("Logs", id); err != nil {
		return err
	}
	c, ok := f.container(id)
	if !ok {
		return fmt.Errorf("fake logs: no such container %s", id)
	}
	f.mu.Lock()
	lines, ended := slices.Clone(c.stdout), c.ended
	f.mu.Unlock()
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	fmt.Fprintln(stderr, "to stderr")
	select {
	case <-ended:
	case <-ctx.Done():
	}
	return nil
}

// Stop ends the run as SIGTERM would (exit 143).
func (f *fakeRuntime) Stop(ctx context.Context, id string, grace time.Duration) error {
	if err := f.call("Stop", id); err != nil {
		return err
	}
	f.mu.Lock()
	f.graces = append(f.graces, grace)
	f.mu.Unlock()
	f.end(id, 143)
	return nil
}

func (f *fakeRuntime) Pause(ctx context.Context, id string) error   { return f.call("Pause", id) }
func (f *fakeRuntime) Unpause(ctx context.Context, id string) error { return f.call("Unpause", id) }

func (f *fakeRuntime) Remove(ctx context.Context, id string) error {
	if err := f.call("Remove", id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.containers[id]; c != nil {
		c.stop(137)
		delete(f.containers, id)
	}
	return nil
}

func (f *fakeRuntime) State(ctx context.Context, id string) (ContainerState, error) {
	if err := f.call("State", id); err != nil {
		return ContainerState{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if q := f.stale[id]; len(q) > 0 {
		f.stale[id] = q[1:]
		return q[0], nil
	}
	c := f.containers[id]
	if c == nil {
		return ContainerState{}, nil
	}
	return ContainerState{Exists: true, Running: c.running, ExitCode: c.exit, OOM: f.oom && !c.running, Pid: c.pid}, nil
}

// pin is Manager.pin over the fake's processes: a running container's
// first process, or one of hostPids. The process held is that one run of
// that container (or that host process): it is alive while it runs, and
// its namespace is a file named for its owner.
func (f *fakeRuntime) pin(pid int) (procPin, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, c := range f.containers {
		if c.running && c.pid == pid {
			return &fakePin{f: f, pid: pid, owner: id, run: c.runs}, nil
		}
	}
	if f.hostPids[pid] {
		return &fakePin{f: f, pid: pid, owner: "host"}, nil
	}
	return nil, fmt.Errorf("pid %d: %w", pid, syscall.ESRCH)
}

type fakePin struct {
	f     *fakeRuntime
	pid   int
	owner string // a container's ID, or "host"
	run   int
}

func (p *fakePin) Alive() bool {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	if p.owner == "host" {
		return p.f.hostPids[p.pid]
	}
	c := p.f.containers[p.owner]
	return c != nil && c.running && c.pid == p.pid && c.runs == p.run
}

// NetNS is an unlinked file named fake-netns-OWNER-*.
func (p *fakePin) NetNS() (*os.File, error) {
	if !p.Alive() {
		return nil, fmt.Errorf("pid %d: %w", p.pid, syscall.ESRCH)
	}
	f, err := os.CreateTemp("", "fake-netns-"+p.owner+"-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

func (p *fakePin) Close() error { return nil }

// fakeContent is the block service in memory: an input is a file holding
// its CID; outputs are recorded, and their CID is the hash of the path.
type fakeContent struct {
	mu     sync.Mutex
	getErr error
	addErr func(path string) error
	added  []string
	dirs   map[string]bool // roots that are directories
}

func (c *fakeContent) GetWith(ctx context.Context, root cid.Cid, out string, opts content.GetOptions) (content.FetchStats, error) {
	c.mu.Lock()
	err := c.getErr
	c.mu.Unlock()
	if err != nil {
		return content.FetchStats{}, err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return content.FetchStats{}, err
	}
	if c.dirs[root.String()] {
		// A directory root: out holds one file naming it.
		if err := os.Mkdir(out, 0o755); err != nil {
			return content.FetchStats{}, err
		}
		out = filepath.Join(out, "from")
	}
	return content.FetchStats{Bytes: int64(len(root.String()))}, os.WriteFile(out, []byte(root.String()), 0o644)
}

func (c *fakeContent) Add(ctx context.Context, path string, opts content.AddOptions) (cid.Cid, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addErr != nil {
		if err := c.addErr(path); err != nil {
			return cid.Undef, err
		}
	}
	c.added = append(c.added, path)
	return testCID(path), nil
}

func testCID(s string) cid.Cid {
	h, err := mh.Sum([]byte(s), mh.SHA2_256, -1)
	if err != nil {
		panic(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

var errBoom = errors.New("boom")
