package content

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	"github.com/ipfs/boxo/ipld/unixfs/importer/trickle"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
)

// fanOut builds, as a hostile peer would, a UnixFS file of depth levels
// whose every node links one child k times, each link declaring the
// child's size, down to a raw leaf of leafSize bytes (zero: empty). Its
// blocks are a few KB; the paths through it number k^depth.
func fanOut(t testing.TB, s *Store, k, depth, leafSize int) ipld.Node {
	t.Helper()
	var child ipld.Node = merkledag.NewRawNode(bytes.Repeat([]byte{'z'}, leafSize))
	size := uint64(leafSize)
	nds := []ipld.Node{child}
	for range depth {
		fsn := ft.NewFSNode(ft.TFile)
		nd := v1(new(merkledag.ProtoNode))
		for range k {
			fsn.AddBlockSize(size)
			if err := nd.AddRawLink("", &ipld.Link{Cid: child.Cid(), Size: size}); err != nil {
				t.Fatal(err)
			}
		}
		data, _ := fsn.GetBytes()
		nd.SetData(data)
		nds = append(nds, nd)
		child, size = nd, size*uint64(k)
	}
	for _, nd := range nds {
		if err := s.local.Add(context.Background(), nd); err != nil {
			t.Fatal(err)
		}
	}
	return child
}

// measure runs op and logs how long it took and what it allocated.
func measure(t *testing.T, what string, op func() error) error {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	err := op()
	el := time.Since(start)
	runtime.ReadMemStats(&after)
	t.Logf("%s: %v, allocated %d MiB, heap now %d MiB: %v", what, el.Round(time.Millisecond),
		(after.TotalAlloc-before.TotalAlloc)>>20, after.HeapInuse>>20, err)
	return err
}

// hostileWalks runs every walk a stranger's CID reaches (get of the file,
// get of a directory holding it, cat, CAR export, the gateway's CAR with
// the file's entity and with duplicates) under one deadline, and gives
// each one's error (nil when it wrote the DAG out, a CAR of at most
// maxOut bytes included).
func hostileWalks(t *testing.T, s *Store, root ipld.Node, maxOut int64) map[string]error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := dirOf(t, s, link("f", root))
	errs := map[string]error{}
	errs["get"] = measure(t, "get", func() error {
		_, err := s.Get(ctx, root.Cid(), filepath.Join(t.TempDir(), "out"), nil)
		return err
	})
	errs["tree"] = measure(t, "get of a directory", func() error {
		_, err := s.Get(ctx, dir.Cid(), filepath.Join(t.TempDir(), "out"), nil)
		return err
	})
	errs["cat"] = measure(t, "cat", func() error {
		return s.Cat(ctx, root.Cid(), io.Discard)
	})
	errs["car"] = measure(t, "car export", func() error {
		var car countWriter
		err := s.ExportCAR(ctx, root.Cid(), &car)
		if err == nil && car.n > maxOut {
			err = fmt.Errorf("exported %d bytes, over %d", car.n, maxOut)
		}
		return err
	})
	h, err := s.GatewayHandler()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, q := range []string{"dag-scope=entity", "car-dups=y"} {
		errs["gateway "+q] = measure(t, "gateway "+q, func() error {
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/ipfs/"+root.Cid().String()+"?format=car&"+q, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
			}
			n, err := io.Copy(io.Discard, resp.Body)
			switch {
			case err != nil:
				return fmt.Errorf("body cut after %d bytes: %w", n, err)
			case n > maxOut:
				return fmt.Errorf("served %d bytes, over %d", n, maxOut)
			}
			return nil
		})
	}
	return errs
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// N1 of issue 28: a file whose nodes each link one child k times, every
// link declaring size 0, down to an empty leaf. The root declares 0
// bytes, so the byte charge passed, and the old walks followed every one
// of the k^depth paths: the placer kept a span per path and decoded each
// node again per path under its lock, the tree writer recursed into
// every link without looking at its context. Now a file node's link that
// declares 0 bytes is refused, naming the node; the CAR export (which
// visits each block once) writes the few blocks there are, and the
// gateway refuses the walks that would follow every path.
func TestZeroSizeFanOutRefused(t *testing.T) {
	s := offlineStore(t)
	root := fanOut(t, s, 64, 3, 0) // 262,144 paths
	for what, err := range hostileWalks(t, s, root, 1<<20) {
		if what == "car" {
			if err != nil {
				t.Errorf("car export of the unique blocks: %v", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "declares 0 bytes") && !strings.Contains(err.Error(), "status 4") {
			t.Errorf("%s: %v, want a link that declares 0 bytes refused", what, err)
		}
	}
}

// The same shape with 1-byte leaves declares its bytes honestly (256 KiB)
// but has 266,304 links to follow: each costs LinkCost against the
// limit, so it is refused naming the limit, while a small fan-out of the
// same kind, and a file of zeros whose one leaf repeats, still write.
func TestFanOutChargedPerLink(t *testing.T) {
	s := offlineStore(t)
	root := fanOut(t, s, 64, 3, 1)
	for what, err := range hostileWalks(t, s, root, 1<<20) {
		if what == "car" {
			if err != nil {
				t.Errorf("car export of the unique blocks: %v", err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrTooBig) && !strings.Contains(err.Error(), "status 4") {
			t.Errorf("%s: %v, want the fan-out refused by the size limit", what, err)
			continue
		}
		if !strings.Contains(err.Error(), "status 4") && !strings.Contains(err.Error(), MaxDAGSetting) {
			t.Errorf("%s: %v, want the limit named", what, err)
		}
	}

	small := fanOut(t, s, 4, 3, 1)
	for what, err := range hostileWalks(t, s, small, 1<<20) {
		if err != nil {
			t.Errorf("small fan-out, %s: %v", what, err)
		}
	}
	out := filepath.Join(t.TempDir(), "small")
	if _, err := s.Get(context.Background(), small.Cid(), out, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, bytes.Repeat([]byte{'z'}, 64)) {
		t.Fatalf("small fan-out wrote %q", got)
	}
}

// inlineBuilder names blocks of up to 32 bytes by an identity CID, as
// Kubo's `ipfs add --inline` does.
type inlineBuilder struct{ cid.Builder }

func (b inlineBuilder) Sum(data []byte) (cid.Cid, error) {
	if len(data) <= 32 {
		return cid.V1Builder{Codec: b.GetCodec(), MhType: mh.IDENTITY}.Sum(data)
	}
	return b.Builder.Sum(data)
}

func (b inlineBuilder) WithCodec(c uint64) cid.Builder {
	return inlineBuilder{b.Builder.WithCodec(c)}
}

// Honest DAGs still write, however often a block repeats in them: our
// Add of a file of zeros (one leaf, linked again and again), Kubo's
// defaults (CIDv0, dag-pb leaves of 256 KiB, 174 links a node), a trickle
// DAG, and Kubo's --inline with small chunks (identity leaves, repeated).
// Get, get of a directory, cat, CAR export and the gateway all give the
// same bytes, within the 64 MiB limit of the test store.
func TestHonestDAGsStillWrite(t *testing.T) {
	s := offlineStore(t)
	ctx := context.Background()
	dir := t.TempDir()
	zeros := make([]byte, 5<<20+1000)
	copy(zeros[4<<20:], bytes.Repeat([]byte("tail"), 100))
	mixed := slices.Concat(make([]byte, 1<<20), writeRandom(t, filepath.Join(dir, "r"), 700<<10), make([]byte, 600<<10))
	text := bytes.Repeat([]byte("0123456789abcdef"), 300)
	add := func(data []byte, opts AddOptions) ipld.Node {
		p := filepath.Join(dir, "in")
		os.WriteFile(p, data, 0o644)
		c, err := s.Add(ctx, p, opts)
		if err != nil {
			t.Fatal(err)
		}
		nd, err := s.local.Get(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return nd
	}
	layout := func(data []byte, chunk int64, trickleLayout bool, cb cid.Builder) ipld.Node {
		db, err := (&helpers.DagBuilderParams{Maxlinks: helpers.DefaultLinksPerBlock, RawLeaves: true, CidBuilder: cb, Dagserv: s.local}).
			New(chunker.NewSizeSplitter(bytes.NewReader(data), chunk))
		if err != nil {
			t.Fatal(err)
		}
		var nd ipld.Node
		if trickleLayout {
			nd, err = trickle.Layout(db)
		} else {
			nd, err = balanced.Layout(db)
		}
		if err != nil {
			t.Fatal(err)
		}
		return nd
	}
	v1p, _ := merkledag.PrefixForCidVersion(1)
	inline := layout(text, 16, false, inlineBuilder{v1p})
	if l := inline.Links()[0]; l.Cid.Prefix().MhType != mh.IDENTITY {
		if nd, err := s.local.Get(ctx, l.Cid); err != nil || nd.Links()[0].Cid.Prefix().MhType != mh.IDENTITY {
			t.Fatal("the inline file has no identity leaf")
		}
	}
	for _, tc := range []struct {
		name string
		root ipld.Node
		want []byte
	}{
		{"our Add of zeros", add(zeros, AddOptions{}), zeros},
		{"Kubo's defaults", add(mixed, AddOptions{CIDVersion: intp(0), Chunker: "size-262144"}), mixed},
		{"trickle", layout(mixed, 64<<10, true, v1p), mixed},
		{"inline leaves", inline, text},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			if _, err := s.Get(ctx, tc.root.Cid(), out, nil); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(out); !bytes.Equal(got, tc.want) {
				t.Fatalf("get wrote %d bytes, want %d", len(got), len(tc.want))
			}
			var cat bytes.Buffer
			if err := s.Cat(ctx, tc.root.Cid(), &cat); err != nil || !bytes.Equal(cat.Bytes(), tc.want) {
				t.Fatalf("cat gave %d bytes (%v), want %d", cat.Len(), err, len(tc.want))
			}
			for what, err := range hostileWalks(t, s, tc.root, 64<<20) {
				if err != nil {
					t.Errorf("%s: %v", what, err)
				}
			}
		})
	}
}

// A listing stops at a name seen twice: a directory (or a HAMT whose
// shard links one child shard many times) would otherwise be listed once
// per path.
func TestLsRefusesRepeatedNames(t *testing.T) {
	s := offlineStore(t)
	x := repeatedFile(t, s, []byte("x"), 1)
	dup := dirOf(t, s, link("a", x), link("a", x))
	if _, err := s.Ls(context.Background(), dup.Cid()); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("ls of a repeated name: %v, want it refused", err)
	}
	ok := dirOf(t, s, link("a", x), link("b", x))
	if es, err := s.Ls(context.Background(), ok.Cid()); err != nil || len(es) != 2 || es[1].Name != "b" {
		t.Fatalf("ls: %v (%v)", es, err)
	}
}
