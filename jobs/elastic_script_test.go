package jobs

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestElasticScript runs jobs/examples/elastic/train.py as one rank,
// twice over the same checkpoint directory: the second run resumes from
// the first's last checkpoint (step and loss), and the checkpoint's dot
// file is gone after the rename. The whole elastic scene runs in make
// e2e-torch (TestTorchElastic).
func TestElasticScript(t *testing.T) {
	py := torchPython(t)
	ckpt, out := t.TempDir(), t.TempDir()
	first := runElasticScript(t, py, ckpt, out, "40")
	if !strings.Contains(first, "resumed from step 0 loss None world 1") {
		t.Fatalf("the first run did not start from scratch:\n%s", first)
	}
	second := runElasticScript(t, py, ckpt, out, "60")
	if !strings.Contains(second, "resumed from step 40 loss ") || strings.Contains(second, "step 30 loss") {
		t.Fatalf("the second run did not resume from step 40:\n%s", second)
	}
	if _, err := os.Stat(filepath.Join(ckpt, ".ckpt.pt")); !os.IsNotExist(err) {
		t.Fatalf("the checkpoint's dot file is left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "model.pt")); err != nil {
		t.Fatalf("no model in the outputs: %v", err)
	}
	t.Logf("%s%s", first, second)
}

// runElasticScript runs train.py as the only rank for steps steps, with
// its checkpoints in ckpt and its outputs in out, and returns what it
// printed.
func runElasticScript(t *testing.T, py, ckpt, out, steps string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(py, "examples/elastic/train.py")
	cmd.Env = pythonEnv("MASTER_ADDR=127.0.0.1", fmt.Sprintf("MASTER_PORT=%d", port), "WORLD_SIZE=1", "RANK=0",
		"STEPS="+steps, "CKPT_DIR="+ckpt, "OUT_DIR="+out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("train.py: %v\n%s", err, b)
	}
	return string(b)
}
