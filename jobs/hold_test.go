package jobs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// The holder program runs and waits: it is alive after a positive event
// (its /proc entry shows it running our file), and dies on SIGKILL.
func TestHoldProgramWaits(t *testing.T) {
	p, err := holdFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p)
	if err := cmd.Start(); err != nil {
		t.Fatalf("exec the holder: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exe := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "exe")
	p2ptest.WaitFor(t, 5*time.Second, func() bool {
		got, err := os.Readlink(exe)
		return err == nil && got == p
	}, "the holder showing as running")
	// It sleeps in the kernel (S), not in a busy loop (R), and has not
	// exited.
	p2ptest.WaitFor(t, 5*time.Second, func() bool {
		stat, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "stat"))
		f := strings.Fields(string(stat))
		return len(f) > 2 && f[2] == "S"
	}, "the holder waiting in the kernel (state S)")
	select {
	case err := <-done:
		t.Fatalf("the holder exited: %v", err)
	default:
	}
	cmd.Process.Kill()
	if err := <-done; err == nil {
		t.Fatal("killed holder exited cleanly")
	}
	for _, arch := range []string{"amd64", "arm64"} {
		if b, err := holdELF(arch); err != nil || len(b) < 120 {
			t.Errorf("%s: %d bytes, %v", arch, len(b), err)
		}
	}
	if _, err := holdELF("riscv64"); err == nil {
		t.Error("riscv64 holder made")
	}
}
