package content

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"
)

type testNode struct {
	p2p   *p2p.Node
	store *Store
}

// line starts n nodes on loopback connected in a line: 0-1-2-... Each
// bootstraps only from its left neighbour and refreshes nothing, so node 0
// and node 2 are not connected: content must be found through the DHT.
func line(t *testing.T, n int, cfg Config) []testNode {
	t.Helper()
	ctx := context.Background()
	// Ended after the nodes closed (cleanups run last first): GossipSub
	// runs under the context p2p.New is given, and stops only with it.
	// The stores' context never ends: Close alone must stop them.
	p2pCtx, stopP2P := context.WithCancel(ctx)
	t.Cleanup(stopP2P)
	var out []testNode
	for i := 0; i < n; i++ {
		pc := p2p.Config{Network: "content", NoNAT: true, DHTRefresh: -1}
		if i > 0 {
			prev := out[i-1].p2p
			pc.Bootstrap = []peer.AddrInfo{{ID: prev.Host.ID(), Addrs: prev.Host.Addrs()}}
		}
		pn, err := p2p.New(p2pCtx, pc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pn.Close() })
		if err := pn.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.Datastore = dssync.MutexWrap(ds.NewMapDatastore())
		if c.BlocksDir == "" {
			c.BlocksDir = t.TempDir() // large blocks as files, as the daemon keeps them
		}
		c.Routing = pn.DHT
		st, err := New(ctx, pn.Host, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := st.Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		})
		out = append(out, testNode{pn, st})
	}
	return out
}

func writeRandom(t *testing.T, path string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func intp(i int) *int    { return &i }
func boolp(b bool) *bool { return &b }

// Known CIDs that Kubo's `ipfs add` gives for the same input and settings.
func TestKuboCIDs(t *testing.T) {
	nodes := line(t, 1, Config{})
	s := nodes[0].store
	dir := t.TempDir()
	hello := filepath.Join(dir, "hello")
	os.WriteFile(hello, []byte("hello world\n"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	hello2 := filepath.Join(dir, "hello2")
	os.WriteFile(hello2, []byte("hello world"), 0o644)
	emptyDir := filepath.Join(dir, "emptydir")
	os.Mkdir(emptyDir, 0o755)
	kubo := AddOptions{CIDVersion: intp(0), Chunker: "size-262144"}
	for _, tc := range []struct {
		name, path string
		opts       AddOptions
		want       string
	}{
		{"hello, Kubo defaults", hello, kubo, "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"},
		{"empty file, Kubo defaults", empty, kubo, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"},
		{"empty directory, Kubo defaults", emptyDir, kubo, "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"},
		{"hello (no newline), --cid-version 1", hello2, AddOptions{}, "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"},
	} {
		c, err := s.Add(context.Background(), tc.path, tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.String() != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, c, tc.want)
		}
	}
	if _, err := s.Add(context.Background(), hello, AddOptions{CIDVersion: intp(0), RawLeaves: boolp(true)}); err == nil {
		t.Error("raw leaves with CIDv0 accepted")
	}
	if _, err := s.Add(context.Background(), hello, AddOptions{Chunker: "size-x"}); err == nil || !strings.Contains(err.Error(), `chunker "size-x"`) {
		t.Errorf("bad chunker: %v", err)
	}
}

// lineFixture is three nodes in a line, A holding a 64 MiB file and a
// tree, which C fetched through B.
type lineFixture struct {
	ctx              context.Context
	a, c             *Store
	fileCID, treeCID cid.Cid
}

func TestThreeNodesInALine(t *testing.T) {
	nodes := line(t, 3, Config{FindTimeout: 5 * time.Second, FirstBlockTimeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := &lineFixture{ctx: ctx, a: nodes[0].store, c: nodes[2].store}
	src := t.TempDir()
	data := f.addOnA(t, src)
	// The DHT's first walk may have joined A and C; part them, so that C
	// must find A as a provider through B.
	nodes[2].p2p.Host.Network().ClosePeer(nodes[0].p2p.Host.ID())
	f.getOnC(t, src, data)
	t.Run("CAR round trip and a truncated CAR", f.testCARRoundTrip)
	t.Run("gc keeps pinned data and drops the rest", f.testGC)
	t.Run("a CID nobody has", f.testNobodyHas)
	t.Run("limits", f.testLimits)
}

// addOnA writes a 64 MiB file and a tree under src, adds both to A and
// returns the file's bytes.
func (f *lineFixture) addOnA(t *testing.T, src string) []byte {
	data := writeRandom(t, filepath.Join(src, "big.bin"), 64<<20)
	os.MkdirAll(filepath.Join(src, "tree", "sub", "deeper"), 0o755)
	writeRandom(t, filepath.Join(src, "tree", "a.txt"), 1000)
	writeRandom(t, filepath.Join(src, "tree", "sub", "b.bin"), 3<<20)
	os.WriteFile(filepath.Join(src, "tree", "sub", "deeper", "c"), []byte("c"), 0o644)
	var err error
	if f.fileCID, err = f.a.Add(f.ctx, filepath.Join(src, "big.bin"), AddOptions{Pin: true}); err != nil {
		t.Fatal(err)
	}
	if f.treeCID, err = f.a.Add(f.ctx, filepath.Join(src, "tree"), AddOptions{Pin: true}); err != nil {
		t.Fatal(err)
	}
	return data
}

// getOnC gets the file and the tree on C and checks them against src.
func (f *lineFixture) getOnC(t *testing.T, src string, data []byte) {
	out := t.TempDir()
	stats, err := f.c.Get(f.ctx, f.fileCID, filepath.Join(out, "big.bin"), nil)
	if err != nil {
		t.Fatalf("get file on C: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(out, "big.bin"))
	if !bytes.Equal(got, data) {
		t.Fatalf("file differs: %d bytes vs %d", len(got), len(data))
	}
	if stats.Fetched == 0 {
		t.Fatal("C fetched nothing")
	}
	if _, err := f.c.Get(f.ctx, f.treeCID, filepath.Join(out, "tree"), nil); err != nil {
		t.Fatalf("get tree on C: %v", err)
	}
	for _, name := range []string{"a.txt", "sub/b.bin", "sub/deeper/c"} {
		want, _ := os.ReadFile(filepath.Join(src, "tree", name))
		got, err := os.ReadFile(filepath.Join(out, "tree", name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("tree/%s differs: %v", name, err)
		}
	}
	// A second fetch finds everything local.
	again, err := f.c.Fetch(f.ctx, f.fileCID, nil)
	if err != nil || again.Fetched != 0 {
		t.Fatalf("refetch: %+v, %v", again, err)
	}
}

func (f *lineFixture) testCARRoundTrip(t *testing.T) {
	ctx := f.ctx
	var car bytes.Buffer
	if err := f.a.ExportCAR(ctx, f.treeCID, &car); err != nil {
		t.Fatal(err)
	}
	fresh := line(t, 1, Config{})[0].store
	trunc := car.Bytes()[:car.Len()-100]
	if _, err := fresh.ImportCAR(ctx, bytes.NewReader(trunc)); err == nil {
		t.Fatal("truncated CAR accepted")
	}
	if pins, _ := fresh.Pins(ctx); len(pins) != 0 {
		t.Fatalf("truncated CAR left pins %v", pins)
	}
	res, err := fresh.ImportCAR(ctx, bytes.NewReader(car.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Roots) != 1 || !res.Roots[0].Equals(f.treeCID) {
		t.Fatalf("roots %v", res.Roots)
	}
	if err := fresh.complete(ctx, f.treeCID); err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(car.Bytes())
	corrupt[len(corrupt)-10] ^= 0xff
	if _, err := line(t, 1, Config{})[0].store.ImportCAR(ctx, bytes.NewReader(corrupt)); err == nil || !strings.Contains(err.Error(), "corrupted") {
		t.Fatalf("corrupted CAR: %v", err)
	}
}

func (f *lineFixture) testGC(t *testing.T) {
	// C fetched but did not pin; pin the tree only.
	if err := f.c.Pin(f.ctx, f.treeCID); err != nil {
		t.Fatal(err)
	}
	res, err := f.c.GC(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed == 0 || res.Bytes < 64<<20 {
		t.Fatalf("gc: %+v", res)
	}
	if err := f.c.complete(f.ctx, f.treeCID); err != nil {
		t.Fatalf("pinned tree lost: %v", err)
	}
	if has, _ := f.c.bs.Has(f.ctx, f.fileCID); has {
		t.Fatal("unpinned file survived gc")
	}
}

func (f *lineFixture) testNobodyHas(t *testing.T) {
	nobody, _ := cid.Parse("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")
	start := time.Now()
	_, err := f.c.Fetch(f.ctx, nobody, nil)
	if !errors.Is(err, ErrNoProviders) {
		t.Fatalf("err %v, want the find timeout's", err)
	}
	t.Logf("failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

func (f *lineFixture) testLimits(t *testing.T) {
	small := line(t, 1, Config{MaxDAGBytes: 1 << 20})[0].store
	var car bytes.Buffer
	if err := f.a.ExportCAR(f.ctx, f.fileCID, &car); err != nil {
		t.Fatal(err)
	}
	if _, err := small.ImportCAR(f.ctx, &car); err != nil {
		t.Fatal(err)
	}
	if _, err := small.Fetch(f.ctx, f.fileCID, nil); !errors.Is(err, ErrTooBig) {
		t.Fatalf("err %v, want the size limit", err)
	}
	cbor, _ := cid.Parse("bafyreigdmqpykrgxyaxtlafqpqhzrb7qy2rh75nldvfd4tucqmgfgdbzxe")
	if _, err := small.Fetch(f.ctx, cbor, nil); !errors.Is(err, ErrUnsupportedCodec) {
		t.Fatalf("dag-cbor: %v", err)
	}
}

// A Store created after its host connected must still ask those peers for
// blocks. Healing is off, so only the adoption of earlier connections can
// make the fetch succeed.
func TestStoreAdoptsEarlierConnections(t *testing.T) {
	nodes := line(t, 2, Config{HealAfter: -1, FirstBlockTimeout: 10 * time.Second})
	a, b := nodes[0], nodes[1] // b dialed a before b's Store existed
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "f")
	want := writeRandom(t, path, 3<<20)
	root, err := a.store.Add(ctx, path, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := b.store.Cat(ctx, root, &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatal("fetched bytes differ")
	}
}
