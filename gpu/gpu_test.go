package gpu

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

func TestInventoryOfEachMock(t *testing.T) {
	for _, tc := range []struct {
		mock, name, class, cc string
		mib                   uint64
	}{
		{"dgxa100", "Mock NVIDIA A100-SXM4-40GB", "mock-a100-40gb", "8.0", 40960},
		{"dgxh100", "NVIDIA H100 80GB HBM3", "mock-h100-80gb", "9.0", 81920},
		{"dgxh200", "NVIDIA H200 141GB HBM3e", "mock-h200-141gb", "9.0", 144384},
		{"dgxb200", "NVIDIA B200 180GB HBM3e", "mock-b200-180gb", "10.0", 184320},
	} {
		t.Run(tc.mock, func(t *testing.T) {
			m, err := New(Config{Mock: tc.mock, DiskPath: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			inv := m.Inventory()
			if inv.Source != "mock:"+tc.mock || inv.DriverVersion == "" || inv.CUDAVersion == "" {
				t.Fatalf("inventory header: %+v", inv)
			}
			if len(inv.GPUs) != 8 {
				t.Fatalf("%d GPUs, want 8", len(inv.GPUs))
			}
			uuids := map[string]bool{}
			for i, g := range inv.GPUs {
				if g.Index != i || g.Name != tc.name || g.Class != tc.class || g.MemoryMiB != tc.mib ||
					g.ComputeCapability != tc.cc || g.Health != Healthy || g.FreeMemoryMiB != tc.mib ||
					!strings.HasPrefix(g.UUID, "GPU-") || g.PCIBusID == "" || g.PowerLimitW != 700 {
					t.Errorf("gpu %d: %+v", i, g)
				}
				uuids[g.UUID] = true
			}
			if len(uuids) != 8 {
				t.Errorf("UUIDs not unique: %v", uuids)
			}
			if inv.Host.CPUCores == 0 || inv.Host.MemoryMiB == 0 || inv.Host.DiskFreeMiB == 0 {
				t.Errorf("host: %+v", inv.Host)
			}
			// UUIDs survive a restart.
			again, _ := New(Config{Mock: tc.mock})
			if again.Inventory().GPUs[3].UUID != inv.GPUs[3].UUID {
				t.Error("UUIDs change between runs")
			}
		})
	}
}

// running starts a Manager on dgxh100 with the given quiet window and
// clock (nil: the real one).
func running(t *testing.T, quiet time.Duration, clock *testClock) (*Manager, <-chan Change) {
	t.Helper()
	cfg := Config{Mock: "dgxh100", PollInterval: time.Hour, QuietWindow: quiet}
	if clock != nil {
		cfg.Now = clock.Now
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	ch, unsub := m.Subscribe()
	t.Cleanup(unsub)
	return m, ch
}

// testClock is a clock the test moves by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func mustInject(t *testing.T, m *Manager, index int, f Fault) {
	t.Helper()
	if err := m.Inject(index, f); err != nil {
		t.Fatalf("inject %+v into gpu %d: %v", f, index, err)
	}
}

func next(t *testing.T, ch <-chan Change) Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no health change within 5s")
	}
	return Change{}
}

func states(m *Manager) []State {
	var out []State
	for _, g := range m.Inventory().GPUs {
		out = append(out, g.Health)
	}
	return out
}

func TestFatalXIDMakesOnlyThatGPUUnhealthy(t *testing.T) {
	m, ch := running(t, time.Minute, nil)
	if err := m.Inject(3, Fault{Kind: "xid", XID: 79}); err != nil {
		t.Fatal(err)
	}
	c := next(t, ch)
	if c.Index != 3 || c.From != Healthy || c.To != Unhealthy || !strings.Contains(c.Reason, "XID 79") {
		t.Fatalf("change %+v", c)
	}
	for i, s := range states(m) {
		if want := map[bool]State{true: Unhealthy, false: Healthy}[i == 3]; s != want {
			t.Errorf("gpu %d is %s, want %s", i, s, want)
		}
	}
	// Unhealthy sticks through polls and later faults...
	m.PollOnce()
	if got := m.Inventory().GPUs[3]; got.Health != Unhealthy {
		t.Fatalf("after a poll gpu 3 is %s", got.Health)
	}
	// ...until an operator resets it.
	g, err := m.ResetHealth(m.Inventory().GPUs[3].UUID)
	if err != nil || g.Health != Healthy || g.Reason != "reset by operator" {
		t.Fatalf("reset: %+v, %v", g, err)
	}
	if _, err := m.ResetHealth("GPU-nope"); err == nil || !strings.Contains(err.Error(), `"GPU-nope"`) {
		t.Fatalf("reset of unknown UUID: %v", err)
	}
}

func TestApplicationXIDKeepsGPUHealthy(t *testing.T) {
	m, ch := running(t, time.Minute, nil)
	for _, xid := range DefaultAppXIDs {
		if err := m.Inject(2, Fault{Kind: "xid", XID: xid}); err != nil {
			t.Fatal(err)
		}
	}
	// A fatal XID on another GPU afterwards proves the events were read.
	mustInject(t, m, 5, Fault{Kind: "xid", XID: 48})
	if c := next(t, ch); c.Index != 5 {
		t.Fatalf("first change is %+v, want gpu 5", c)
	}
	if s := states(m)[2]; s != Healthy {
		t.Fatalf("gpu 2 is %s after application XIDs", s)
	}
}

func TestThrottlingDegradesThenRecovers(t *testing.T) {
	const quiet = 5 * time.Minute // the default, on a clock the test moves
	clock := newTestClock()
	m, ch := running(t, quiet, clock)
	for _, kind := range []string{"thermal", "power", "temperature"} {
		t.Run(kind, func(t *testing.T) {
			if err := m.Inject(1, Fault{Kind: kind}); err != nil {
				t.Fatal(err)
			}
			m.PollOnce()
			c := next(t, ch)
			if c.Index != 1 || c.To != Degraded || c.Reason == "" {
				t.Fatalf("change %+v", c)
			}
			mustInject(t, m, 1, Fault{Kind: "clear"})
			clock.Add(quiet - time.Millisecond)
			m.PollOnce() // a millisecond inside the window: stays degraded
			if s := states(m)[1]; s != Degraded {
				t.Fatalf("gpu 1 is %s inside the quiet window", s)
			}
			clock.Add(time.Millisecond)
			m.PollOnce()
			if c := next(t, ch); c.To != Healthy || !strings.Contains(c.Reason, "quiet") {
				t.Fatalf("change %+v, want recovery", c)
			}
		})
	}
}

func TestECCAndLostGPU(t *testing.T) {
	m, ch := running(t, time.Minute, nil)
	mustInject(t, m, 0, Fault{Kind: "ecc-double"})
	if c := next(t, ch); c.Index != 0 || c.To != Unhealthy || !strings.Contains(c.Reason, "double-bit") {
		t.Fatalf("change %+v", c)
	}
	for range sbeBurst {
		mustInject(t, m, 6, Fault{Kind: "ecc-single"})
	}
	if c := next(t, ch); c.Index != 6 || c.To != Degraded || !strings.Contains(c.Reason, "correctable") {
		t.Fatalf("change %+v", c)
	}
	mustInject(t, m, 7, Fault{Kind: "lost"})
	m.PollOnce()
	if c := next(t, ch); c.Index != 7 || c.To != Unhealthy || !strings.Contains(c.Reason, "fallen off the bus") {
		t.Fatalf("change %+v", c)
	}
	mustInject(t, m, 4, Fault{Kind: "row-remap-failure"})
	m.PollOnce()
	if c := next(t, ch); c.Index != 4 || c.To != Unhealthy {
		t.Fatalf("change %+v", c)
	}
}

func TestInjectRefusals(t *testing.T) {
	m, _ := running(t, time.Minute, nil)
	for _, tc := range []struct {
		index int
		f     Fault
		want  string
	}{
		{8, Fault{Kind: "xid", XID: 79}, "gpu 8: this mock has GPUs 0 to 7"},
		{0, Fault{Kind: "xid"}, "give the XID number"},
		{0, Fault{Kind: "meltdown"}, `fault "meltdown": want one of`},
	} {
		if err := m.Inject(tc.index, tc.f); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Inject(%d, %+v) = %v, want %q", tc.index, tc.f, err, tc.want)
		}
	}
	if _, err := New(Config{Mock: "dgx-nope"}); err == nil || !strings.Contains(err.Error(), "dgxa100, dgxb200, dgxh100, dgxh200") {
		t.Errorf("unknown mock: %v", err)
	}
}

func TestWithoutNVML(t *testing.T) {
	t.Run("the real library, absent on this machine", func(t *testing.T) {
		m, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		inv := m.Inventory()
		if inv.Source == "nvml" {
			t.Skip("this machine has NVML: the CPU-only path is covered by the fake below")
		}
		if inv.Source != "none" || len(inv.GPUs) != 0 || !strings.Contains(inv.Reason, "CPU-only") {
			t.Fatalf("inventory %+v", inv)
		}
		if err := m.Inject(0, Fault{Kind: "xid", XID: 79}); !errors.Is(err, ErrNotMock) {
			t.Fatalf("inject without mock: %v", err)
		}
	})
	t.Run("a library whose init fails", func(t *testing.T) {
		lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }}
		m, err := New(Config{Library: lib})
		if err != nil {
			t.Fatal(err)
		}
		inv := m.Inventory()
		if inv.Source != "none" || !strings.Contains(inv.Reason, "ERROR_DRIVER_NOT_LOADED") {
			t.Fatalf("inventory %+v", inv)
		}
	})
	t.Run("real GPUs refuse injection", func(t *testing.T) {
		mk, _ := NewMock("dgxa100")
		m, err := New(Config{Library: mk}) // a library passed in counts as real
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Inject(0, Fault{Kind: "xid", XID: 79}); !errors.Is(err, ErrNotMock) {
			t.Fatalf("inject on a real library: %v", err)
		}
	})
}
