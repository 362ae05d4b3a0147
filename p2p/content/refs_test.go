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

// A Get keeps each leaf it wrote as a reference into its file, not as a
// block file; the node serves the content from there to a third peer once
// the original is gone. Changed bytes are never served: the reference is
// dropped and the leaf is missing (a peer that wants it finds nobody).
// GC drops references and leaves the file alone.
func TestGetKeepsLeavesInTheFile(t *testing.T) {
	nodes := line(t, 3, Config{FindTimeout: 3 * time.Second, FirstBlockTimeout: 10 * time.Second, StallTimeout: 3 * time.Second, SweepInterval: -1})
	a, b, c := nodes[0].store, nodes[1].store, nodes[2].store
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := filepath.Join(t.TempDir(), "src")
	want := writeRandom(t, src, 3<<20+1<<19) // three 1 MiB leaves and a half one
	root, err := a.Add(ctx, src, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "got")
	if _, err := b.Get(ctx, root, out, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Fatal("the file got differs")
	}
	rootNd, err := b.local.Get(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	var leaves []cid.Cid
	for _, l := range rootNd.Links() {
		leaves = append(leaves, l.Cid)
	}
	if len(leaves) != 4 {
		t.Fatalf("%d leaves, want 4", len(leaves))
	}
	for _, l := range leaves {
		if p, _ := b.flat.path(l.Hash()); exists(p) {
			t.Errorf("leaf %s was stored again as a block file", l)
		}
		if !b.refs.has(ctx, l.Hash()) {
			t.Errorf("leaf %s: no reference into %s", l, out)
		}
		if has, _ := b.bs.Has(ctx, l); !has {
			t.Errorf("leaf %s: the store does not have it", l)
		}
	}

	// The adder leaves; c gets everything from b's references.
	nodes[0].store.Close()
	nodes[0].p2p.Close()
	out2 := filepath.Join(t.TempDir(), "again")
	if _, err := c.Get(ctx, root, out2, nil); err != nil {
		t.Fatalf("from the getter's file: %v", err)
	}
	if got, _ := os.ReadFile(out2); !bytes.Equal(got, want) {
		t.Fatal("the file got from the getter differs")
	}
	c.GC(ctx)

	// The user edits b's copy inside the second leaf.
	f, err := os.OpenFile(out, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{want[1<<20+10] ^ 0xff}, 1<<20+10)
	f.Close()
	if _, err := c.Get(ctx, root, filepath.Join(t.TempDir(), "changed"), nil); err == nil {
		t.Fatal("a peer got the file after its only copy changed")
	}
	if _, err := b.bs.Get(ctx, leaves[1]); err == nil {
		t.Fatal("the changed leaf is still served")
	}
	if b.refs.has(ctx, leaves[1].Hash()) {
		t.Fatal("the changed leaf's reference was kept")
	}
	if got, err := b.bs.Get(ctx, leaves[2]); err != nil || !bytes.Equal(got.RawData(), want[2<<20:3<<20]) {
		t.Fatalf("an unchanged leaf: %v", err)
	}

	if _, err := b.GC(ctx); err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves {
		if b.refs.has(ctx, l.Hash()) {
			t.Errorf("leaf %s: reference kept after GC", l)
		}
	}
	if st, err := os.Stat(out); err != nil || st.Size() != int64(len(want)) {
		t.Fatalf("GC touched the file: %v", err)
	}
}

// A Get that fails removes its file and the references into it: here the
// only provider lacks the last leaf, so the fetch stalls after the others
// were written.
func TestFailedGetDropsItsReferences(t *testing.T) {
	nodes := line(t, 2, Config{FindTimeout: 2 * time.Second, FirstBlockTimeout: 10 * time.Second, StallTimeout: 2 * time.Second, SweepInterval: -1})
	a, b := nodes[0].store, nodes[1].store
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := filepath.Join(t.TempDir(), "src")
	writeRandom(t, src, 4<<20)
	root, err := a.Add(ctx, src, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rootNd, err := a.local.Get(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	links := rootNd.Links()
	if err := a.bs.DeleteBlock(ctx, links[len(links)-1].Cid); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "got")
	if _, err := b.Get(ctx, root, out, nil); err == nil {
		t.Fatal("a get of a file missing a leaf succeeded")
	}
	if _, err := os.Lstat(out); err == nil {
		t.Fatal("the failed get's file was left behind")
	}
	for _, l := range links {
		if b.refs.has(ctx, l.Cid.Hash()) {
			t.Errorf("leaf %s: reference left into the removed file", l.Cid)
		}
		if b.refs.expected(l.Cid.Hash()) {
			t.Errorf("leaf %s: still waited for after the get ended", l.Cid)
		}
	}
}

func TestRefEncoding(t *testing.T) {
	path, off, n, err := decodeRef(encodeRef("/data/model.bin", 5<<30, 1<<20))
	if err != nil || path != "/data/model.bin" || off != 5<<30 || n != 1<<20 {
		t.Fatalf("round trip: %q %d %d %v", path, off, n, err)
	}
	for name, b := range map[string][]byte{
		"empty":         nil,
		"no length":     {0x05},
		"zero length":   encodeRef("/f", 0, 0),
		"relative path": encodeRef("f", 0, 1),
		"no path":       encodeRef("", 0, 1),
	} {
		if _, _, _, err := decodeRef(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}
