package gpu

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRealNVML checks the Manager against a real driver, with nvidia-smi as
// the independent witness. It needs a GPU host, which CI does not have:
// `make gpu-check-real` runs it there with AIXBLOCK_REAL_NVML=1.
func TestRealNVML(t *testing.T) {
	if os.Getenv("AIXBLOCK_REAL_NVML") != "1" {
		t.Skip("needs a GPU host: run with AIXBLOCK_REAL_NVML=1 (make gpu-check-real)")
	}
	out, err := exec.Command("nvidia-smi", "--query-gpu=uuid,name,memory.total,compute_cap,pci.bus_id",
		"--format=csv,noheader,nounits").Output()
	if err != nil {
		t.Fatalf("nvidia-smi: %v", err)
	}
	var want [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ",")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		want = append(want, f)
	}

	m, err := New(Config{PollInterval: 200 * time.Millisecond, DiskPath: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	inv := m.Inventory()
	t.Logf("inventory: source=%s driver=%s cuda=%s reason=%q", inv.Source, inv.DriverVersion, inv.CUDAVersion, inv.Reason)
	if inv.Source != "nvml" || inv.DriverVersion == "" || inv.CUDAVersion == "" {
		t.Fatalf("inventory header %+v", inv)
	}
	if len(inv.GPUs) != len(want) {
		t.Fatalf("%d GPUs, nvidia-smi lists %d", len(inv.GPUs), len(want))
	}
	for i, g := range inv.GPUs {
		w := want[i]
		t.Logf("gpu %d: %+v", i, g)
		mib, _ := strconv.ParseUint(w[2], 10, 64)
		if g.UUID != w[0] || g.Name != w[1] || g.MemoryMiB != mib || g.ComputeCapability != w[3] {
			t.Errorf("gpu %d = %s %q %d MiB cc %s; nvidia-smi says %v", i, g.UUID, g.Name, g.MemoryMiB, g.ComputeCapability, w)
		}
		if !strings.EqualFold(strings.TrimPrefix(g.PCIBusID, "0000"), strings.TrimPrefix(w[4], "0000")) {
			t.Errorf("gpu %d bus id %q, nvidia-smi %q", i, g.PCIBusID, w[4])
		}
		if !strings.HasPrefix(g.Class, "nvidia-") || strings.Contains(g.Class, "unknown") {
			t.Errorf("gpu %d class %q", i, g.Class)
		}
		if g.Health != Healthy {
			t.Errorf("gpu %d starts %s: %s", i, g.Health, g.Reason)
		}
		if g.FreeMemoryMiB == 0 || g.FreeMemoryMiB > g.MemoryMiB {
			t.Errorf("gpu %d free memory %d of %d MiB", i, g.FreeMemoryMiB, g.MemoryMiB)
		}
	}

	// Watch for a while (events and polls on the real driver); a healthy
	// card must not flap. AIXBLOCK_REAL_NVML_WATCH lengthens the watch so a
	// load can run meanwhile.
	watch := 3 * time.Second
	if d, err := time.ParseDuration(os.Getenv("AIXBLOCK_REAL_NVML_WATCH")); err == nil {
		watch = d
	}
	changes, cancelSub := m.Subscribe()
	defer cancelSub()
	ctx, cancel := context.WithTimeout(context.Background(), watch)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	for {
		select {
		case c := <-changes:
			t.Errorf("unexpected health change on a healthy card: %+v", c)
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range m.Inventory().GPUs {
				t.Logf("after %s: gpu %d %s %s", watch, g.Index, g.Health, g.Reason)
			}
			return
		}
	}
}
