package gethtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Module is the go-ethereum module whose cmd/geth is built.
const Module = "github.com/ethereum/go-ethereum"

// Environment variables that steer Binary.
const (
	// EnvGeth names a geth binary to use instead of building one.
	EnvGeth = "AIXBLOCK_GETH"
	// EnvRequire set to 1 makes a geth that cannot be built or started a
	// test failure instead of a skip (CI sets it, as does CI=true).
	EnvRequire = "AIXBLOCK_REQUIRE_GETH"
)

// Version is the go-ethereum version go.mod pins: from the binary's build
// info, or (test binaries carry none) from go list -m in the working
// directory, which must be inside the module.
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == Module {
				if d.Replace != nil {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}", Module).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// Required tells whether a missing geth fails a test rather than skipping
// it: in CI, or with AIXBLOCK_REQUIRE_GETH=1.
func Required() bool {
	return os.Getenv(EnvRequire) == "1" || os.Getenv("CI") != ""
}

// CachePath is where the geth of version is kept once built: beside the Go
// build cache, so a machine builds it once per version,
// $(go env GOCACHE)/../aixblock-geth/<version>/geth.
func CachePath(ctx context.Context, version string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOCACHE: %w", err)
	}
	gocache := strings.TrimSpace(string(out))
	if gocache == "" || gocache == "off" {
		return "", errors.New("go env GOCACHE: no build cache")
	}
	return filepath.Join(filepath.Dir(gocache), "aixblock-geth", version, "geth"), nil
}

// Build returns the path of geth of the pinned version, building it first
// when it is not in the cache: go mod download of the module, a writable
// copy of it (the module cache is read-only), go build ./cmd/geth there.
// Progress goes to log. Processes that build at once wait for one another
// (a file lock), so it is built once.
func Build(ctx context.Context, log io.Writer) (string, error) {
	version := Version()
	if version == "" {
		return "", errors.New("geth: no go-ethereum version in the build info or from go list -m")
	}
	path, err := CachePath(ctx, version)
	if err != nil {
		return "", err
	}
	if isExec(path) {
		return path, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, "lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if isExec(path) { // built by another process while this one waited
		return path, nil
	}
	start := time.Now()
	fmt.Fprintf(log, "building geth %s into %s (once per machine; minutes)\n", version, path)
	work, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	// Outside any module and workspace: the download must not touch the
	// caller's go.mod, and the build uses go-ethereum's own go.mod.
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false")
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", Module+"@"+version)
	dl.Dir, dl.Env = work, env
	var stderr bytes.Buffer
	dl.Stderr = &stderr
	out, err := dl.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w: %s%s", Module, version, err, out, stderr.Bytes())
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %s %s", Module, version, mod.Error, out)
	}
	src := filepath.Join(work, "src")
	if err := os.CopyFS(src, os.DirFS(mod.Dir)); err != nil {
		return "", fmt.Errorf("copy %s: %w", mod.Dir, err)
	}
	tmp := filepath.Join(work, "geth")
	b := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmp, "./cmd/geth")
	b.Dir, b.Env, b.Stdout, b.Stderr = src, env, log, log
	if err := b.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/geth (go-ethereum %s): %w", version, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "built geth %s in %s\n", version, time.Since(start).Round(time.Second))
	return path, nil
}

func isExec(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// lockFile takes an exclusive lock on path, waiting for it until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// buildTime is what a test run must have left to build geth in it.
const buildTime = 20 * time.Minute

var binary struct {
	once sync.Once
	path string
	err  error
}

// Binary is the geth to test against: $AIXBLOCK_GETH, or the pinned
// version from the cache, built there when missing (not under -short, nor
// when the test binary's timeout is less than 20 minutes away: make geth
// builds it beforehand). When there is none, the test is skipped with the
// reason, unless Required, where it fails.
func Binary(t testing.TB) string {
	t.Helper()
	binary.once.Do(func() {
		if p := os.Getenv(EnvGeth); p != "" {
			if !isExec(p) {
				binary.err = fmt.Errorf("%s=%s: not an executable file", EnvGeth, p)
			}
			binary.path = p
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		version := Version()
		if version == "" {
			binary.err = errors.New("no go-ethereum version in the build info or from go list -m")
			return
		}
		if p, err := CachePath(ctx, version); err == nil && isExec(p) {
			binary.path = p
			return
		}
		if testing.Short() && !Required() {
			binary.err = errors.New("geth is not built and -short does not build it (run make geth)")
			return
		}
		// A build takes minutes (16 on a busy 2-core machine): not
		// inside a test run that would time out during it.
		if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
			if end, ok := d.Deadline(); ok && time.Until(end) < buildTime {
				binary.err = fmt.Errorf("geth is not built and the test timeout leaves %s, less than the %s a build may take (run make geth)",
					time.Until(end).Round(time.Second), buildTime)
				return
			}
		}
		binary.path, binary.err = Build(ctx, testLog{t})
	})
	if binary.err != nil {
		if Required() {
			t.Fatalf("gethtest: %v (%s=1 or CI is set: geth is required)", binary.err, EnvRequire)
		}
		t.Skipf("gethtest: %v (make geth builds it; %s=1 turns this skip into a failure)", binary.err, EnvRequire)
	}
	return binary.path
}

// testLog writes the build's progress to the test's log.
type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
