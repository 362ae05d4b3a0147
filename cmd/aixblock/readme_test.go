package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeBlock is one ```sh block of a page of the docs.
type readmeBlock struct {
	line int    // where it starts
	skip string // why it is not run, from a "<!-- readme-test: skip: WHY -->" line above it
	code string
}

const skipMark = "<!-- readme-test: skip:"

// unrunFences are the fences of shell a reader would paste but the test
// would not run: a command block is ```sh, and output is indented.
var unrunFences = []string{"```bash", "```shell", "```console", "```zsh", "```"}

// parseBlocks reads the ```sh blocks of a page. Other fenced blocks
// (```yaml, ```text) are passed over; a shell block under another fence,
// or one never closed, is an error, so that no command goes unrun because
// of how it was fenced.
func parseBlocks(r io.Reader) ([]readmeBlock, error) {
	var out []readmeBlock
	var cur *readmeBlock
	inOther := false // inside a fence that is no command block
	skip := ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		switch {
		case (cur != nil || inOther) && l == "```":
			if cur != nil {
				out = append(out, *cur)
			}
			cur, inOther = nil, false
		case cur != nil:
			cur.code += l + "\n"
		case inOther:
		case l == "```sh":
			cur = &readmeBlock{line: n, skip: skip}
			skip = ""
		case slices.Contains(unrunFences, strings.TrimSpace(l)):
			return nil, fmt.Errorf("line %d: %q opens a block the test would not run: fence commands with ```sh, indent output", n, l)
		case strings.HasPrefix(l, "```"):
			inOther = true
		case strings.HasPrefix(l, skipMark):
			skip = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, skipMark), "-->"))
		case strings.TrimSpace(l) != "":
			skip = "" // a skip mark holds for the block right below it only
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		return nil, fmt.Errorf("the block at line %d is never closed", cur.line)
	}
	if inOther {
		return nil, fmt.Errorf("a fenced block is never closed")
	}
	return out, nil
}

func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blocks, err := parseBlocks(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return blocks
}

// docPages are the pages whose blocks TestReadme runs, relative to the
// repository's root: the README, CONTRIBUTING.md and every page under
// docs/, found by name so that a new page is run without an edit here.
func docPages(t *testing.T, root string) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages := []string{"README.md", "CONTRIBUTING.md"}
	for _, d := range docs {
		pages = append(pages, filepath.Join("docs", filepath.Base(d)))
	}
	slices.Sort(pages[2:])
	return pages
}

// docWants is what a page's blocks must print: the end of the job each
// walks through. A page whose job printed nothing, or whose blocks were
// all marked skip, fails.
var docWants = map[string][]string{
	"README.md":         {"hi\n"},
	"docs/operators.md": {"paid by the hour"},
	"docs/jobs.md":      {"hello from a locked-down container", "rank 1 met rank 0 at 10.77.0.1:29500"},
	"docs/api.md":       {`"uptime_s"`},
}

// minBlocks is fewer command blocks than the pages hold: below it, the
// parser is lost rather than the docs short.
const minBlocks = 15

// TestReadme runs every command block of the README, of CONTRIBUTING.md
// and of each page under docs/, as written and in order, the way a new
// user pastes them into a shell at the root of a fresh clone: make builds
// the binary, daemons go to the background, the demo repos land in ./demo.
// Each page runs from a clone of its own, so each can be walked alone. A
// block fails the test when any of its commands fails.
func TestReadme(t *testing.T) {
	if testing.Short() {
		t.Skip("the docs' blocks take minutes")
	}
	jobDocker(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	pages := docPages(t, root)
	for page := range docWants {
		if !slices.Contains(pages, page) {
			t.Errorf("docWants names %s, which is no page of the docs", page)
		}
	}
	blocks := map[string][]readmeBlock{}
	total := 0
	for _, page := range pages {
		blocks[page] = readmeBlocks(t, filepath.Join(root, page))
		total += len(blocks[page])
	}
	if total < minBlocks {
		t.Fatalf("the docs have %d command blocks; the parser is lost", total)
	}
	for _, page := range pages {
		t.Run(page, func(t *testing.T) { runPage(t, root, page, blocks[page]) })
	}
}

// runPage runs one page's blocks from a fresh clone and checks what they
// printed.
func runPage(t *testing.T, root, page string, blocks []readmeBlock) {
	script, ran := pageScript(t, page, blocks)
	if ran == 0 && len(docWants[page]) == 0 {
		t.Logf("%s has no command block to run", page)
		return
	}
	dir := freshClone(t, root)
	t.Cleanup(func() { stopReadmeNodes(t, dir) })
	out, errb, err := runScript(t, dir, script)
	if err != nil {
		at := "the start"
		for _, l := range strings.Split(errb, "\n") {
			if strings.HasPrefix(l, "=== "+page+" line") {
				at = strings.TrimPrefix(l, "=== ")
			}
		}
		t.Fatalf("the block at %s failed: %v\nstdout:\n%s\nstderr:\n%s", at, err, tail(out, 60), tail(errb, 60))
	}
	for _, want := range docWants[page] {
		if !strings.Contains(out, want) {
			t.Errorf("the blocks of %s never printed %q:\n%s", page, want, tail(out, 60))
		}
	}
	t.Logf("ran %d of %d blocks of %s", ran, len(blocks), page)
}

// pageScript is one bash script of a page's blocks that are not marked
// skip, each announced on stderr with its line so a failure names it.
func pageScript(t *testing.T, page string, blocks []readmeBlock) (string, int) {
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	ran := 0
	for _, b := range blocks {
		if b.skip != "" {
			t.Logf("%s line %d: not run: %s", page, b.line, b.skip)
			continue
		}
		ran++
		fmt.Fprintf(&script, "echo '=== %s line %d' >&2\n%s", page, b.line, b.code)
	}
	fmt.Fprintf(&script, "echo '=== %s done' >&2\n", page)
	return script.String(), ran
}

// freshClone is a fresh clone, as far as the blocks can tell: the sources
// (linked), and none of this checkout's build outputs or state.
func freshClone(t *testing.T, root string) string {
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
	if err := os.Mkdir(filepath.Join(dir, "home"), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runScript runs script in dir with a HOME of its own (no ~/.aixblock of
// the user's) but this machine's Go caches, as a user's shell has them, so
// that make build compiles only what changed. It returns stdout and stderr.
func runScript(t *testing.T, dir, script string) (string, string, error) {
	goEnv, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	caches := strings.Fields(string(goEnv))
	if len(caches) != 2 {
		t.Fatalf("go env GOCACHE GOMODCACHE: %q", goEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+filepath.Join(dir, "home"), "AIXBLOCK_REPO=",
		"GOCACHE="+caches[0], "GOMODCACHE="+caches[1])
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) // what the blocks left in the background
	return out.String(), errb.String(), err
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

// The parser finds the blocks a reader would paste, with their skip marks,
// and refuses a shell block fenced so that it would not run.
func TestParseBlocks(t *testing.T) {
	page := "# A page\n\n```sh\necho one\n```\n\n" +
		skipMark + " opens a browser -->\n```sh\nopen it\n```\n\n" +
		"```yaml\nkey: value\n```\n\n" +
		skipMark + " too far above -->\n\ntext between\n```sh\necho two\n```\n"
	blocks, err := parseBlocks(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	want := []readmeBlock{
		{line: 3, code: "echo one\n"},
		{line: 8, skip: "opens a browser", code: "open it\n"},
		{line: 19, code: "echo two\n"},
	}
	if !slices.Equal(blocks, want) {
		t.Errorf("blocks:\n got %+v\nwant %+v", blocks, want)
	}
	for _, bad := range []string{
		"```bash\nls\n```\n",
		"```console\n$ ls\n```\n",
		"```\nls\n```\n",
		"```sh\nls\n",
		"```yaml\nk: v\n",
	} {
		if _, err := parseBlocks(strings.NewReader(bad)); err == nil {
			t.Errorf("parseBlocks(%q) found no fault", bad)
		}
	}
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
