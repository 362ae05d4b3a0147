package jobs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
