package content

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/ipfs/boxo/blockstore"
	bl "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"golang.org/x/sys/unix"
)

func randomBlock(t *testing.T, size int) bl.Block {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	h, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bl.NewBlockWithCid(data, cid.NewCidV1(cid.Raw, h))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A datastore written before block files existed still serves its large
// blocks, a new Put of one does not store it twice, and GC frees blocks
// of both kinds.
func TestFlatStoreReadsOldDatastore(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "datastore")
	d, err := OpenDatastore(dir)
	if err != nil {
		t.Fatal(err)
	}
	old := randomBlock(t, 1<<20)
	if err := blockstore.NewBlockstore(d).Put(ctx, old); err != nil { // as the previous version stored it
		t.Fatal(err)
	}
	d.Close()

	d, err = OpenDatastore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pn, err := p2p.New(ctx, p2p.Config{Network: "flat", NoNAT: true, DHTRefresh: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer pn.Close()
	s, err := New(ctx, pn.Host, Config{Datastore: d, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.flat == nil || s.flat.dir != filepath.Join(dir, "blocks") {
		t.Fatalf("block files not beside the datastore: %+v", s.flat)
	}
	got, err := s.bs.Get(ctx, old.Cid())
	if err != nil || !bytes.Equal(got.RawData(), old.RawData()) {
		t.Fatalf("old block: %v", err)
	}
	if err := s.bs.Put(ctx, old); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.flat.path(old.Cid().Hash()); exists(p) {
		t.Error("an old block was stored again as a file")
	}
	fresh := randomBlock(t, 1<<20)
	small := randomBlock(t, 1<<10)
	if err := s.bs.PutMany(ctx, []bl.Block{fresh, small}); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.flat.path(fresh.Cid().Hash()); !exists(p) {
		t.Error("a new large block is not a file")
	}
	if p, _ := s.flat.path(small.Cid().Hash()); exists(p) {
		t.Error("a small block became a file")
	}
	for _, b := range []bl.Block{old, fresh, small} {
		if n, err := s.bs.GetSize(ctx, b.Cid()); err != nil || n != len(b.RawData()) {
			t.Errorf("size of %s: %d %v", b.Cid(), n, err)
		}
	}
	res, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed != 3 || res.Bytes != 2<<20+1<<10 {
		t.Errorf("gc: %+v, want 3 blocks and 2 MiB + 1 KiB", res)
	}
	for _, b := range []bl.Block{old, fresh, small} {
		if has, _ := s.bs.Has(ctx, b.Cid()); has {
			t.Errorf("%s survived gc", b.Cid())
		}
	}
}

// After a crash (the marker left behind), block files written since the
// marker are checked: a truncated one is removed, good ones stay, and the
// temporary files of interrupted writes go.
func TestFlatStoreRecovery(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	small := blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	f, _, err := openFlatStore(dir, small, false, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	good, bad := randomBlock(t, 1<<20), randomBlock(t, 1<<20)
	if err := f.PutMany(ctx, []bl.Block{good, bad}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, markerName)); err != nil {
		t.Fatalf("no marker while writes are unsynced: %v", err)
	}
	// The crash: no Close; one file lost its tail, one write was cut short.
	f.closeOnce.Do(func() { close(f.stop) })
	<-f.done
	badPath, _ := f.path(bad.Cid().Hash())
	if err := os.Truncate(badPath, 4096); err != nil {
		t.Fatal(err)
	}
	// A write cut short leaves its temporary beside its block (an older
	// version's were under .tmp).
	stray := filepath.Join(filepath.Dir(badPath), ".tmp-"+filepath.Base(badPath)+".7")
	os.WriteFile(stray, []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, ".tmp", "partial"), []byte("x"), 0o644)

	f, removed, err := openFlatStore(dir, small, false, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if removed != 2 {
		t.Errorf("removed %d, want 2 (the truncated block and the cut-short write)", removed)
	}
	if _, err := os.Lstat(stray); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the cut-short write's temporary is still there: %v", err)
	}
	if has, _ := f.Has(ctx, bad.Cid()); has {
		t.Error("the truncated block is still there")
	}
	if got, err := f.Get(ctx, good.Cid()); err != nil || !bytes.Equal(got.RawData(), good.RawData()) {
		t.Errorf("the good block: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, markerName)); err == nil {
		t.Error("marker still there after recovery")
	}
	if tmps, _ := os.ReadDir(filepath.Join(dir, ".tmp")); len(tmps) != 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
	// A sync clears the marker that the next write makes.
	if err := f.Put(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, markerName)); err == nil {
		t.Error("marker still there after a sync")
	}
}

// A pin whose block was lost in a crash is detected when the store opens
// again, and fetched again from a peer that has it.
func TestFlatStoreRefetchesLostPin(t *testing.T) {
	nodes := line(t, 2, Config{SweepInterval: -1})
	a, b := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "f")
	want := writeRandom(t, path, 3<<20)
	root, err := a.store.Add(ctx, path, AddOptions{Pin: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Fetch(ctx, root, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Pin(ctx, root); err != nil {
		t.Fatal(err)
	}
	cfg := b.store.cfg
	dir := b.store.flat.dir
	b.store.Close()
	// The crash: b's last blocks were not synced and one came back empty.
	os.WriteFile(filepath.Join(dir, markerName), nil, 0o644)
	shards, _ := os.ReadDir(dir)
	var victim string
	for _, sh := range shards {
		if files, _ := os.ReadDir(filepath.Join(dir, sh.Name())); sh.Name() != ".tmp" && len(files) > 0 {
			victim = filepath.Join(dir, sh.Name(), files[0].Name())
			break
		}
	}
	if victim == "" {
		t.Fatal("no block files")
	}
	os.Truncate(victim, 0)

	s, err := New(ctx, b.p2p.Host, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := b.p2p.Host.Connect(ctx, peer.AddrInfo{ID: a.p2p.Host.ID(), Addrs: a.p2p.Host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		bad, err := s.Verify(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(bad) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pins still incomplete: %v", bad)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var buf bytes.Buffer
	if err := s.Cat(ctx, root, &buf); err != nil || !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("cat after recovery: %v", err)
	}
}

// Blocks of any length, at any address, come back as they went in,
// through the page cache, with direct I/O, and where the filesystem
// refuses direct I/O (tmpfs).
func TestFlatStoreOddBlocks(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		dir    string
		direct bool
	}{{t.TempDir(), false}, {t.TempDir(), true}, {"/dev/shm", true}} {
		if _, err := os.Stat(tc.dir); err != nil {
			continue
		}
		dir, err := os.MkdirTemp(tc.dir, "flat")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		f, _, err := openFlatStore(dir, blockstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore())), tc.direct, slog.Default())
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, size := range []int{flatMin, flatMin + 1, 70000, 1 << 20, 1<<20 + 4095, 2 << 20} {
			data := make([]byte, size+1)
			rand.Read(data)
			data = data[1:] // not aligned
			h, _ := mh.Sum(data, mh.SHA2_256, -1)
			b, _ := bl.NewBlockWithCid(data, cid.NewCidV1(cid.Raw, h))
			if err := f.Put(ctx, b); err != nil {
				t.Fatalf("%s: put %d: %v", dir, size, err)
			}
			got, err := f.Get(ctx, b.Cid())
			if err != nil || !bytes.Equal(got.RawData(), data) {
				t.Fatalf("%s: block of %d bytes: %v", dir, size, err)
			}
			if n, _ := f.GetSize(ctx, b.Cid()); n != size {
				t.Fatalf("%s: size %d, want %d", dir, n, size)
			}
		}
		// The switch takes effect: direct I/O where asked and the
		// filesystem has it, the page cache otherwise.
		if want := tc.direct && takesDirect(t, dir); f.buffered.Load() == want {
			t.Errorf("%s, direct %v: buffered %v, want %v", dir, tc.direct, f.buffered.Load(), !want)
		}
	}
}

// takesDirect says whether files in dir can be opened for direct I/O.
func takesDirect(t *testing.T, dir string) bool {
	path := filepath.Join(dir, "probe")
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	defer unix.Close(fd)
	return setDirect(fd)
}

// A file written through directFile holds exactly what was written, for
// writes of any size and alignment.
func TestDirectFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if !setDirect(fd) {
		unix.Close(fd)
		t.Skip("no direct I/O here")
	}
	d := &directFile{fd: fd, path: path}
	var want []byte
	for _, size := range []int{1 << 20, 4096, 1, 70000, 1 << 20, 5 << 20, 12345, 1 << 20} {
		b := alignedBuf(size + 1)
		rand.Read(b)
		p := b[:size]
		if size == 1 || size == 12345 {
			p = b[1 : size+1] // not aligned
		}
		if _, err := d.Write(p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p...)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, want %d (%v)", len(got), len(want), err)
	}
}
