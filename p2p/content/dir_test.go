package content

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
)

// A directory made on one node from roots held by two others: the maker
// stores only the directory block; a Get pulls every entry from where it is.
func TestDirectoryOfRemoteRoots(t *testing.T) {
	nodes := line(t, 3, Config{FindTimeout: 5 * time.Second, FirstBlockTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := map[string][]byte{}
	roots := map[string]cid.Cid{}
	for i, name := range []string{"rank-0", "rank-1"} {
		src := filepath.Join(t.TempDir(), "outputs")
		os.MkdirAll(src, 0o755)
		want[name] = writeRandom(t, filepath.Join(src, "model.bin"), 300<<10+i)
		c, err := nodes[i].store.Add(ctx, src, AddOptions{Pin: true})
		if err != nil {
			t.Fatal(err)
		}
		roots[name] = c
	}
	maker := nodes[2].store
	dir, err := maker.Directory(ctx, roots)
	if err != nil {
		t.Fatal(err)
	}
	again, err := maker.Directory(ctx, roots)
	if err != nil || again != dir {
		t.Fatalf("same entries gave %s then %s (%v)", dir, again, err)
	}
	entries, err := maker.Ls(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Name != "rank-0" || entries[1].Name != "rank-1" || entries[0].CID != roots["rank-0"].String() {
		t.Fatalf("entries %+v", entries)
	}
	out := filepath.Join(t.TempDir(), "result")
	if _, err := maker.Get(ctx, dir, out, nil); err != nil {
		t.Fatal(err)
	}
	for name, b := range want {
		got, err := os.ReadFile(filepath.Join(out, name, "model.bin"))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s/model.bin differs: %v", name, err)
		}
	}
	if _, err := maker.Directory(ctx, map[string]cid.Cid{"": roots["rank-0"]}); err == nil {
		t.Fatal("an entry without a name was accepted")
	}
}
