package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeBlock is one ```sh block of the README.
type readmeBlock struct {
	line int    // where it starts
	skip string // why it is not run, from a "<!-- readme-test: skip: WHY -->" line above it
	code string
}

func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []readmeBlock
	var cur *readmeBlock
	skip := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		switch {
		case cur != nil && l == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.code += l + "\n"
		case l == "```sh":
			cur = &readmeBlock{line: n, skip: skip}
			skip = ""
		case strings.HasPrefix(l, "<!-- readme-test: skip:"):
			skip = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, "<!-- readme-test: skip:"), "-->"))
		case strings.TrimSpace(l) != "":
			skip = "" // a skip mark holds for the block right below it only
		}
	}
	if cur != nil {
		t.Fatalf("README: the block at line %d is never closed", cur.line)
	}
	return out
}

// TestReadme runs every command block of the README, as written and in
// order, the way a new user pastes them into a shell at the top of a fresh
// clone: make builds the binary, daemons go to the background, the
// quickstarts' repos land in ./demo. A block fails the test when any of its
// commands fails.
func TestReadme(t *testing.T) {
	if testing.Short() {
		t.Skip("the README's blocks take minutes")
	}
	jobDocker(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, filepath.Join(root, "README.md"))
	if len(blocks) < 8 {
		t.Fatalf("README has %d command blocks; the parser is lost", len(blocks))
	}

	// A fresh clone, as far as the blocks can tell: the sources, and none
	// of this checkout's build outputs or state.
	dir := t.TempDir()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		switch e.Name() {
		case ".git", "bin", ".testnet", "demo", "artifacts":
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o700)

	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	ran := 0
	for _, b := range blocks {
		if b.skip != "" {
			t.Logf("README line %d: not run: %s", b.line, b.skip)
			continue
		}
		ran++
		fmt.Fprintf(&script, "echo '=== README line %d' >&2\n%s", b.line, b.code)
	}
	script.WriteString("echo '=== README done' >&2\n")

	t.Cleanup(func() { stopReadmeNodes(t, dir) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+home, "AIXBLOCK_REPO=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) // what the blocks left in the background
	if err != nil {
		at := "the start"
		for _, l := range strings.Split(errb.String(), "\n") {
			if strings.HasPrefix(l, "=== README line") {
				at = strings.TrimPrefix(l, "=== ")
			}
		}
		t.Fatalf("the block at %s failed: %v\nstdout:\n%s\nstderr:\n%s", at, err, tail(out.String(), 60), tail(errb.String(), 60))
	}
	for _, want := range []string{"hi\n", "hello from a locked-down container", "paid by the hour"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the README's blocks never printed %q:\n%s", want, tail(out.String(), 60))
		}
	}
	t.Logf("ran %d of %d README blocks", ran, len(blocks))
}

// stopReadmeNodes stops whatever the blocks started and did not stop
// (a failed block leaves its daemons and testnet behind).
func stopReadmeNodes(t *testing.T, dir string) {
	b := filepath.Join(dir, "bin", "aixblock")
	if _, err := os.Stat(b); err != nil {
		return
	}
	apis, _ := filepath.Glob(filepath.Join(dir, "demo", "*", "api"))
	for _, api := range apis {
		exec.Command(b, "--repo", filepath.Dir(api), "shutdown").Run()
	}
	if _, err := os.Stat(filepath.Join(dir, ".testnet", "testnet.json")); err == nil {
		exec.Command(b, "testnet", "down", "--dir", filepath.Join(dir, ".testnet")).Run()
	}
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
