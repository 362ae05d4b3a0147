package content

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	"github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/exchange/offline"
	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/boxo/pinning/pinner/dspinner"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	ipld "github.com/ipfs/go-ipld-format"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
)

// offlineStore is a Store without a network: blockstore, DAG and pins over
// one in-memory datastore, enough for the code that reads what peers sent.
func offlineStore(t testing.TB) *Store {
	t.Helper()
	d := dssync.MutexWrap(ds.NewMapDatastore())
	bs := blockstore.NewGCBlockstore(blockstore.NewIdStore(blockstore.NewBlockstore(d)), blockstore.NewGCLocker())
	off := blockservice.New(bs, offline.Exchange(bs))
	s := &Store{cfg: Config{Datastore: d, MaxDAGBytes: 64 << 20, MaxDepth: 64, ResultTTL: -1,
		FirstBlockTimeout: time.Minute, StallTimeout: time.Minute}, log: slog.Default(), bs: bs, offline: off}
	s.local = merkledag.NewDAGService(off)
	s.dag = s.local
	s.links = linksOnly{s.local, bs}
	pins, err := dspinner.New(context.Background(), d, s.links)
	if err != nil {
		t.Fatal(err)
	}
	s.pins = pins
	return s
}

// fuzzFixtures are blocks a fuzzed root may link: a raw leaf, a file, a
// symlink out of the tree, a directory.
func fuzzFixtures(t testing.TB, s *Store) []ipld.Node {
	leaf := merkledag.NewRawNode([]byte("leaf data"))
	fsn := ft.NewFSNode(ft.TFile)
	fsn.AddBlockSize(uint64(len(leaf.RawData())))
	fsn.AddBlockSize(uint64(len(leaf.RawData())))
	data, _ := fsn.GetBytes()
	file := v1(merkledag.NodeWithData(data))
	file.AddRawLink("", &ipld.Link{Cid: leaf.Cid()})
	file.AddRawLink("", &ipld.Link{Cid: leaf.Cid()})
	sl, _ := ft.SymlinkData("/etc")
	link := v1(merkledag.NodeWithData(sl))
	dir := v1(ft.EmptyDirNode())
	dir.AddRawLink("f", &ipld.Link{Cid: file.Cid()})
	dir.AddRawLink("l", &ipld.Link{Cid: link.Cid()})
	nds := []ipld.Node{leaf, file, link, dir}
	for _, nd := range nds {
		if err := s.local.Add(context.Background(), nd); err != nil {
			t.Fatal(err)
		}
	}
	return nds
}

// FuzzGetTree gets a fuzzed dag-pb root (as a peer sent it) that may link
// the fixtures, under a small limit. Whatever the bytes, nothing is written
// outside the output, and a refused tree leaves no output. A file, which
// Get writes block by block at the offsets its nodes declare, must hold
// exactly what reading its leaves in order gives.
func FuzzGetTree(f *testing.F) {
	seed := offlineStore(f)
	fx := fuzzFixtures(f, seed)
	for _, nd := range fx {
		f.Add(nd.RawData())
	}
	dup := v1(ft.EmptyDirNode())
	dup.AddRawLink("a", &ipld.Link{Cid: fx[2].Cid()})
	dup.AddRawLink("a", &ipld.Link{Cid: fx[3].Cid()})
	f.Add(dup.RawData())
	bad := v1(ft.EmptyDirNode())
	bad.AddRawLink("../x", &ipld.Link{Cid: fx[1].Cid()})
	f.Add(bad.RawData())
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x08, 0x02})
	// Files: inline data before the links, a size that lies, a leaf twice
	// through two parents.
	for _, sizes := range [][]uint64{{9, 9}, {9, 8}, {20, 9}, {9}} {
		fsn := ft.NewFSNode(ft.TFile)
		fsn.SetData([]byte("inline"))
		for _, n := range sizes {
			fsn.AddBlockSize(n)
		}
		data, _ := fsn.GetBytes()
		nd := v1(merkledag.NodeWithData(data))
		nd.AddRawLink("", &ipld.Link{Cid: fx[0].Cid()})
		if len(sizes) > 1 {
			nd.AddRawLink("", &ipld.Link{Cid: fx[1].Cid()})
		}
		f.Add(nd.RawData())
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		pn, err := merkledag.DecodeProtobuf(b)
		if err != nil {
			return
		}
		pn = v1(pn)
		s := offlineStore(t)
		fuzzFixtures(t, s)
		if err := s.local.Add(context.Background(), pn); err != nil {
			return
		}
		base := t.TempDir()
		out := filepath.Join(base, "out")
		s.cfg.MaxDepth = 16
		_, err = s.GetWith(context.Background(), pn.Cid(), out, GetOptions{MaxBytes: 1 << 20})
		ents, _ := os.ReadDir(base)
		if err != nil {
			if _, serr := os.Lstat(out); serr == nil {
				t.Fatalf("refused (%v) but left %s", err, out)
			}
			if len(ents) != 0 {
				t.Fatalf("refused (%v) but left %v", err, ents)
			}
			return
		}
		if len(ents) != 1 || ents[0].Name() != "out" {
			t.Fatalf("wrote %v beside the output", ents)
		}
		if ents[0].Type().IsRegular() {
			var want bytes.Buffer
			tr := &tree{dag: s.local, root: pn.Cid(), lim: limit{1 << 20, "test"}, maxDepth: 16}
			n, err := tr.get(context.Background(), pn.Cid())
			if err == nil {
				err = tr.plan(context.Background(), n, 0)
			}
			if err == nil {
				err = tr.writeFile(context.Background(), &fileWriter{f: &want, left: n.size()}, n, 0)
			}
			got, _ := os.ReadFile(out)
			if err != nil || !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("file of %d bytes written; reading its leaves in order gives %d bytes (%v)", len(got), want.Len(), err)
			}
		}
		// Nothing under out is anything but a file, directory or symlink.
		filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			if m := d.Type(); m&^(fs.ModeDir|fs.ModeSymlink) != 0 {
				t.Fatalf("%s has mode %v", p, m)
			}
			return nil
		})
	})
}

// FuzzImportCAR feeds `data import` arbitrary CAR bytes: it must refuse
// or import, never panic, and never pin an incomplete DAG.
func FuzzImportCAR(f *testing.F) {
	s := offlineStore(f)
	fx := fuzzFixtures(f, s)
	var car bytes.Buffer
	w, err := storage.NewWritable(&car, []cid.Cid{fx[3].Cid()}, carv2.WriteAsCarV1(true))
	if err != nil {
		f.Fatal(err)
	}
	for _, nd := range fx {
		w.Put(context.Background(), nd.Cid().KeyString(), nd.RawData())
	}
	w.Finalize()
	f.Add(car.Bytes())
	f.Add(car.Bytes()[:car.Len()/2])
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		s := offlineStore(t)
		res, err := s.ImportCAR(context.Background(), bytes.NewReader(b))
		if err != nil {
			if pins, _ := s.Pins(context.Background()); len(pins) != 0 {
				t.Fatalf("refused (%v) but pinned %v", err, pins)
			}
			return
		}
		for _, r := range res.Roots {
			if err := s.complete(context.Background(), r); err != nil {
				t.Fatalf("pinned an incomplete root: %v", err)
			}
		}
	})
}

// countingDAG counts the nodes a walk reads.
type countingDAG struct {
	ipld.DAGService
	gets atomic.Int64
}

func (d *countingDAG) Get(ctx context.Context, c cid.Cid) (ipld.Node, error) {
	d.gets.Add(1)
	return d.DAGService.Get(ctx, c)
}

// fuzzDAG builds a file DAG from b, as a hostile peer would: up to 8
// nodes, each a raw leaf of up to 40 bytes or a file node with a little
// inline data and up to 64 links to earlier nodes, each link declaring
// its child's size, 0, one byte more, or a size from b. The last node is
// the root. Shapes include fan-outs of one child linked many times over
// several levels (up to 64^7 paths).
func fuzzDAG(t testing.TB, s *Store, b []byte) ipld.Node {
	next := func() byte {
		if len(b) == 0 {
			return 0
		}
		c := b[0]
		b = b[1:]
		return c
	}
	var nds []ipld.Node
	var sizes []uint64
	for i := range 1 + int(next()%8) {
		kind := next()
		if i == 0 || kind%4 == 0 {
			leaf := merkledag.NewRawNode(bytes.Repeat([]byte{byte('a' + i)}, int(kind%41)))
			nds, sizes = append(nds, leaf), append(sizes, uint64(len(leaf.RawData())))
			continue
		}
		fsn := ft.NewFSNode(ft.TFile)
		fsn.SetData(bytes.Repeat([]byte{'i'}, int(kind>>6)))
		nd := v1(new(merkledag.ProtoNode))
		m := int(next() % 65)
		for range m {
			j := int(next()) % i
			size := sizes[j]
			switch next() % 8 {
			case 0:
				size = 0
			case 1:
				size++
			case 2:
				size = uint64(next())
			}
			fsn.AddBlockSize(size)
			nd.AddRawLink("", &ipld.Link{Cid: nds[j].Cid(), Size: size})
		}
		data, _ := fsn.GetBytes()
		nd.SetData(data)
		nds, sizes = append(nds, nd), append(sizes, fsn.FileSize())
	}
	for _, nd := range nds {
		if err := s.local.Add(context.Background(), nd); err != nil {
			t.Fatal(err)
		}
	}
	return nds[len(nds)-1]
}

// FuzzFileWalk runs every walk a stranger's CID reaches (get of the file
// and of a directory holding it twice, cat, CAR export, the gateway's
// costing of a walk of every path) over a fuzzed file DAG under a 1 MiB
// limit. Whatever the shape, each walk ends, reads at most about
// limit/LinkCost nodes (each link followed costs LinkCost), and
// allocates a bounded amount; a file it writes is what cat gives, and
// never more than the limit.
func FuzzFileWalk(f *testing.F) {
	// One leaf; a file of a leaf repeated; fan-outs of one child linked
	// k times over a few levels, declaring the child's size (mode 3), 0
	// (mode 0) or one byte more (mode 1).
	f.Add([]byte{0, 5})
	f.Add([]byte{1, 9, 1, 4, 0, 3, 0, 3, 0, 3, 0, 3})
	fan := func(levels, k int, leaf, sizeMode byte) []byte {
		b := []byte{byte(levels), leaf}
		for i := 1; i <= levels; i++ {
			b = append(b, 1, byte(k))
			for range k {
				b = append(b, byte(i-1), sizeMode)
			}
		}
		return b
	}
	f.Add(fan(3, 4, 1, 3))   // 64 paths: written
	f.Add(fan(3, 64, 1, 3))  // 262,144 paths of one byte: over the limit by links
	f.Add(fan(7, 64, 40, 3)) // 64^7 paths: over the limit by bytes
	f.Add(fan(3, 64, 0, 3))  // an empty leaf: links declare 0
	f.Add(fan(7, 64, 1, 0))  // links declare 0
	f.Add(fan(2, 8, 1, 1))   // links declare one byte more
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, b []byte) {
		s := offlineStore(t)
		s.cfg.MaxDAGBytes, s.cfg.MaxDepth = limit, 16
		dag := &countingDAG{DAGService: s.local}
		s.local, s.dag, s.links = dag, dag, linksOnly{dag, s.bs}
		root := fuzzDAG(t, s, b)
		dir := v1(ft.EmptyDirNode())
		dir.AddRawLink("a", &ipld.Link{Cid: root.Cid()})
		dir.AddRawLink("b", &ipld.Link{Cid: root.Cid()})
		if err := s.local.Add(context.Background(), dir); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		base := t.TempDir()
		// Per walk: the unique nodes (9 here) a few times over, and one
		// node per link followed.
		const maxGets = 2*limit/LinkCost + 64
		var ms runtime.MemStats
		walk := func(what string, op func() error) error {
			runtime.ReadMemStats(&ms)
			alloc := ms.TotalAlloc
			dag.gets.Store(0)
			err := op()
			if n := dag.gets.Load(); n > maxGets {
				t.Fatalf("%s read %d nodes (%v), over %d", what, n, err, maxGets)
			}
			runtime.ReadMemStats(&ms)
			if a := ms.TotalAlloc - alloc; a > 64<<20 {
				t.Fatalf("%s allocated %d MiB (%v)", what, a>>20, err)
			}
			return err
		}
		out := filepath.Join(base, "file")
		getErr := walk("get", func() error {
			_, err := s.Get(ctx, root.Cid(), out, nil)
			return err
		})
		walk("get of a directory", func() error {
			_, err := s.Get(ctx, dir.Cid(), filepath.Join(base, "dir"), nil)
			return err
		})
		var cat bytes.Buffer
		catErr := walk("cat", func() error { return s.Cat(ctx, root.Cid(), &cat) })
		walk("car export", func() error { return s.ExportCAR(ctx, root.Cid(), io.Discard) })
		walk("gateway costing", func() error { return s.costPaths(ctx, root.Cid(), true) })
		if ctx.Err() != nil {
			t.Fatal("the walks ran a minute")
		}
		if (getErr == nil) != (catErr == nil) {
			t.Fatalf("get: %v, but cat: %v", getErr, catErr)
		}
		if getErr == nil {
			got, _ := os.ReadFile(out)
			if !bytes.Equal(got, cat.Bytes()) || len(got) > limit {
				t.Fatalf("get wrote %d bytes, cat gave %d", len(got), cat.Len())
			}
		}
	})
}
