// Package jobstest holds the test helpers shared by the tests of jobs and
// of the packages that run jobs through it (cmd/aixblock): a Docker
// engine or a skip, the test workload's image built from scratch, and
// static test programs. Tests wait with p2ptest.WaitFor.
//
// It imports the moby client and the standard library, never jobs, so
// that jobs' own in-package tests can import it without a cycle.
package jobstest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// Image is the test workload (jobs/testdata/jobprog) as a FROM-scratch
// image; Docker makes sure the engine holds it.
const Image = "aixblock-test/jobprog:latest"

// Jobprog is the import path of the test workload: its first argument
// picks what it does (echo, exit, sleep, write, read, serve, ...).
const Jobprog = "github.com/aixblock/aixblock/jobs/testdata/jobprog"

// DDP is the import path of the distributed workload: ranks that train
// one model over the launcher's rendezvous variables.
const DDP = "github.com/aixblock/aixblock/jobs/testdata/ddp"

// RequireEnv, set to 1 (as .ci/run does), makes a missing Docker engine
// fail the tests that need one instead of skipping them.
const RequireEnv = "AIXBLOCK_REQUIRE_DOCKER"

var (
	imageOnce sync.Once
	imageErr  error
)

// Docker returns a client of the local Docker engine, closed when t
// ends, and makes sure the engine holds Image, built fresh once per test
// binary. Without an engine it skips t, or fails it where RequireEnv is
// 1; an engine that answers but cannot take the image fails t.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	c, err := Connect(context.Background())
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("docker required (%s=1): %v", RequireEnv, err)
		}
		t.Skipf("no Docker engine here (%v); .ci/run installs one", err)
	}
	t.Cleanup(func() { c.Close() })
	imageOnce.Do(func() { imageErr = BuildImage(context.Background(), c) })
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return c
}

// Connect is a client of the engine the environment names (DOCKER_HOST,
// else the local socket) that answered a ping.
func Connect(ctx context.Context) (*client.Client, error) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		c.Close()
		return nil, fmt.Errorf("docker engine not answering: %w", err)
	}
	return c, nil
}

// BuildImage compiles the test workload statically and imports it into
// the engine as Image, and the proof-of-GPU challenge's CPU workload as
// ChallengeImage (every daemon in the tests answers challenges with
// it); make job-image runs it too (cmd/jobimage).
func BuildImage(ctx context.Context, c *client.Client) error {
	for _, img := range []struct{ pkg, name, ref string }{
		{Jobprog, "jobprog", Image},
		{ChallengeProgram, "challenge", ChallengeImage},
	} {
		bin, err := build(img.pkg)
		if err != nil {
			return err
		}
		if err := importStatic(ctx, c, img.name, bin, img.ref); err != nil {
			return err
		}
	}
	return nil
}

// ChallengeImage is the CPU workload's image; gpu/challenge.CPUImage
// names it for the daemon (jobstest may not import gpu/...; node's
// TestChallengeImageName keeps the two equal).
const ChallengeImage = "aixblock/challenge:cpu"

// ChallengeProgram is the import path of the challenge's CPU workload.
const ChallengeProgram = "github.com/aixblock/aixblock/gpu/challenge/cmd/challenge"

var (
	progMu sync.Mutex
	progs  = map[string][]byte{}
)

// Program writes the static binary of the Go command pkg (an import path
// in this module) into a directory of t's and returns its path. Each
// command is compiled once per test binary.
func Program(t testing.TB, pkg string) string {
	t.Helper()
	progMu.Lock()
	bin, ok := progs[pkg]
	progMu.Unlock()
	if !ok {
		var err error
		if bin, err = build(pkg); err != nil {
			t.Fatal(err)
		}
		progMu.Lock()
		progs[pkg] = bin
		progMu.Unlock()
	}
	p := filepath.Join(t.TempDir(), filepath.Base(pkg))
	if err := os.WriteFile(p, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// StaticImage imports the command pkg (an import path in this module) as
// the FROM-scratch image ref, as Docker does for Image.
func StaticImage(t testing.TB, c *client.Client, pkg, ref string) {
	t.Helper()
	if err := ImportStaticBinary(context.Background(), c, Program(t, pkg), ref); err != nil {
		t.Fatal(err)
	}
}

// build compiles pkg without cgo, so that it runs in an image holding
// nothing else, and returns the executable's bytes.
func build(pkg string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "jobstest")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "prog")
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s: %w\n%s", pkg, err, b)
	}
	return os.ReadFile(out)
}

// ImportStaticBinary makes a FROM-scratch image named ref holding one
// static binary at /NAME as its entrypoint, plus empty /inputs, /outputs,
// /tmp and /mnt. No registry is involved.
func ImportStaticBinary(ctx context.Context, c *client.Client, binary, ref string) error {
	b, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	return importStatic(ctx, c, filepath.Base(binary), b, ref)
}

func importStatic(ctx context.Context, c *client.Client, name string, bin []byte, ref string) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(bin))})
	tw.Write(bin)
	for _, dir := range []string{"inputs/", "outputs/", "tmp/", "mnt/"} {
		tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir})
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	res, err := c.ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, ref,
		client.ImageImportOptions{Changes: []string{fmt.Sprintf(`ENTRYPOINT ["/%s"]`, name)}})
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	defer res.Close()
	if _, err := io.Copy(io.Discard, res); err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	return nil
}
