package jobs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

func TestRotatingLog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out.log")
	r, err := openRotating(p, 10, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"aaaa\n", "bbbb\n", "cccc\n", "dddd\n"} {
		if _, err := r.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	cur, _ := os.ReadFile(p)
	old, _ := os.ReadFile(p + ".1")
	if string(cur) != "cccc\ndddd\n" || string(old) != "aaaa\nbbbb\n" {
		t.Fatalf("current %q, rotated %q", cur, old)
	}
	// Reopening appends; truncate starts over.
	r, _ = openRotating(p, 100, false)
	r.Write([]byte("eeee\n"))
	r.Close()
	if b, _ := os.ReadFile(p); !strings.HasSuffix(string(b), "dddd\neeee\n") {
		t.Fatalf("append: %q", b)
	}
	r, _ = openRotating(p, 100, true)
	r.Close()
	if b, _ := os.ReadFile(p); len(b) != 0 {
		t.Fatalf("truncate: %q", b)
	}
}

type noContent struct{ Content }

// A repo given by a relative path still yields absolute bind mounts.
func TestManagerDirIsAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	m, err := NewManager(t.Context(), Config{Dir: "repo/jobs", Runtime: stuck{}, Content: noContent{}})
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(m.cfg.Dir) {
		t.Fatalf("dir %q", m.cfg.Dir)
	}
}

// fakeOutput is what a run on the fake runtime writes to output.log.
const fakeOutput = "run 1\nto stderr\n"

// ReadLog on an ended job: pieces at any offset, Done only with the last
// piece, and errors for what cannot be read.
func TestReadLogEnded(t *testing.T) {
	rt := newFakeRuntime()
	rt.exits = []int{0}
	m := fakeManager(t, t.TempDir(), rt, &fakeContent{}, nil)
	j, err := m.Submit(fakeSpec(), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitJob(t, m, j.ID, 30*time.Second)
	for _, tc := range []struct {
		offset int64
		max    int
		want   LogChunk
	}{
		{0, 4, LogChunk{Data: []byte("run "), Next: 4}},
		{0, 100, LogChunk{Data: []byte(fakeOutput), Next: 16, Done: true}},
		// A piece that ends exactly at the end leaves Done to the next.
		{12, 4, LogChunk{Data: []byte("err\n"), Next: 16}},
		{16, 4, LogChunk{Next: 16, Done: true}},
		{10, 100, LogChunk{Data: []byte("tderr\n"), Next: 16, Done: true}},
		{1 << 40, 4, LogChunk{Next: 1 << 40, Done: true}},
	} {
		got, err := m.ReadLog(j.ID, tc.offset, tc.max)
		if err != nil || string(got.Data) != string(tc.want.Data) || got.Next != tc.want.Next || got.Done != tc.want.Done {
			t.Errorf("at %d, %d bytes: %q next %d done %v (%v); want %q next %d done %v",
				tc.offset, tc.max, got.Data, got.Next, got.Done, err, tc.want.Data, tc.want.Next, tc.want.Done)
		}
	}
	if got := readLogAll(t, m, j.ID, 5); got != logsOf(t, m, j.ID) || got != fakeOutput {
		t.Errorf("read in pieces of 5: %q; Logs gives %q", got, logsOf(t, m, j.ID))
	}
	for _, tc := range []struct {
		id          string
		offset      int64
		max         int
		want        string
		errNotFound bool
	}{
		{j.ID, -1, 4, "offset -1: want 0 or more", false},
		{j.ID, 0, 0, "read of 0 bytes: want 1 or more", false},
		{"0000000000000000", 0, 4, "no such job", true},
	} {
		_, err := m.ReadLog(tc.id, tc.offset, tc.max)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrNotFound) != tc.errNotFound {
			t.Errorf("job %s at %d, %d bytes: %v; want %q", tc.id, tc.offset, tc.max, err, tc.want)
		}
	}
}

// ReadLog while a job runs never says Done, even at the end of what it
// wrote so far; a job with no output yet gives an empty piece where it
// was asked.
func TestReadLogRunning(t *testing.T) {
	rt := newFakeRuntime()
	delete(rt.images, testFakeImage)
	rt.registry[testFakeImage], rt.blockPull = "sha256:pulled", true
	m := fakeManager(t, t.TempDir(), rt, &fakeContent{}, nil)
	preparing, err := m.Submit(fakeSpec(), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitFor(t, 10*time.Second, func() bool { return rt.called("Pull", "") }, "the pull")
	if got, err := m.ReadLog(preparing.ID, 5, 10); err != nil || len(got.Data) != 0 || got.Next != 5 || got.Done {
		t.Errorf("a preparing job: %+v, %v; want nothing, next 5, not done", got, err)
	}
	m.Cancel(preparing.ID)
	waitJob(t, m, preparing.ID, 30*time.Second)
	if got, err := m.ReadLog(preparing.ID, 0, 10); err != nil || len(got.Data) != 0 || got.Next != 0 || !got.Done {
		t.Errorf("a job canceled while preparing: %+v, %v; want nothing, done", got, err)
	}

	rt.mu.Lock()
	rt.blockPull = false
	rt.mu.Unlock()
	running, err := m.Submit(fakeSpec(), SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitRunning(t, m, running.ID)
	var got LogChunk
	p2ptest.WaitFor(t, 10*time.Second, func() bool {
		got, err = m.ReadLog(running.ID, 0, 100)
		return err != nil || len(got.Data) == len(fakeOutput)
	}, "the running job's output")
	if err != nil || string(got.Data) != fakeOutput || got.Next != 16 || got.Done {
		t.Errorf("a running job's output: %+v, %v; want it all, not done", got, err)
	}
	m.Cancel(running.ID)
	waitJob(t, m, running.ID, 30*time.Second)
	if got, err := m.ReadLog(running.ID, 16, 100); err != nil || len(got.Data) != 0 || !got.Done {
		t.Errorf("after the cancel: %+v, %v; want done", got, err)
	}
}

// readLogAll reads job id's output with ReadLog in pieces of max until
// it is done.
func readLogAll(t *testing.T, m *Manager, id string, max int) string {
	t.Helper()
	var b strings.Builder
	var at int64
	for range 1000 {
		c, err := m.ReadLog(id, at, max)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Data) > max || c.Next != at+int64(len(c.Data)) {
			t.Fatalf("at %d, %d bytes: %d bytes, next %d", at, max, len(c.Data), c.Next)
		}
		b.Write(c.Data)
		if at = c.Next; c.Done {
			return b.String()
		}
	}
	t.Fatalf("job %s: not done after 1000 reads: %q", id, b.String())
	return ""
}
