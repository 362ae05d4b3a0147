package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, path string) // what is at path before
		perm    os.FileMode
		wantErr bool
	}{
		{"new file", func(*testing.T, string) {}, 0o600, false},
		{"replaces a file", func(t *testing.T, p string) { writePlain(t, p, "old contents, longer than the new") }, 0o644, false},
		{"executable", func(*testing.T, string) {}, 0o755, false},
		// A rename over a directory fails (also for root, unlike a
		// read-only directory): the write must fail whole.
		{"path is a directory", func(t *testing.T, p string) {
			if err := os.MkdirAll(filepath.Join(p, "inside"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, 0o600, true},
		{"directory missing", func(t *testing.T, p string) {
			if err := os.Remove(filepath.Dir(p)); err != nil {
				t.Fatal(err)
			}
		}, 0o600, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "state.json")
			tc.setup(t, p)
			err := WriteFile(p, []byte("new"), tc.perm)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "write "+p+": ") {
					t.Fatalf("err %v, want one naming %s", err, p)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(p)
				if err != nil || string(b) != "new" {
					t.Fatalf("read back %q, %v", b, err)
				}
				if fi, _ := os.Stat(p); fi.Mode().Perm() != tc.perm {
					t.Fatalf("mode %v, want %v", fi.Mode().Perm(), tc.perm)
				}
			}
			// Never a temporary left behind, whatever happened.
			if ents, _ := os.ReadDir(dir); len(ents) > 1 || len(ents) == 1 && ents[0].Name() != "state.json" {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Fatalf("directory holds %v", names)
			}
		})
	}
}

func writePlain(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
