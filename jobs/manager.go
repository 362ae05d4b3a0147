package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aixblock/aixblock/p2p/content"
	"github.com/ipfs/go-cid"
)

// Content is what jobs need of the block service: inputs fetched into a
// directory, outputs added as a pinned DAG. *content.Store is one.
type Content interface {
	GetWith(ctx context.Context, root cid.Cid, out string, opts content.GetOptions) (content.FetchStats, error)
	Add(ctx context.Context, path string, opts content.AddOptions) (cid.Cid, error)
}

// Config configures a Manager.
type Config struct {
	// Dir keeps one directory per job (record, logs, scratch); required.
	Dir     string
	Runtime Runtime
	Content Content
	// Grace between SIGTERM and SIGKILL on cancel and timeout; zero means 10 s.
	Grace time.Duration
	// PrepareTimeout bounds fetching the image and inputs; zero means 30 min.
	PrepareTimeout time.Duration
	// MaxLogBytes per log file before it rotates; zero means 16 MiB.
	MaxLogBytes int64
	// PidsLimit per container; zero means 512.
	PidsLimit int64
	// MaxImageMiB bounds an ipfs:// image tarball; zero means 20 GiB.
	MaxImageMiB int64
	// ImageCacheMiB bounds the images this node pulled or loaded for jobs;
	// the least recently used go first. Zero means 20 GiB.
	ImageCacheMiB int64
	// NoPull keeps images to the local engine and tarballs by CID; by
	// default an image missing locally is pulled from its registry.
	NoPull bool
	// AllowRegistries names the registries (a host, any port; or
	// host:port) that pulls may reach although they resolve to
	// loopback, link-local, private, unspecified, multicast or reserved
	// addresses: an operator's own registry on its LAN, say. Nil allows
	// none: such a pull is refused before the engine is asked. Docker
	// Hub names (no registry host) are pulled as the engine is
	// configured.
	AllowRegistries []string
	// MockGPUs: GPUs are not real, so no device is requested (the UUIDs
	// still reach the job in NVIDIA_VISIBLE_DEVICES).
	MockGPUs bool
	// DialPort connects to 127.0.0.1:port inside the network namespace of
	// process pid (a service container's; overlay.DialPID is one). Nil
	// means services run, but their readiness checks and ports cannot be
	// reached: a service with a readiness check is refused.
	DialPort func(ctx context.Context, pid, port int) (net.Conn, error)
	// RejoinWindow bounds how long a distributed rank that outlived a
	// restart waits for the node to rejoin its job network
	// (RejoinNetwork); zero means 2 minutes.
	RejoinWindow time.Duration
	Logger       *slog.Logger
}

// Manager runs jobs on this node.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	jobs    map[string]*Job
	cancels map[string]context.CancelCauseFunc
	changed map[string]chan struct{} // closed and replaced at every transition
	gates   map[string]chan gateOpen // held jobs: what lets them start
	nets    map[string]io.Closer     // distributed ranks' job networks, closed at the end
	// unjoined: ranks reattached after a restart, waiting for RejoinNetwork.
	unjoined map[string]bool
	waiting  map[string]bool // held jobs prepared and waiting at their gate
	// Elastic ranks (regroup.go): their restarts waiting, how long each
	// waits for one, what their container was made from, and what cuts
	// a run short.
	regroups  map[string]chan Regroup
	holds     map[string]time.Duration
	described map[string]Container
	runStops  map[string]context.CancelCauseFunc
	imgMu     sync.Mutex // images.json
	diskErr   error      // why disk_mib cannot be enforced here, or nil
	wg        sync.WaitGroup
	closed    bool

	// backoff is restartBackoff; tests shorten it.
	backoff func(restarts int) time.Duration
	// readyHead bounds the wait for a readiness check's answer
	// (readyHeadTimeout); tests shorten it.
	readyHead time.Duration
	// pin holds a process by its PID (pinPID); tests fake it.
	pin func(pid int) (procPin, error)
	// lookupIP resolves a registry's host (net.DefaultResolver's
	// LookupNetIP); tests fake it.
	lookupIP func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Errors callers can tell apart.
// failCause ends a job as failed with its reason (a GPU fault, say).
type failCause struct{ reason string }

func (f failCause) Error() string { return f.reason }

var (
	ErrNotFound = errors.New("no such job")
	ErrFinished = errors.New("job already finished")
	errCanceled = errors.New("canceled")
)

// NewManager loads the jobs in cfg.Dir and reattaches to the containers of
// those that were running: a container still running is followed again; one
// that exited meanwhile is finished with its exit code; one that vanished
// fails the job with that reason. Jobs caught preparing or uploading fail,
// saying the daemon restarted.
func NewManager(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.Dir == "" || cfg.Runtime == nil || cfg.Content == nil {
		return nil, errors.New("jobs: Dir, Runtime and Content are required")
	}
	// Bind mounts need absolute paths (a repo given as .testnet/node1 is not).
	abs, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	cfg.Dir = abs
	if cfg.Grace == 0 {
		cfg.Grace = 10 * time.Second
	}
	if cfg.RejoinWindow == 0 {
		cfg.RejoinWindow = 2 * time.Minute
	}
	if cfg.PrepareTimeout == 0 {
		cfg.PrepareTimeout = DefaultPrepare
	}
	if cfg.MaxLogBytes == 0 {
		cfg.MaxLogBytes = 16 << 20
	}
	if cfg.PidsLimit == 0 {
		cfg.PidsLimit = 512
	}
	if cfg.MaxImageMiB == 0 {
		cfg.MaxImageMiB = DefaultMaxImageMiB
	}
	if cfg.ImageCacheMiB == 0 {
		cfg.ImageCacheMiB = 20 << 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "jobs"), jobs: map[string]*Job{}, cancels: map[string]context.CancelCauseFunc{}, changed: map[string]chan struct{}{}, gates: map[string]chan gateOpen{}, nets: map[string]io.Closer{}, unjoined: map[string]bool{}, waiting: map[string]bool{},
		regroups: map[string]chan Regroup{}, holds: map[string]time.Duration{}, described: map[string]Container{}, runStops: map[string]context.CancelCauseFunc{},
		backoff: restartBackoff, readyHead: readyHeadTimeout, pin: pinPID}
	if m.diskErr = diskSupport(); m.diskErr != nil {
		m.log.Warn("jobs that set resources.disk_mib will be refused", "reason", m.diskErr)
	}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		j, err := loadJob(filepath.Join(cfg.Dir, e.Name()))
		if err != nil {
			m.log.Warn("skipping a job directory", "dir", e.Name(), "err", err)
			continue
		}
		m.jobs[j.ID] = j
		if j.State.Terminal() {
			// A daemon that died between the end and the cleanup left
			// the disk mounted.
			if err := removeDisk(m.dir(j)); err != nil {
				m.log.Warn("remove a finished job's disk", "job_id", j.ID, "err", err)
			}
			continue
		}
		m.reattach(ctx, j)
	}
	m.evictImages(ctx)
	return m, nil
}

func (m *Manager) reattach(ctx context.Context, j *Job) {
	if j.NetHolder != "" && j.State == Running {
		// The rank's device stays in its holder's namespace while the
		// holder runs: the node rejoins it (RejoinNetwork).
		if why := m.holdsNetwork(ctx, j); why != "" {
			m.finish(j, Failed, why, nil)
			return
		}
		m.awaitRejoin(j)
	}
	if j.State != Running || j.ContainerID == "" {
		m.finish(j, Failed, fmt.Sprintf("the daemon restarted while the job was %s", j.State), nil)
		return
	}
	st, err := m.cfg.Runtime.State(ctx, j.ContainerID)
	switch {
	case err != nil:
		m.finish(j, Failed, "container state unknown after a restart: "+err.Error(), nil)
	case !st.Exists:
		m.finish(j, Failed, "the container vanished while the daemon was down", nil)
	default:
		// After a reboot the disk is not mounted, but the outputs of a
		// container that exited meanwhile are on it.
		if j.Spec.Resources.DiskMiB > 0 {
			if err := mountDisk(ctx, m.dir(j)); err != nil {
				m.finish(j, Failed, "after a restart: "+err.Error(), nil)
				return
			}
		}
		m.log.Info("reattached to a running job", "job_id", j.ID, "running", st.Running)
		jctx, cancel := context.WithCancelCause(context.Background())
		m.mu.Lock()
		m.cancels[j.ID] = cancel
		m.mu.Unlock()
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer cancel(nil)
			m.followCheckpointed(jctx, j, true)
		}()
	}
}

// SubmitOptions are what the node decides for a job, beyond its spec.
type SubmitOptions struct {
	// GPUs are the UUIDs the job was given.
	GPUs []string
	// Gate holds the job after preparing until Go is called (a rank of a
	// distributed job waits for every rank to be ready).
	Gate bool
	// HostNetwork runs the container on the host's network (a distributed
	// rank of a requester the provider trusts with it).
	HostNetwork bool
	// JoinNetwork, when set, gives a distributed rank its private network:
	// called once the job is prepared, with the path of the network
	// namespace the rank will run in (a holder container's), before the
	// gate opens; what it returns is closed when the job ends.
	JoinNetwork func(ctx context.Context, nsPath string) (io.Closer, error)
	// Env is the daemon's own additions to the container's environment
	// (a job network's interface for the collective libraries), set last.
	Env []string
	// Elastic, when set, makes a distributed rank wait this long for its
	// gang's restart (Regroup) when its container fails, rather than
	// fail.
	Elastic time.Duration
	// ID, when set, is the job's ID (a market job keeps the one its
	// requester gave it): 16 lowercase hex digits, new here.
	ID string
	// KeepOutputs leaves the job's /outputs where it ran, unuploaded, for
	// the caller (a proof-of-GPU challenge reads its product there):
	// OutputsDir finds them and DropOutputs removes them.
	KeepOutputs bool
	// Checkpoint, when set, is the CID fetched into /checkpoints in place
	// of the spec's checkpoint.from (an elastic job's replacement rank
	// starts from its gang's latest).
	Checkpoint string
	// PrepareTimeout, when set, bounds this job's preparation instead of
	// Config.PrepareTimeout (a market job's GPUs are held, unpaid, while
	// it prepares: its provider keeps that short).
	PrepareTimeout time.Duration
}

// Submit validates the spec, records the job as pending and starts it.
func (m *Manager) Submit(spec Spec, opts SubmitOptions) (*Job, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if spec.Distributed != nil && spec.Distributed.Nodes > 1 && !opts.Gate {
		return nil, specErr("distributed.nodes", "%d nodes need the market (job run without --local)", spec.Distributed.Nodes)
	}
	if spec.IsService() && opts.HostNetwork {
		return nil, specErr("kind", "a service never runs on the host's network")
	}
	if _, check := spec.readyCheck(); check && m.cfg.DialPort == nil {
		return nil, specErr("ready", "this node cannot run readiness checks (no port dialer)")
	}
	if err := checkStartCheckpoint(spec, opts.Checkpoint); err != nil {
		return nil, err
	}
	if spec.Resources.GPUs > len(opts.GPUs) {
		return nil, specErr("resources.gpus", "%d requested, %d free healthy GPUs here", spec.Resources.GPUs, len(opts.GPUs))
	}
	id, err := m.newID(opts.ID)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	j := &Job{ID: id, Spec: spec, State: Pending, CreatedAt: now,
		GPUs: opts.GPUs[:spec.Resources.GPUs], History: []Transition{{State: Pending, At: now}},
		KeepOutputs: opts.KeepOutputs}
	// The directory is the job's claim on its ID: made exclusively, so of
	// two submissions of one ID (a requester's two starts at once) one
	// fails here, and the job in the map is checked again below.
	if err := os.MkdirAll(m.cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	if err := os.Mkdir(m.dir(j), 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("job ID %s is taken here", id)
		}
		return nil, fmt.Errorf("jobs: %w", err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errors.New("jobs: shutting down")
	}
	if _, taken := m.jobs[j.ID]; taken {
		m.mu.Unlock()
		return nil, fmt.Errorf("job ID %s is taken here", id)
	}
	if err := j.save(m.dir(j)); err != nil {
		m.mu.Unlock()
		return nil, err
	}
	m.jobs[j.ID] = j
	jctx, cancel := context.WithCancelCause(context.Background())
	m.cancels[j.ID] = cancel
	var gate chan gateOpen
	if opts.Gate {
		gate = make(chan gateOpen, 1)
		m.gates[j.ID] = gate
	}
	if opts.Elastic > 0 {
		m.regroups[j.ID], m.holds[j.ID] = make(chan Regroup, 1), opts.Elastic
	}
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		defer cancel(nil)
		m.run(jctx, j, gate, opts)
	}()
	return m.Get(j.ID)
}

// newID is want, checked, or a random ID when want is empty.
func (m *Manager) newID(want string) (string, error) {
	if want == "" {
		var idb [8]byte
		rand.Read(idb[:])
		return hex.EncodeToString(idb[:]), nil
	}
	if len(want) != 16 || strings.Trim(want, "0123456789abcdef") != "" {
		return "", fmt.Errorf("job ID %q: want 16 lowercase hex digits", want)
	}
	m.mu.Lock()
	_, taken := m.jobs[want]
	m.mu.Unlock()
	if _, err := os.Lstat(filepath.Join(m.cfg.Dir, want)); taken || err == nil {
		return "", fmt.Errorf("job ID %s is taken here", want)
	}
	return want, nil
}

func (m *Manager) dir(j *Job) string { return filepath.Join(m.cfg.Dir, j.ID) }

// set records a transition.
func (m *Manager) set(j *Job, s State, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now().UTC()
	j.State, j.Reason = s, reason
	j.History = append(j.History, Transition{State: s, Reason: reason, At: now})
	if s == Running && j.StartedAt == nil {
		j.StartedAt = &now
	}
	if s.Terminal() {
		j.FinishedAt = &now
	}
	if err := j.save(m.dir(j)); err != nil {
		m.log.Error("persist job state", "job_id", j.ID, "err", err)
	}
	if ch := m.changed[j.ID]; ch != nil {
		close(ch)
	}
	m.changed[j.ID] = make(chan struct{})
	m.log.Info("job", "job_id", j.ID, "state", s, "reason", reason)
}

// finish ends a job. The container and the scratch go first, so that a
// job seen in its end state no longer holds a disk or a mount.
func (m *Manager) finish(j *Job, s State, reason string, exit *int) {
	m.releaseNetwork(j)
	if j.ContainerID != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := m.cfg.Runtime.Remove(ctx, j.ContainerID); err != nil {
			m.log.Warn("remove container", "job_id", j.ID, "err", err)
		}
		cancel()
	}
	// Scratch space goes; the record, the logs and the results stay.
	// RemoveAll does not follow the symlinks a job left in /outputs; a
	// job's own disk goes whole.
	if j.Spec.Resources.DiskMiB == 0 {
		os.RemoveAll(filepath.Join(m.dir(j), "inputs"))
		os.RemoveAll(filepath.Join(m.dir(j), "checkpoints"))
		if !j.KeepOutputs || s != Completed {
			os.RemoveAll(filepath.Join(m.dir(j), "outputs"))
		}
	}
	if err := removeDisk(m.dir(j)); err != nil {
		m.log.Warn("remove the job's disk", "job_id", j.ID, "err", err)
	}
	m.mu.Lock()
	j.ExitCode, j.Ready = exit, false
	// A rank that ended at its gate takes no go (Go would have said it
	// had started it).
	delete(m.gates, j.ID)
	delete(m.regroups, j.ID)
	delete(m.holds, j.ID)
	delete(m.described, j.ID)
	m.mu.Unlock()
	m.set(j, s, reason)
	m.evictImages(context.Background())
}

// run takes a new job from pending to the end. A gated job waits after
// preparing for the environment that Go sends.
func (m *Manager) run(ctx context.Context, j *Job, gate chan gateOpen, opts SubmitOptions) {
	if t, err := time.ParseDuration(j.Spec.Timeouts.Total); err == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	m.set(j, Preparing, "fetching the image and inputs")
	prepare := m.cfg.PrepareTimeout
	if opts.PrepareTimeout > 0 {
		prepare = opts.PrepareTimeout
	}
	pctx, cancel := context.WithTimeout(ctx, prepare)
	c, err := m.prepare(pctx, j, opts.Checkpoint)
	cancel()
	if err != nil {
		var fc failCause
		switch {
		case errors.As(context.Cause(ctx), &fc):
			m.finish(j, Failed, fc.reason, nil)
		case errors.Is(context.Cause(ctx), errCanceled):
			m.finish(j, Canceled, "canceled while preparing", nil)
		case pctx.Err() == context.DeadlineExceeded:
			m.finish(j, TimedOut, fmt.Sprintf("preparing took more than %s: %v", prepare, err), nil)
		default:
			m.finish(j, Failed, err.Error(), nil)
		}
		return
	}
	if opts.JoinNetwork != nil {
		holder, err := m.holdNetwork(ctx, j, c, opts.JoinNetwork)
		if err != nil {
			m.finish(j, Failed, err.Error(), nil)
			return
		}
		c.NetworkOf = holder
	}
	c.Env = setEnv(c.Env, opts.Env...)
	if gate != nil {
		m.progress(j, "prepared; waiting for the other ranks")
		m.set(j, Preparing, "prepared; waiting for the other ranks")
		m.mu.Lock()
		m.waiting[j.ID] = true
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			delete(m.waiting, j.ID)
			m.mu.Unlock()
		}()
		select {
		case open := <-gate:
			c.Env = setEnv(c.Env, open.env...)
			if err := m.startCheckpoint(ctx, j, open.checkpoint); err != nil {
				m.finish(j, Failed, err.Error(), nil)
				return
			}
		case <-ctx.Done():
			var fc failCause
			if errors.As(context.Cause(ctx), &fc) {
				m.finish(j, Failed, fc.reason, nil)
			} else {
				m.finish(j, Canceled, "canceled while waiting for the other ranks", nil)
			}
			return
		}
		c.HostNetwork = opts.HostNetwork
	}
	m.mu.Lock()
	m.described[j.ID] = c
	m.mu.Unlock()
	id, err := m.cfg.Runtime.Create(ctx, c)
	if err != nil {
		m.finish(j, Failed, err.Error(), nil)
		return
	}
	m.mu.Lock()
	j.ContainerID = id
	m.mu.Unlock()
	if err := m.cfg.Runtime.Start(ctx, id); err != nil {
		m.finish(j, Failed, err.Error(), nil)
		return
	}
	m.progress(j, "")
	_, check := j.Spec.readyCheck()
	m.mu.Lock()
	j.Ready = j.Spec.IsService() && !check
	m.mu.Unlock()
	m.set(j, Running, strings.TrimPrefix(m.notReady(j), "; "))
	m.followCheckpointed(ctx, j, false)
}

// prepare makes sure of the image, fetches the inputs and describes the
// container.
func (m *Manager) prepare(ctx context.Context, j *Job, checkpoint string) (Container, error) {
	s := j.Spec
	dir := m.dir(j)
	image, imageID, fetched, err := m.image(ctx, s.Image, dir)
	if err != nil {
		return Container{}, err
	}
	m.noteImage(ctx, image, imageID, fetched)
	c := Container{
		Name: "aixblock-" + j.ID, Image: imageID, Entrypoint: s.Command, Cmd: s.Args,
		CPU: s.Resources.CPU, MemoryMiB: s.Resources.MemoryMiB, PidsLimit: m.cfg.PidsLimit, ShmMiB: 64,
		Labels: map[string]string{"aixblock.job": j.ID},
	}
	if c.CPU == 0 {
		c.CPU = DefaultCPU
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if !m.cfg.MockGPUs {
		c.GPUs = j.GPUs
	}
	keys := make([]string, 0, len(s.Env))
	for k := range s.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var env []string
	for _, k := range keys {
		env = append(env, k+"="+s.Env[k])
	}
	// The daemon's own keys go last and replace any the spec had (it may
	// have none: Validate refuses them, but a spec on disk from an older
	// daemon was validated by older rules).
	c.Env = setEnv(env, "NVIDIA_VISIBLE_DEVICES="+orNone(strings.Join(j.GPUs, ",")), "AIXBLOCK_JOB_ID="+j.ID)
	scratch := m.scratch(j)
	if mib := s.Resources.DiskMiB; mib > 0 {
		if m.diskErr != nil {
			return Container{}, fmt.Errorf("resources.disk_mib %d cannot be enforced on this provider (%v): leave disk_mib out or pick another provider", mib, m.diskErr)
		}
		if err := makeDisk(ctx, dir, mib); err != nil {
			return Container{}, fmt.Errorf("resources.disk_mib %d: making the job's disk: %w", mib, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(scratch, "inputs"), 0o755); err != nil {
		return Container{}, fmt.Errorf("inputs: %w", err)
	}
	for i, in := range s.Inputs {
		root, _ := cid.Decode(in.CID)
		host := filepath.Join(scratch, "inputs", fmt.Sprint(i))
		name := fmt.Sprintf("input %d (%s → %s)", i, in.CID, in.Path)
		progress := func(st content.FetchStats) {
			m.progress(j, fmt.Sprintf("input %d/%d: %.1f MiB", i+1, len(s.Inputs), float64(st.Bytes)/(1<<20)))
		}
		// With a disk, the store refuses an input that would not fit
		// before writing it; the filesystem stops what slips past.
		opts := content.GetOptions{Progress: progress}
		if mib := s.Resources.DiskMiB; mib > 0 {
			opts.MaxBytes, opts.LimitName = int64(mib)<<20, "resources.disk_mib"
		}
		if _, err := m.cfg.Content.GetWith(ctx, root, host, opts); err != nil {
			if mib := s.Resources.DiskMiB; mib > 0 && (errors.Is(err, content.ErrTooBig) || errors.Is(err, syscall.ENOSPC) || diskFull(scratch, false)) {
				return Container{}, errors.New(diskExceeded(mib, fmt.Sprintf("%s does not fit: %v", name, err)))
			}
			return Container{}, fmt.Errorf("%s: %w", name, err)
		}
		if err := checkInput(dir, host); err != nil {
			return Container{}, fmt.Errorf("%s: %w", name, err)
		}
		c.Inputs = append(c.Inputs, Mount{Source: host, Target: in.Path})
	}
	out := filepath.Join(scratch, "outputs")
	if err := os.Mkdir(out, 0o777); err != nil {
		return Container{}, fmt.Errorf("outputs: %w", err)
	}
	// The job runs as nobody; its /outputs must be writable by it. The
	// directory is new and ours, so this follows no link of a job's.
	if err := os.Chmod(out, 0o777); err != nil {
		return Container{}, fmt.Errorf("outputs: %w", err)
	}
	c.Outputs = out
	if cp := s.Checkpoint; cp != nil {
		from := cp.From
		if checkpoint != "" {
			from = checkpoint
		}
		if c.Checkpoints, err = m.prepareCheckpoints(ctx, j, from); err != nil {
			return Container{}, err
		}
	}
	return c, nil
}

// checkInput makes sure a fetched input is what gets mounted: a plain
// file or directory inside the job's directory, never a symlink, which
// Docker would follow on the host and bind whatever it names. Symlinks
// inside a directory stay: the container resolves them in its own mount
// namespace, where a host path names nothing of the host.
func checkInput(jobDir, host string) error {
	st, err := os.Lstat(host)
	if err != nil {
		return err
	}
	if !st.IsDir() && !st.Mode().IsRegular() {
		return fmt.Errorf("is a %s; inputs must be files or directories", fileKind(st.Mode()))
	}
	base, err := filepath.EvalSymlinks(jobDir)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(host)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(real, base+string(filepath.Separator)) {
		return fmt.Errorf("resolves to %s, outside the job's directory", real)
	}
	if !st.IsDir() {
		return nil
	}
	// WalkDir does not follow symlinks; nothing but files, directories
	// and symlinks may be bound in.
	return filepath.WalkDir(host, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if t := d.Type(); t&^(os.ModeDir|os.ModeSymlink) != 0 {
			rel, _ := filepath.Rel(host, p)
			return fmt.Errorf("%s is a %s; inputs hold only files, directories and symlinks", rel, fileKind(t))
		}
		return nil
	})
}

// image makes sure the engine holds the job's image and returns its name
// and the ID to run it by (a tag can move between prepare and start; an
// ID cannot): local, pulled from its registry, or loaded from a tarball
// fetched by CID (ipfs://CID) under ipfsImageTag, never under the
// tarball's own tags.
func (m *Manager) image(ctx context.Context, ref, dir string) (name, id string, fetched bool, err error) {
	if c, ok := strings.CutPrefix(ref, "ipfs://"); ok {
		root, _ := cid.Decode(c)
		tag := ipfsImageTag(root)
		if id := m.loadedImage(ctx, tag); id != "" {
			return tag, id, false, nil
		}
		id, err := m.loadTarball(ctx, root, tag, dir)
		if err != nil {
			return "", "", false, fmt.Errorf("image %s: %w", ref, err)
		}
		return tag, id, true, nil
	}
	id, err = m.cfg.Runtime.ImageID(ctx, ref)
	if err != nil {
		return "", "", false, err
	}
	if id == "" {
		if m.cfg.NoPull {
			return "", "", false, fmt.Errorf("image %s is not in the local engine (docker load it, or give ipfs://CID of its tarball)", ref)
		}
		if err := m.checkPull(ctx, ref); err != nil {
			return "", "", false, err
		}
		if err := m.cfg.Runtime.Pull(ctx, ref); err != nil {
			if ctx.Err() != nil {
				return "", "", false, fmt.Errorf("image %s: pulling it from %s: %w", ref, registryName(ref), context.Cause(ctx))
			}
			// The engine's message quotes what the registry answered (the
			// start of a response body, a refused connection): for the
			// operator, not the requester.
			m.log.Warn("image pull failed", "image", ref, "err", err)
			return "", "", false, fmt.Errorf("image %s is not in the local engine and could not be pulled from %s (not there, no access, or not answering; the provider's log has the engine's message)", ref, registryName(ref))
		}
		fetched = true
		if id, err = m.cfg.Runtime.ImageID(ctx, ref); err == nil && id == "" {
			err = fmt.Errorf("image %s: pulled, but the engine has no image by that name", ref)
		}
		if err != nil {
			return "", "", false, err
		}
	}
	return ref, id, fetched, nil
}

// loadTarball fetches an image tarball, checks it and loads it under tag
// alone, returning the image's ID.
func (m *Manager) loadTarball(ctx context.Context, root cid.Cid, tag, dir string) (string, error) {
	// Beside the job's disk, not on it: disk_mib is for inputs and outputs.
	tarPath := filepath.Join(dir, "image.tar")
	defer os.Remove(tarPath)
	limit := m.cfg.MaxImageMiB << 20
	tooBig := imageTarErr("over the %d MiB limit on image tarballs of this provider", m.cfg.MaxImageMiB)
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	_, err := m.cfg.Content.GetWith(fctx, root, tarPath, content.GetOptions{MaxBytes: limit, LimitName: "the provider's image tarball limit",
		Progress: func(st content.FetchStats) {
			if st.Bytes > limit {
				cancel(tooBig)
			}
		}})
	if errors.Is(context.Cause(fctx), tooBig) || errors.Is(err, content.ErrTooBig) {
		return "", tooBig
	}
	if err != nil {
		return "", err
	}
	// A CID of a symlink would have the engine read whatever host file
	// the link names.
	st, err := os.Lstat(tarPath)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", imageTarErr("the CID is a %s, not a file; give the CID of a docker save tarball", fileKind(st.Mode()))
	}
	if st.Size() > limit {
		return "", tooBig
	}
	open := func() (io.ReadCloser, error) { return os.Open(tarPath) }
	a, err := readImageArchive(open, st.Size())
	if err != nil {
		return "", err
	}
	f, err := os.Open(tarPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	wrote := make(chan error, 1)
	go func() {
		err := writeImageArchive(pw, f, a, tag)
		pw.CloseWithError(err)
		wrote <- err
	}()
	err = m.cfg.Runtime.LoadImage(ctx, pr)
	pr.CloseWithError(errors.New("the engine stopped reading"))
	if werr := <-wrote; err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		return "", err
	}
	id, err := m.cfg.Runtime.ImageID(ctx, tag)
	if err == nil && id == "" {
		err = fmt.Errorf("the engine loaded the tarball but holds no %s", tag)
	}
	return id, err
}

// fileKind names a file mode for an error.
func fileKind(mode os.FileMode) string {
	switch {
	case mode&os.ModeSymlink != 0:
		return "symlink"
	case mode.IsDir():
		return "directory"
	case mode.IsRegular():
		return "file"
	case mode&os.ModeNamedPipe != 0:
		return "named pipe"
	case mode&os.ModeSocket != 0:
		return "socket"
	case mode&os.ModeDevice != 0:
		return "device"
	}
	return "special file"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// follow streams the container's logs to files, waits for its exit (or the
// execution timeout, or a cancel), restarts a service that failed while
// its policy allows, and finishes the job.
func (m *Manager) follow(ctx context.Context, j *Job, reattached bool) {
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if limit, ok := j.Spec.ExecutionLimit(); ok {
		if j.StartedAt != nil {
			limit -= time.Since(*j.StartedAt)
		}
		wctx, cancel = context.WithTimeout(ctx, max(limit, time.Second))
	}
	defer cancel()
	for {
		rctx, stopRun := m.runContext(wctx, j)
		code, state, reason, err := m.followOnce(ctx, rctx, j, reattached)
		regrouped := errors.Is(context.Cause(rctx), errRegroup) && ctx.Err() == nil && wctx.Err() == nil
		stopRun()
		if err != nil {
			m.finish(j, Failed, err.Error(), nil)
			return
		}
		if m.elastic(j) && (regrouped || (state == "" && code != 0)) {
			ok, why, because := m.awaitRegroup(ctx, wctx, j, code)
			if ok {
				reattached = false
				continue
			}
			if why != "" {
				state, reason = why, because
			}
		}
		if state == "" && code != 0 && j.Restarts < j.Spec.MaxRestartCount() {
			if err := m.restart(wctx, j, code); err == nil {
				// The engine keeps every run's lines: rewrite the files
				// from it, as after a daemon restart.
				reattached = true
				continue
			} else if state, reason = m.cutShort(ctx, wctx, j); state == "" {
				state, reason = Failed, fmt.Sprintf("exited with code %d; restarting it failed: %v", code, err)
			}
		}
		m.ended(j, code, state, reason)
		return
	}
}

// followOnce follows one run of the container: logs, readiness, exit. A
// state is returned when the run was cut short (cancel, timeout, failure
// cause), after the container was stopped.
func (m *Manager) followOnce(ctx, wctx context.Context, j *Job, reattached bool) (code int, state State, reason string, err error) {
	dir := m.dir(j)
	// On a reattach the engine still has every line; rewrite the files
	// from it rather than append duplicates.
	stdout, err1 := openRotating(filepath.Join(dir, "stdout.log"), m.cfg.MaxLogBytes, reattached)
	stderr, err2 := openRotating(filepath.Join(dir, "stderr.log"), m.cfg.MaxLogBytes, reattached)
	both, err3 := openRotating(m.outputLog(j), m.cfg.MaxLogBytes, reattached)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, "", "", err
	}
	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		lctx, cancel := context.WithTimeout(context.Background(), 7*24*time.Hour)
		defer cancel()
		if err := m.cfg.Runtime.Logs(lctx, j.ContainerID, io.MultiWriter(stdout, both), io.MultiWriter(stderr, both)); err != nil {
			m.log.Warn("job logs", "job_id", j.ID, "err", err)
		}
	}()
	// The readiness check ends with the run, before anything records
	// the run's end, so a late "ready" cannot follow it.
	rctx, rcancel := context.WithCancel(wctx)
	readyDone := make(chan struct{})
	go func() {
		defer close(readyDone)
		m.checkReady(rctx, j)
	}()
	code, werr := m.cfg.Runtime.Wait(wctx, j.ContainerID)
	rcancel()
	<-readyDone
	if state, reason = m.cutShort(ctx, wctx, j); state == "" && werr != nil {
		state, reason = Failed, werr.Error()
	}
	if state != "" {
		grace := m.cfg.Grace
		if errors.Is(context.Cause(wctx), errRegroup) {
			// What the rank trains from here on is thrown away: its gang
			// restarts from the checkpoint already chosen.
			grace = 0
		}
		sctx, scancel := context.WithTimeout(context.Background(), grace+30*time.Second)
		if serr := m.cfg.Runtime.Stop(sctx, j.ContainerID, grace); serr != nil {
			m.log.Warn("stop container", "job_id", j.ID, "err", serr)
		}
		if st, err := m.cfg.Runtime.State(sctx, j.ContainerID); err == nil && st.Exists && !st.Running {
			code = st.ExitCode
		}
		scancel()
	}
	<-logsDone
	stdout.Close()
	stderr.Close()
	both.Close()
	return code, state, reason, nil
}

// cutShort says why the run must end when ctx or wctx has ended, else "".
func (m *Manager) cutShort(ctx, wctx context.Context, j *Job) (State, string) {
	var fc failCause
	switch {
	case errors.As(context.Cause(ctx), &fc):
		return Failed, fc.reason
	case errors.Is(context.Cause(ctx), errCanceled):
		return Canceled, "canceled by the user"
	case ctx.Err() == context.DeadlineExceeded:
		return TimedOut, fmt.Sprintf("took longer than the total timeout %s", j.Spec.Timeouts.Total)
	case wctx.Err() == context.DeadlineExceeded:
		return TimedOut, fmt.Sprintf("ran longer than the execution timeout %s", j.Spec.ExecutionTimeout())
	}
	return "", ""
}

// restartBackoff is the wait before a service's container starts again
// after it restarted n times: 1 s, doubling, at most 30 s.
func restartBackoff(n int) time.Duration { return min(time.Second<<min(n, 5), 30*time.Second) }

// restart starts a service's exited container again after a backoff,
// recording why.
func (m *Manager) restart(ctx context.Context, j *Job, code int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(m.backoff(j.Restarts)):
	}
	if err := m.cfg.Runtime.Start(ctx, j.ContainerID); err != nil {
		return err
	}
	m.mu.Lock()
	j.Restarts++
	_, check := j.Spec.readyCheck()
	j.Ready = !check
	n := j.Restarts
	m.mu.Unlock()
	m.set(j, Running, fmt.Sprintf("restarted after exit code %d (%d of %d)%s", code, n, j.Spec.MaxRestartCount(), m.notReady(j)))
	return nil
}

// ended records the end of the job's last run: failed on a non-zero exit
// or a full disk, else its outputs are uploaded and it completed.
func (m *Manager) ended(j *Job, code int, state State, reason string) {
	exit := code
	if state != "" {
		m.finish(j, state, reason, &exit)
		return
	}
	if j.Spec.Checkpoint != nil {
		// What the job wrote since the last tick: its last word.
		if err := m.checkpoint(context.Background(), j); err != nil {
			m.log.Warn("last checkpoint not added", "job_id", j.ID, "err", err)
		}
	}
	// A job that filled its disk failed, whatever its exit code: its
	// outputs are cut short.
	if mib := j.Spec.Resources.DiskMiB; mib > 0 && diskFull(m.scratch(j), code == 0) {
		m.finish(j, Failed, diskExceeded(mib, fmt.Sprintf("/outputs and the inputs filled the job's %d MiB disk (exited with code %d)", mib, code)), &exit)
		return
	}
	if code != 0 {
		reason := fmt.Sprintf("exited with code %d", code)
		if st, err := m.cfg.Runtime.State(context.Background(), j.ContainerID); err == nil && st.OOM {
			reason += " (out of memory: raise resources.memory_mib)"
		}
		if j.Restarts > 0 {
			reason += fmt.Sprintf(", after %d restarts", j.Restarts)
		}
		m.finish(j, Failed, reason, &exit)
		return
	}
	if j.KeepOutputs {
		m.finish(j, Completed, "", &exit)
		return
	}
	m.set(j, Uploading, "adding /outputs to the block store")
	outputs := filepath.Join(m.scratch(j), "outputs")
	if tamperOutputs {
		os.WriteFile(filepath.Join(outputs, "tampered"), []byte("not what the job wrote\n"), 0o644)
	}
	// Add stores a symlink the job made as a symlink and never reads
	// what it names on the host.
	root, err := m.cfg.Content.Add(context.Background(), outputs, content.AddOptions{Pin: true, Result: true})
	if err != nil {
		// The reason goes to the requester: name the path as the job
		// knows it, not where this host keeps it.
		m.finish(j, Failed, "upload outputs: "+strings.ReplaceAll(err.Error(), outputs, "/outputs"), &exit)
		return
	}
	m.mu.Lock()
	j.ResultCID = root.String()
	m.mu.Unlock()
	m.finish(j, Completed, "", &exit)
}

// tamperOutputs, set only in a build with the aixblock_hostile tag (tests
// build one), makes this provider return results its jobs did not write.
var tamperOutputs = false

// OutputsDir is where a completed job submitted with KeepOutputs left
// its /outputs.
func (m *Manager) OutputsDir(id string) (string, error) {
	j, err := m.Get(id)
	if err != nil {
		return "", err
	}
	if !j.KeepOutputs || j.State != Completed || j.Spec.Resources.DiskMiB != 0 {
		return "", fmt.Errorf("job %s kept no outputs (%s)", id, j.State)
	}
	return filepath.Join(m.dir(j), "outputs"), nil
}

// DropOutputs removes what a job submitted with KeepOutputs left.
func (m *Manager) DropOutputs(id string) error {
	dir, err := m.OutputsDir(id)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("drop the outputs of job %s: %w", id, err)
	}
	return nil
}

// Cancel stops a job: SIGTERM, then SIGKILL after the grace period.
func (m *Manager) Cancel(id string) (*Job, error) { return m.stop(id, errCanceled) }

// Fail stops a job as Cancel does, but ends it failed with reason.
func (m *Manager) Fail(id, reason string) (*Job, error) { return m.stop(id, failCause{reason}) }

func (m *Manager) stop(id string, cause error) (*Job, error) {
	m.mu.Lock()
	j, ok := m.jobs[id]
	cancel := m.cancels[id]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if j.State.Terminal() || cancel == nil {
		return nil, fmt.Errorf("%w: %s is %s", ErrFinished, id, j.State)
	}
	cancel(cause)
	return m.Get(id)
}

// gateOpen is what lets a gated job start: the env its gang gave it and,
// for an elastic rank, a newer checkpoint than it was prepared with.
type gateOpen struct {
	env        []string
	checkpoint string
}

// Go lets a gated job start, with env added to its container's. The env
// comes from another daemon: anything ValidateGoEnv refuses fails the job.
// A rank that starts from checkpoint (a CID; none when empty) has it in
// place of the one it was prepared with: a replacement whose gang
// trained on while it prepared.
func (m *Manager) Go(id string, env []string, checkpoint string) error {
	if err := ValidateGoEnv(env); err != nil {
		if _, ferr := m.Fail(id, "distributed start refused: "+err.Error()); ferr != nil {
			return errors.Join(err, ferr)
		}
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	gate, j := m.gates[id], m.jobs[id]
	if gate == nil || j == nil {
		return fmt.Errorf("%w: %s is not waiting to start", ErrFinished, id)
	}
	if err := checkStartCheckpoint(j.Spec, checkpoint); err != nil {
		return fmt.Errorf("start of %s: %w", id, err)
	}
	delete(m.gates, id)
	gate <- gateOpen{env: env, checkpoint: checkpoint}
	return nil
}

// Prepared reports whether a gated job is ready to start.
func (m *Manager) Prepared(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waiting[id] && m.gates[id] != nil
}

// Gated reports whether job id waits for Go (a rank of a gang that has
// not started yet).
func (m *Manager) Gated(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gates[id] != nil
}

// progress notes what preparing is doing (not persisted: it is live state).
func (m *Manager) progress(j *Job, what string) {
	m.mu.Lock()
	j.Progress = what
	m.mu.Unlock()
}

// watch is a channel closed at the job's next transition.
func (m *Manager) watch(id string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := m.changed[id]
	if ch == nil {
		ch = make(chan struct{})
		m.changed[id] = ch
	}
	return ch
}

// AwaitChange waits until job id is no longer in state seen, or ctx
// ends, and returns its record then (a requester's status request that a
// provider holds until a start or an end).
func (m *Manager) AwaitChange(ctx context.Context, id string, seen State) (*Job, error) {
	for {
		changed := m.watch(id)
		j, err := m.Get(id)
		if err != nil || j.State != seen {
			return j, err
		}
		select {
		case <-ctx.Done():
			return j, nil
		case <-changed:
		}
	}
}

// Get is a copy of the job's record.
func (m *Manager) Get(id string) (*Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	c := *j
	c.History = append([]Transition{}, j.History...)
	return &c, nil
}

// List is every job, newest first.
func (m *Manager) List() []*Job {
	m.mu.Lock()
	ids := make([]string, 0, len(m.jobs))
	for id := range m.jobs {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	var out []*Job
	for _, id := range ids {
		if j, err := m.Get(id); err == nil {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].CreatedAt.After(out[b].CreatedAt) })
	return out
}

// Logs copies the job's combined output to w; with follow it keeps going
// until the job ends or ctx does.
func (m *Manager) Logs(ctx context.Context, id string, follow bool, w io.Writer) error {
	j, err := m.Get(id)
	if err != nil {
		return err
	}
	path := m.outputLog(j)
	f, err := os.Open(path)
	for os.IsNotExist(err) {
		// Not started yet. A job that ended meanwhile wrote its file
		// first, so one more look finds it.
		done := false
		if g, _ := m.Get(id); g == nil || g.State.Terminal() {
			done = true
		}
		if !follow || done {
			if f, err = os.Open(path); os.IsNotExist(err) {
				return nil
			}
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
		f, err = os.Open(path)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	flusher, _ := w.(interface{ Flush() })
	for {
		n, err := io.Copy(w, f)
		if err != nil {
			return err
		}
		if n > 0 && flusher != nil {
			flusher.Flush()
		}
		if !follow {
			return nil
		}
		changed := m.watch(id)
		j, _ := m.Get(id)
		if j != nil && j.State.Terminal() {
			_, err := io.Copy(w, f) // the last lines
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops following jobs without stopping their containers: a daemon
// that restarts reattaches to them.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
}
