package gpu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Config configures a Manager. The zero value uses the real NVML library,
// polls every 10 s and lets a degraded GPU recover after 5 quiet minutes.
type Config struct {
	// Mock names a go-nvml mock server (see MockNames); empty means real NVML.
	Mock string
	// MockSeed makes the mock's UUIDs unique to this node (its peer ID);
	// empty keeps the mock's own stable ones.
	MockSeed string
	// Library, when set, replaces both (tests).
	Library nvml.Interface
	// PollInterval is how often health counters are read; zero means 10 s.
	PollInterval time.Duration
	// QuietWindow is how long a degraded GPU must stay quiet to be healthy
	// again; zero means 5 min.
	QuietWindow time.Duration
	// FatalXIDs and AppXIDs replace DefaultFatalXIDs and DefaultAppXIDs.
	FatalXIDs, AppXIDs []uint64
	// DiskPath is where free disk is measured (the repo); zero means "/".
	DiskPath string
	// Logger is the parent logger; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock health windows are measured by; nil means
	// time.Now (tests step it through a quiet window).
	Now func() time.Time
}

// ErrNotMock refuses fault injection on real GPUs.
var ErrNotMock = errors.New("fault injection works only on mock GPUs (start the daemon with --gpu-mock)")

// tracked is one GPU: what does not change, its handle and its health.
type tracked struct {
	info GPU
	dev  nvml.Device
	h    health
}

// Manager holds the inventory and watches health.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	lib    nvml.Interface
	mock   *Mock
	xids   xidTable
	source string
	reason string
	driver string
	cuda   string
	host   Host // CPU and memory do not change; disk is read per inventory

	mu   sync.Mutex
	gpus []*tracked
	subs map[chan Change]struct{}
}

// New opens NVML (or the mock) and reads the inventory. A machine without
// NVML is not an error: the Manager then reports a CPU-only node and why.
func New(cfg Config) (*Manager, error) {
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Second
	}
	if cfg.QuietWindow == 0 {
		cfg.QuietWindow = 5 * time.Minute
	}
	if cfg.DiskPath == "" {
		cfg.DiskPath = "/"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Manager{
		cfg:  cfg,
		log:  cfg.Logger.With("component", "gpu"),
		xids: newXIDTable(cfg.FatalXIDs, cfg.AppXIDs),
		subs: map[chan Change]struct{}{},
		lib:  cfg.Library,
		host: hostInfo(),
	}
	switch {
	case m.lib != nil:
		m.source = "nvml"
	case cfg.Mock != "":
		var seed []string
		if cfg.MockSeed != "" {
			seed = []string{"/" + cfg.MockSeed}
		}
		mk, err := NewMock(cfg.Mock, seed...)
		if err != nil {
			return nil, err
		}
		m.lib, m.mock, m.source = mk, mk, "mock:"+cfg.Mock
	default:
		m.lib, m.source = nvml.New(), "nvml"
	}
	if r := m.lib.Init(); r != nvml.SUCCESS {
		m.source, m.reason = "none", fmt.Sprintf("NVML unavailable (%v): CPU-only provider", r)
		m.log.Info("no GPUs", "reason", m.reason)
		return m, nil
	}
	if err := m.enumerate(); err != nil {
		m.lib.Shutdown()
		return nil, err
	}
	m.log.Info("GPUs found", "source", m.source, "count", len(m.gpus), "driver", m.driver)
	return m, nil
}

func (m *Manager) enumerate() error {
	if v, r := m.lib.SystemGetDriverVersion(); r == nvml.SUCCESS {
		m.driver = v
	}
	if v, r := m.lib.SystemGetCudaDriverVersion(); r == nvml.SUCCESS {
		m.cuda = fmt.Sprintf("%d.%d", v/1000, v%1000/10)
	}
	n, r := m.lib.DeviceGetCount()
	if r != nvml.SUCCESS {
		return fmt.Errorf("nvml device count: %v", r)
	}
	now := m.cfg.Now()
	for i := 0; i < n; i++ {
		d, r := m.lib.DeviceGetHandleByIndex(i)
		if r != nvml.SUCCESS {
			return fmt.Errorf("nvml device %d: %v", i, r)
		}
		t := &tracked{dev: d, info: staticInfo(i, d, m.mock != nil), h: health{state: Healthy, since: now}}
		// A restart whose checks pass starts healthy; one that fails them
		// does not.
		for _, f := range t.h.poll(d) {
			t.h.apply(f, now, m.cfg.QuietWindow)
		}
		m.gpus = append(m.gpus, t)
	}
	return nil
}

func staticInfo(i int, d nvml.Device, mock bool) GPU {
	g := GPU{Index: i}
	g.UUID, _ = d.GetUUID()
	g.Name, _ = d.GetName()
	if mem, r := d.GetMemoryInfo(); r == nvml.SUCCESS {
		g.MemoryMiB = mem.Total >> 20
	}
	g.Class = ClassKey(g.Name, g.MemoryMiB)
	if mock {
		g.Class = MockClassKey(g.Name, g.MemoryMiB)
	}
	if maj, mnr, r := d.GetCudaComputeCapability(); r == nvml.SUCCESS {
		g.ComputeCapability = fmt.Sprintf("%d.%d", maj, mnr)
	}
	if p, r := d.GetPciInfo(); r == nvml.SUCCESS {
		var b strings.Builder
		for _, c := range p.BusId {
			if c == 0 {
				break
			}
			b.WriteByte(byte(c))
		}
		g.PCIBusID = b.String()
	}
	if mw, r := d.GetPowerManagementLimit(); r == nvml.SUCCESS {
		g.PowerLimitW = float64(mw) / 1000
	}
	if p, r := d.GetPersistenceMode(); r == nvml.SUCCESS {
		g.PersistenceMode = p == nvml.FEATURE_ENABLED
	}
	if cur, _, r := d.GetMigMode(); r == nvml.SUCCESS {
		g.MIGMode = cur == nvml.DEVICE_MIG_ENABLE
	}
	return g
}

// Run watches health until ctx ends: an event loop for XIDs and ECC, and
// a poll for everything else.
func (m *Manager) Run(ctx context.Context) error {
	if m.source == "none" { // CPU-only: nothing to watch
		<-ctx.Done()
		return nil
	}
	defer m.lib.Shutdown()
	var wg sync.WaitGroup
	if set, err := m.eventSet(); err != nil {
		m.log.Warn("no NVML events; relying on polls", "err", err)
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer set.Free()
			m.events(ctx, set)
		}()
	}
	t := time.NewTicker(m.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			m.PollOnce()
		}
	}
}

func (m *Manager) eventSet() (nvml.EventSet, error) {
	set, r := m.lib.EventSetCreate()
	if r != nvml.SUCCESS {
		return nil, fmt.Errorf("event set: %v", r)
	}
	want := uint64(nvml.EventTypeXidCriticalError | nvml.EventTypeSingleBitEccError | nvml.EventTypeDoubleBitEccError)
	for _, t := range m.gpus {
		sup, r := t.dev.GetSupportedEventTypes()
		if r != nvml.SUCCESS {
			continue
		}
		if r := t.dev.RegisterEvents(sup&want, set); r != nvml.SUCCESS {
			m.log.Warn("register events", "uuid", t.info.UUID, "err", r)
		}
	}
	return set, nil
}

func (m *Manager) events(ctx context.Context, set nvml.EventSet) {
	for ctx.Err() == nil {
		e, r := set.Wait(500)
		switch r {
		case nvml.SUCCESS:
			m.handleEvent(e)
		case nvml.ERROR_TIMEOUT:
		default:
			m.log.Warn("event wait", "err", r)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// byUUID finds a GPU; the caller holds m.mu.
func (m *Manager) byUUID(uuid string) *tracked {
	for _, t := range m.gpus {
		if t.info.UUID == uuid {
			return t
		}
	}
	return nil
}

func (m *Manager) handleEvent(e nvml.EventData) {
	uuid, _ := e.Device.GetUUID()
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.byUUID(uuid)
	if t == nil {
		return
	}
	now := m.cfg.Now()
	f, ok := t.h.event(e, m.xids, now)
	if !ok {
		if e.EventType&nvml.EventTypeXidCriticalError != 0 {
			m.log.Info("application XID; GPU stays as it is", "uuid", uuid, "index", t.info.Index, "xid", e.EventData)
		}
		return
	}
	m.transition(t, f, now)
}

// PollOnce reads every GPU's health counters once.
func (m *Manager) PollOnce() {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	for _, t := range m.gpus {
		for _, f := range t.h.poll(t.dev) {
			m.transition(t, f, now)
		}
		from := t.h.state
		if t.h.settle(now, m.cfg.QuietWindow) {
			m.publish(t, from)
		}
	}
}

// transition applies a finding; the caller holds m.mu.
func (m *Manager) transition(t *tracked, f finding, now time.Time) {
	from := t.h.state
	if t.h.apply(f, now, m.cfg.QuietWindow) {
		m.publish(t, from)
	}
}

func (m *Manager) publish(t *tracked, from State) {
	c := Change{Index: t.info.Index, UUID: t.info.UUID, From: from, To: t.h.state, Reason: t.h.reason, At: t.h.since}
	lvl := slog.LevelInfo
	if c.To != Healthy {
		lvl = slog.LevelWarn
	}
	m.log.Log(context.Background(), lvl, "GPU health changed", "index", c.Index, "uuid", c.UUID, "from", c.From, "to", c.To, "reason", c.Reason)
	for ch := range m.subs {
		select {
		case ch <- c:
		default: // a slow subscriber misses a change rather than stall health checks
			m.log.Warn("health subscriber too slow; change dropped", "uuid", c.UUID)
		}
	}
}

// Subscribe returns health changes as they happen, and a cancel function.
func (m *Manager) Subscribe() (<-chan Change, func()) {
	ch := make(chan Change, 64)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.subs, ch)
		m.mu.Unlock()
	}
}

// ResetHealth clears an unhealthy or degraded GPU, then polls it at once so
// that a fault still present shows again.
func (m *Manager) ResetHealth(uuid string) (GPU, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.byUUID(uuid)
	if t == nil {
		return GPU{}, fmt.Errorf("gpu %q: no such UUID on this node (`aixblock gpu list` shows them)", uuid)
	}
	now := m.cfg.Now()
	from := t.h.state
	t.h.state, t.h.reason, t.h.since, t.h.sbe = Healthy, "reset by operator", now, nil
	if from != Healthy {
		m.publish(t, from)
	}
	// The reset acknowledges the error counters so far; the poll then
	// reports only what is still wrong.
	t.h.rebase(t.dev)
	for _, f := range t.h.poll(t.dev) {
		m.transition(t, f, now)
	}
	return m.snapshot(t), nil
}

// Inject applies a fault to a mock GPU; real GPUs refuse.
func (m *Manager) Inject(index int, f Fault) error {
	if m.mock == nil {
		return ErrNotMock
	}
	return m.mock.Inject(index, f)
}

// Inventory is the GPUs with their current free memory and health, and the
// host around them.
func (m *Manager) Inventory() Inventory {
	inv := Inventory{Source: m.source, Reason: m.reason, DriverVersion: m.driver, CUDAVersion: m.cuda, GPUs: []GPU{}}
	m.mu.Lock()
	for _, t := range m.gpus {
		inv.GPUs = append(inv.GPUs, m.snapshot(t))
	}
	m.mu.Unlock()
	inv.Host = m.host
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.cfg.DiskPath, &st); err == nil {
		inv.Host.DiskFreeMiB = st.Bavail * uint64(st.Bsize) >> 20
	}
	return inv
}

func (m *Manager) snapshot(t *tracked) GPU {
	g := t.info
	if mem, r := t.dev.GetMemoryInfo(); r == nvml.SUCCESS {
		g.FreeMemoryMiB = mem.Free >> 20
	}
	g.Health, g.Reason = t.h.state, t.h.reason
	g.Since = t.h.since.UTC().Format(time.RFC3339)
	return g
}

func hostInfo() Host {
	h := Host{CPUCores: runtime.NumCPU()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			var kb uint64
			if _, err := fmt.Sscanf(s.Text(), "MemTotal: %d kB", &kb); err == nil {
				h.MemoryMiB = kb >> 10
				break
			}
		}
		f.Close()
	}
	return h
}
