package content

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

// These DAGs are built block by block, as a hostile peer would, not by Add.

func v1(nd *merkledag.ProtoNode) *merkledag.ProtoNode {
	p, _ := merkledag.PrefixForCidVersion(1)
	nd.SetCidBuilder(p)
	return nd
}

func put(t *testing.T, s *Store, nds ...ipld.Node) {
	t.Helper()
	for _, nd := range nds {
		if err := s.local.Add(context.Background(), nd); err != nil {
			t.Fatal(err)
		}
	}
}

// repeatedFile is a file whose root links one leaf n times: its blocks hold
// len(leaf) bytes plus a small root, its content n*len(leaf).
func repeatedFile(t *testing.T, s *Store, leaf []byte, n int) ipld.Node {
	t.Helper()
	raw := merkledag.NewRawNode(leaf)
	fsn := ft.NewFSNode(ft.TFile)
	root := v1(new(merkledag.ProtoNode))
	for range n {
		fsn.AddBlockSize(uint64(len(leaf)))
		if err := root.AddRawLink("", &ipld.Link{Cid: raw.Cid(), Size: uint64(len(leaf))}); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := fsn.GetBytes()
	root.SetData(data)
	put(t, s, raw, root)
	return root
}

func dirOf(t *testing.T, s *Store, links ...*ipld.Link) *merkledag.ProtoNode {
	t.Helper()
	d := v1(ft.EmptyDirNode())
	for _, l := range links {
		// AddRawLink keeps duplicates and any name, as a hostile encoder can.
		if err := d.AddRawLink(l.Name, l); err != nil {
			t.Fatal(err)
		}
	}
	put(t, s, d)
	return d
}

func symlink(t *testing.T, s *Store, target string) *merkledag.ProtoNode {
	t.Helper()
	data, err := ft.SymlinkData(target)
	if err != nil {
		t.Fatal(err)
	}
	nd := v1(merkledag.NodeWithData(data))
	put(t, s, nd)
	return nd
}

func link(name string, nd ipld.Node) *ipld.Link {
	return &ipld.Link{Name: name, Cid: nd.Cid()}
}

// A DAG bomb: 1 MiB of unique blocks that writes 100 MiB. The old Get
// counted unique blocks only and wrote all of it.
func TestDAGBombRefusedBeforeWriting(t *testing.T) {
	s := line(t, 1, Config{MaxDAGBytes: 16 << 20})[0].store
	ctx := context.Background()
	leaf := make([]byte, 1<<20)
	rand.Read(leaf)
	bomb := repeatedFile(t, s, leaf, 100)
	out := filepath.Join(t.TempDir(), "out")

	_, err := s.Get(ctx, bomb.Cid(), out, nil)
	if !errors.Is(err, ErrTooBig) || !strings.Contains(err.Error(), "content.max_dag_mib") {
		t.Fatalf("file bomb: %v, want the size limit named content.max_dag_mib", err)
	}
	if _, err := os.Lstat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused bomb left %s behind (%v)", out, err)
	}
	var sink bytes.Buffer
	if err := s.Cat(ctx, bomb.Cid(), &sink); !errors.Is(err, ErrTooBig) || sink.Len() != 0 {
		t.Fatalf("cat of a bomb: %v after %d bytes", err, sink.Len())
	}

	// The same through a directory: 100 names for one 1 MiB file.
	one := repeatedFile(t, s, leaf, 1)
	var links []*ipld.Link
	for i := range 100 {
		links = append(links, link("f"+strings.Repeat("x", i), one))
	}
	dir := dirOf(t, s, links...)
	if _, err := s.Get(ctx, dir.Cid(), out, nil); !errors.Is(err, ErrTooBig) {
		t.Fatalf("directory bomb: %v, want the size limit", err)
	}
	// And a directory that links itself through a child a few levels
	// down would be refused by depth; one whose entries fan out writes
	// nothing but costs EntryCost each.
	empty := repeatedFile(t, s, nil, 0)
	level := dirOf(t, s, link("e", empty))
	for range 12 { // 2^12 entries of 4 KiB each: 16 MiB, over the limit
		level = dirOf(t, s, link("a", level), link("b", level))
	}
	if _, err := s.Get(ctx, level.Cid(), out, nil); !errors.Is(err, ErrTooBig) {
		t.Fatalf("fan-out of empty files: %v, want the size limit", err)
	}

	// A per-call limit, as a job passes its disk budget, names itself.
	_, err = s.GetWith(ctx, one.Cid(), out, GetOptions{MaxBytes: 512 << 10, LimitName: "resources.disk_mib"})
	if !errors.Is(err, ErrTooBig) || !strings.Contains(err.Error(), "resources.disk_mib") {
		t.Fatalf("per-call limit: %v, want it named resources.disk_mib", err)
	}
	// Under the limits the same file writes.
	if _, err := s.GetWith(ctx, one.Cid(), out, GetOptions{MaxBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, leaf) {
		t.Fatal("the file under the limit differs")
	}
}

// A root that declares fewer bytes than its leaves hold cannot write past
// what the plan charged.
func TestFileLongerThanDeclared(t *testing.T) {
	s := line(t, 1, Config{})[0].store
	leaf := merkledag.NewRawNode(bytes.Repeat([]byte{1}, 4096))
	fsn := ft.NewFSNode(ft.TFile)
	fsn.AddBlockSize(10) // a lie
	data, _ := fsn.GetBytes()
	root := v1(merkledag.NodeWithData(data))
	root.AddRawLink("", &ipld.Link{Cid: leaf.Cid()})
	put(t, s, leaf, root)
	out := filepath.Join(t.TempDir(), "f")
	if _, err := s.Get(context.Background(), root.Cid(), out, nil); err == nil || !strings.Contains(err.Error(), "declared size") {
		t.Fatalf("err %v, want the declared size refused", err)
	}
	if _, err := os.Lstat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a refused file was left behind")
	}
}

// Hostile directories: a symlink "a" to a host directory followed by a
// directory "a" holding x (written through the link if names were not
// checked), names with slashes, "..", NUL. Each is refused with nothing
// written; the old Get wrote the symlink before failing on the duplicate
// and left it in the output for whatever mounts it next.
func TestHostileDirectoriesNeverLeaveTheTarget(t *testing.T) {
	s := line(t, 1, Config{})[0].store
	ctx := context.Background()
	victim := t.TempDir()
	x := repeatedFile(t, s, []byte("pwned"), 1)
	inner := dirOf(t, s, link("x", x))
	toVictim := symlink(t, s, victim)

	for _, tc := range []struct {
		name  string
		links []*ipld.Link
	}{
		{"symlink then directory of the same name", []*ipld.Link{link("a", toVictim), link("a", inner)}},
		{"directory then symlink of the same name", []*ipld.Link{link("a", inner), link("a", toVictim)}},
		{"slash in a name", []*ipld.Link{link("a", toVictim), link("a/x", x)}},
		{"dot-dot", []*ipld.Link{link("..", inner)}},
		{"dot", []*ipld.Link{link(".", inner)}},
		{"empty name", []*ipld.Link{link("", x)}},
		{"NUL in a name", []*ipld.Link{link("a\x00b", x)}},
		{"absolute name", []*ipld.Link{link(victim+"/x", x)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := dirOf(t, s, tc.links...)
			out := filepath.Join(t.TempDir(), "out")
			_, err := s.Get(ctx, dir.Cid(), out, nil)
			if !errors.Is(err, ErrBadEntry) {
				t.Fatalf("err %v, want an unsafe entry refused", err)
			}
			if _, err := os.Lstat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("output left behind after a refusal (%v)", err)
			}
			if ents, _ := os.ReadDir(victim); len(ents) != 0 {
				t.Fatalf("the victim directory got %v", ents)
			}
		})
	}

	// Symlinks are kept as symlinks, never followed: a link to the victim
	// and a file beside it write the link, and nothing lands in the victim.
	dir := dirOf(t, s, link("a", toVictim), link("b", inner))
	out := filepath.Join(t.TempDir(), "out")
	if _, err := s.Get(ctx, dir.Cid(), out, nil); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(out, "a")); err != nil || target != victim {
		t.Fatalf("a is %q (%v), want a symlink to %s", target, err, victim)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "b", "x")); string(b) != "pwned" {
		t.Fatalf("b/x = %q", b)
	}
	if ents, _ := os.ReadDir(victim); len(ents) != 0 {
		t.Fatalf("the victim directory got %v", ents)
	}
	// An output path that is already a symlink is refused, not followed.
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(victim, link)
	if _, err := s.Get(ctx, x.Cid(), link, nil); err == nil {
		t.Fatal("an existing symlink as output was written through")
	}
}

func TestGetKeepsExecutableBit(t *testing.T) {
	s := line(t, 1, Config{})[0].store
	src := filepath.Join(t.TempDir(), "tool")
	os.WriteFile(src, []byte("#!/bin/sh\n"), 0o755)
	fsn := ft.NewFSNode(ft.TFile)
	fsn.SetData([]byte("#!/bin/sh\n"))
	fsn.SetMode(0o755)
	data, _ := fsn.GetBytes()
	nd := v1(merkledag.NodeWithData(data))
	put(t, s, nd)
	out := filepath.Join(t.TempDir(), "tool")
	if _, err := s.Get(context.Background(), nd.Cid(), out, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Fatalf("mode %v (%v), want executable", st.Mode(), err)
	}
}

// fakeClock is the injectable clock of pin expiry.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Results expire: an expiring pin is unpinned and its blocks collected once
// ResultTTL has passed; a result pinned for good, or content that was
// already pinned for good, stays.
func TestResultPinsExpire(t *testing.T) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	s := line(t, 1, Config{ResultTTL: time.Hour, Now: clock.Now, SweepInterval: -1})[0].store
	ctx := context.Background()
	dir := t.TempDir()
	add := func(name string, size int, opts AddOptions) cid.Cid {
		t.Helper()
		p := filepath.Join(dir, name)
		writeRandom(t, p, size)
		c, err := s.Add(ctx, p, opts)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	result := add("result", 3<<20, AddOptions{Pin: true, Result: true})
	kept := add("kept", 2<<20, AddOptions{Pin: true, Result: true})
	data := add("data", 1<<20, AddOptions{Pin: true})
	// The same bytes as data, added again as a result: data stays for good.
	p := filepath.Join(dir, "data")
	if again, err := s.Add(ctx, p, AddOptions{Pin: true, Result: true}); err != nil || again != data {
		t.Fatalf("re-add: %s %v", again, err)
	}
	if at, ok, _ := s.PinExpiry(ctx, result); !ok || !at.Equal(clock.Now().Add(time.Hour)) {
		t.Fatalf("result expires %v (%v), want in an hour", at, ok)
	}
	if err := s.Pin(ctx, kept); err != nil { // `data pin add` by the requester
		t.Fatal(err)
	}

	clock.advance(59 * time.Minute)
	if gone, err := s.SweepExpired(ctx); err != nil || len(gone) != 0 {
		t.Fatalf("before the TTL: unpinned %v (%v)", gone, err)
	}
	clock.advance(2 * time.Minute)
	gone, err := s.SweepExpired(ctx)
	if err != nil || len(gone) != 1 || gone[0] != result {
		t.Fatalf("after the TTL: unpinned %v (%v), want only %s", gone, err, result)
	}
	if has, _ := s.bs.Has(ctx, result); has {
		t.Fatal("the expired result's blocks were not collected")
	}
	pins, _ := s.Pins(ctx)
	if len(pins) != 2 {
		t.Fatalf("pins %v, want kept and data", pins)
	}
	for _, c := range []cid.Cid{kept, data} {
		if err := s.complete(ctx, c); err != nil {
			t.Fatalf("%s lost: %v", c, err)
		}
		if _, ok, _ := s.PinExpiry(ctx, c); ok {
			t.Fatalf("%s still expires", c)
		}
	}
}

// fileNode is a dag-pb file node with inline data over the given children,
// each declared as the size given beside it (a hostile node may lie).
func fileNode(t *testing.T, s *Store, inline []byte, kids []ipld.Node, sizes []uint64) *merkledag.ProtoNode {
	t.Helper()
	fsn := ft.NewFSNode(ft.TFile)
	fsn.SetData(inline)
	for _, n := range sizes {
		fsn.AddBlockSize(n)
	}
	data, _ := fsn.GetBytes()
	nd := v1(merkledag.NodeWithData(data))
	for _, k := range kids {
		nd.AddRawLink("", &ipld.Link{Cid: k.Cid()})
	}
	put(t, s, nd)
	return nd
}

// Get writes a file block by block at the offsets its nodes declare: inline
// data that leaves the leaves unaligned, a leaf under two parents (written
// twice, the second time read back), and three levels with a short tail
// all come out byte for byte.
func TestGetPlacesEveryBlock(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("DirectIO=%v", direct), func(t *testing.T) { placesEveryBlock(t, direct) })
	}
}

func placesEveryBlock(t *testing.T, direct bool) {
	s := line(t, 1, Config{DirectIO: direct})[0].store
	leaf := func(b byte, n int) ipld.Node {
		nd := merkledag.NewRawNode(bytes.Repeat([]byte{b}, n))
		put(t, s, nd)
		return nd
	}
	size := func(nd ipld.Node) uint64 {
		if pn, ok := nd.(*merkledag.ProtoNode); ok {
			fsn, _ := ft.FSNodeFromBytes(pn.Data())
			return fsn.FileSize()
		}
		return uint64(len(nd.RawData()))
	}
	file := func(inline []byte, kids ...ipld.Node) ipld.Node {
		var sizes []uint64
		for _, k := range kids {
			sizes = append(sizes, size(k))
		}
		return fileNode(t, s, inline, kids, sizes)
	}
	a, b, tail := leaf('a', 1<<20), leaf('b', 1<<20), leaf('t', 1000)
	cases := []struct {
		name string
		root ipld.Node
		want []byte
	}{
		{"inline data shifts the leaves", file([]byte("head"), a, b),
			slices.Concat([]byte("head"), a.RawData(), b.RawData())},
		{"a leaf under two parents", file(nil, a, file(nil, b, a), a),
			slices.Concat(a.RawData(), b.RawData(), a.RawData(), a.RawData())},
		{"three levels and a short tail", file(nil, file(nil, file(nil, a, b), b), file([]byte("x"), tail)),
			slices.Concat(a.RawData(), b.RawData(), b.RawData(), []byte("x"), tail.RawData())},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "f")
			if _, err := s.Get(context.Background(), tc.root.Cid(), out, nil); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("got %d bytes (%v), want %d", len(got), err, len(tc.want))
			}
		})
	}
}

// A node inside the file whose children add up to more (or less) than
// its parent declares for it would move every later block: refused, and
// the half-written file removed.
func TestInnerNodeSizeLieRefused(t *testing.T) {
	s := line(t, 1, Config{})[0].store
	a := merkledag.NewRawNode(bytes.Repeat([]byte{1}, 4096))
	put(t, s, a)
	for _, lie := range []uint64{4095, 4097} {
		inner := fileNode(t, s, nil, []ipld.Node{a, a}, []uint64{4096, 4096})
		root := fileNode(t, s, nil, []ipld.Node{inner, a}, []uint64{lie, 4096})
		out := filepath.Join(t.TempDir(), "f")
		if _, err := s.Get(context.Background(), root.Cid(), out, nil); err == nil || !strings.Contains(err.Error(), "declared size") {
			t.Fatalf("inner node declared as %d: err %v, want the declared size refused", lie, err)
		}
		if _, err := os.Lstat(out); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("inner node declared as %d: the refused file was left behind", lie)
		}
	}
}
