package jobs

import (
	"os"
	"os/exec"
	"testing"
)

// dilocoDir holds the WAN examples: diloco.py, its DDP baseline ddp.py,
// the task both train, and the checks of DiLoCo's arithmetic.
const dilocoDir = "examples/diloco"

// torchPython is a python3 that imports torch: the one on PATH, else the
// system's, where Debian's python3-torch installs (a PATH python such as
// pyenv's does not see it). Without one it skips and says how to get it;
// AIXBLOCK_REQUIRE_TORCH=1 makes the skip a failure.
func torchPython(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{"python3", "/usr/bin/python3"} {
		if py, err := exec.LookPath(name); err == nil && exec.Command(py, "-c", "import torch").Run() == nil {
			return py
		}
	}
	why := "no python3 that imports torch (apt-get install python3-torch)"
	if os.Getenv("AIXBLOCK_REQUIRE_TORCH") == "1" {
		tb.Fatal(why)
	}
	tb.Skip(why)
	return ""
}

// pythonEnv keeps python from writing __pycache__ into the checkout and
// torch to one thread (the test machines' cores are shared).
func pythonEnv(extra ...string) []string {
	return append(append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "OMP_NUM_THREADS=1"), extra...)
}

// TestDiLoCoScript runs test_diloco.py: int8 quantization round trips
// within half a step, the ranks' average in 16 and 8 bits is the mean on
// both of two ranks, and the outer step is Nesterov SGD on the averaged
// pseudo-gradient.
func TestDiLoCoScript(t *testing.T) {
	py := torchPython(t)
	cmd := exec.Command(py, "-m", "unittest", "-v", "test_diloco")
	cmd.Dir = dilocoDir
	cmd.Env = pythonEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("test_diloco.py: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
