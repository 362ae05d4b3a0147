package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/gpu/challenge"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/jobs/jobstest"
)

const pkg = "github.com/aixblock/aixblock/gpu/challenge/cmd/challenge"

func testSeed(b byte) string {
	return hex.EncodeToString(bytes.Repeat([]byte{b}, 32))
}

// outDir is a directory any user may write, as a job's /outputs is.
func outDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runProgram runs the static program with args and env.
func runProgram(t *testing.T, bin string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// verifyDir checks a workload's output as a verifier does, in process.
func verifyDir(t *testing.T, dir, seedHex string, n int) error {
	t.Helper()
	seed, _ := hex.DecodeString(seedHex)
	v, err := challenge.NewVerifier(challenge.VerifierConfig{Params: challenge.Params{N: n}, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	p, err := challenge.OpenOutput(dir, v.Challenge())
	if err != nil {
		return err
	}
	defer p.Close()
	return challenge.Exchange(context.Background(), v, p)
}

// TestProgram: the static program, parameters from the environment,
// writes what the verifier accepts; check accepts it too, and refuses it
// for another seed; bad parameters are refused.
func TestProgram(t *testing.T) {
	bin := jobstest.Program(t, pkg)
	dir := outDir(t)
	out, err := runProgram(t, bin, []string{"CHALLENGE_SEED=" + testSeed(1), "CHALLENGE_N=200", "CHALLENGE_OUT=" + dir})
	if err != nil || !strings.Contains(out, `"n":200`) {
		t.Fatalf("compute: %v\n%s", err, out)
	}
	if err := verifyDir(t, dir, testSeed(1), 200); err != nil {
		t.Fatalf("verifier refused the program's output: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string // in the output; "" for success
	}{
		{[]string{"check", "-dir", dir, "-seed", testSeed(1), "-n", "200", "-class", "mock-cpu", "-elapsed", "1s"}, ""},
		{[]string{"check", "-dir", dir, "-seed", testSeed(2), "-n", "200"}, "row of the product is wrong"},
		{[]string{"check", "-dir", dir, "-seed", testSeed(1), "-n", "200", "-class", "nvidia-h100-80gb", "-elapsed", "1s"}, "too small to tell"},
		{[]string{"-seed", "abc", "-out", dir}, "want 64 hex digits"},
		{[]string{"-seed", testSeed(1), "-n", "0", "-out", dir}, "outside [1, 524288]"},
		{[]string{"plan", "-class", "nvidia-h100-80gb"}, `"n":89344`},
	} {
		out, err := runProgram(t, bin, nil, tc.args...)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v\n%s", tc.args, err, out)
		case tc.want != "" && !strings.Contains(out, tc.want):
			t.Errorf("%v: want %q in\n%s", tc.args, tc.want, out)
		}
	}
}

// TestProgramWithoutRows: with CHALLENGE_ROWS=0 the provider answers the
// opened rows by recomputing them, and still passes.
func TestProgramWithoutRows(t *testing.T) {
	dir := outDir(t)
	if err := run(context.Background(), io.Discard, []string{"-seed", testSeed(3), "-n", "130", "-out", dir, "-rows=false"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, challenge.RowsFile)); !os.IsNotExist(err) {
		t.Fatalf("rows file written: %v", err)
	}
	if err := verifyDir(t, dir, testSeed(3), 130); err != nil {
		t.Fatal(err)
	}
}

// TestProgramInScratchImage: the program as the only file of a FROM-scratch
// image, run the way the daemon runs a job (read-only root, user nobody,
// no network, all capabilities dropped), writes a passing commitment.
func TestProgramInScratchImage(t *testing.T) {
	c := jobstest.Docker(t)
	const ref = "aixblock-test/challenge:latest"
	jobstest.StaticImage(t, c, pkg, ref)
	dir := outDir(t)
	logs := runJob(t, jobs.Container{
		Image: ref, Env: []string{"CHALLENGE_SEED=" + testSeed(4), "CHALLENGE_N=" + "256"},
		Outputs: dir, CPU: 1, MemoryMiB: 256, PidsLimit: 64, ShmMiB: 16,
	})
	if !strings.Contains(logs, `"n":256`) {
		t.Fatalf("logs: %s", logs)
	}
	if err := verifyDir(t, dir, testSeed(4), 256); err != nil {
		t.Fatal(err)
	}
}

// runJob runs c to its end with the jobs' Docker runtime and returns its
// output; an exit other than 0 fails t.
func runJob(t *testing.T, c jobs.Container) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d, err := jobs.NewDocker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	id, err := d.Create(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove(context.Background(), id)
	if err := d.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	code, err := d.Wait(ctx, id)
	var out bytes.Buffer
	if lerr := d.Logs(ctx, id, &out, &out); lerr != nil {
		t.Log(lerr)
	}
	if err != nil || code != 0 {
		t.Fatalf("container exit %d, %v:\n%s", code, err, out.String())
	}
	return out.String()
}

// TestTorchScriptMatches: nvidia/challenge.py, run on the CPU in the
// python3-torch image, writes the very bytes the Go program writes, on
// one device and with the rows split over three. Needs the image (make
// e2e-torch builds it): AIXBLOCK_E2E_TORCH=1.
func TestTorchScriptMatches(t *testing.T) {
	if os.Getenv("AIXBLOCK_E2E_TORCH") != "1" {
		t.Skip("real PyTorch: AIXBLOCK_E2E_TORCH=1 (make e2e-torch builds its image)")
	}
	jobstest.Docker(t)
	if out, err := exec.Command("bash", "../../../../jobs/testdata/torch/image.sh").CombinedOutput(); err != nil {
		t.Fatalf("torch image: %v\n%s", err, out)
	}
	src, err := filepath.Abs("../../nvidia")
	if err != nil {
		t.Fatal(err)
	}
	want := outDir(t)
	if err := run(context.Background(), io.Discard, []string{"-seed", testSeed(5), "-n", "301", "-out", want}); err != nil {
		t.Fatal(err)
	}
	split := "import sys, torch, challenge; sys.argv[1:] = ['--device', 'cpu', '--seed', '" + testSeed(5) + "', '--n', '301']; " +
		"print(challenge.Run(challenge.parse(), [torch.device('cpu')] * 3).run())"
	for name, cmd := range map[string][]string{
		"one device":    {"python3", "/src/challenge.py", "--device", "cpu", "--seed", testSeed(5), "--n", "301"},
		"three devices": {"python3", "-c", split},
	} {
		dir := outDir(t)
		runJob(t, jobs.Container{
			Image: "aixblock-test/torch:latest", Entrypoint: cmd[:1], Cmd: cmd[1:], Env: []string{"PYTHONPATH=/src"},
			Inputs: []jobs.Mount{{Source: src, Target: "/src"}}, Outputs: dir, CPU: 1, MemoryMiB: 1024, PidsLimit: 256, ShmMiB: 64,
		})
		for _, f := range []string{challenge.LeavesFile, challenge.RowsFile, challenge.RootFile} {
			got, _ := os.ReadFile(filepath.Join(dir, f))
			exp, _ := os.ReadFile(filepath.Join(want, f))
			if len(exp) == 0 || !bytes.Equal(got, exp) {
				t.Errorf("%s: %s differs from the Go program's (%d bytes, want %d)", name, f, len(got), len(exp))
			}
		}
	}
}
