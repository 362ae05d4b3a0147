package main

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipfs/boxo/ipld/merkledag"
	ft "github.com/ipfs/boxo/ipld/unixfs"
	"github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
)

// A hostile requester on a testnet tries to reach the provider's host
// through the market: each attack is refused or contained, the job says
// why, and nothing of the host comes back. (node0 is the requester, node1
// the provider; both run on this machine, so "the provider's host" is a
// directory of this test's.)
func TestHostileRequesterOnTestnet(t *testing.T) {
	if testing.Short() {
		t.Skip("a testnet and market jobs")
	}
	jobDocker(t)
	dir := testnetUp(t, "--nodes", "2")
	req := filepath.Join(dir, "node0")
	market := []string{"job", "run", "--gpus", "1", "--max-price", "5"}

	hostDir := t.TempDir()
	writeFile(t, filepath.Join(hostDir, "key"), "the provider's secret")

	t.Run("a symlink as an input's root", func(t *testing.T) {
		l := filepath.Join(t.TempDir(), "link")
		if err := os.Symlink(hostDir, l); err != nil {
			t.Fatal(err)
		}
		cid := strings.TrimSpace(mustRun(t, req, "data", "add", "-q", l))
		r := run(t, req, append(market, "--input", cid+":/inputs/a", jobImage, "--", "cat", "/inputs/a/key")...)
		t.Logf("requester sees: %s", strings.TrimSpace(r.stderr))
		if r.code == 0 || !strings.Contains(r.stderr, "is a symlink") {
			t.Fatalf("job with a symlink input: %+v", r)
		}
		if strings.Contains(r.stdout+r.stderr, "secret") {
			t.Fatalf("the provider's file came back: %+v", r)
		}
	})

	t.Run("env the GPU runtime reads", func(t *testing.T) {
		r := run(t, req, append(market, "-e", "NVIDIA_VISIBLE_DEVICES=all", jobImage, "--", "echo", "x")...)
		t.Logf("requester sees: %s", strings.TrimSpace(r.stderr))
		if r.code == 0 || !strings.Contains(r.stderr, "NVIDIA_VISIBLE_DEVICES") {
			t.Fatalf("NVIDIA_VISIBLE_DEVICES from the spec: %+v", r)
		}
	})

	t.Run("more disk than disk_mib", func(t *testing.T) {
		spec := "name: filler\nimage: " + jobImage + "\nargs: [fill, /outputs/big, \"200\"]\nresources: {gpus: 1, disk_mib: 32}\nmax_price: \"5\"\n"
		id := submitSpec(t, req, spec)
		s := waitState(t, req, id, terminal)
		t.Logf("provider says: %s", s.Reason)
		if s.State != "failed" || !strings.Contains(s.Reason, "disk_mib 32 exceeded") {
			t.Fatalf("a job over its disk: %+v", s)
		}
	})

	t.Run("a DAG bomb as an input", func(t *testing.T) {
		// 1 MiB of blocks that a naive fetch writes 100 times over.
		car, root := bombCAR(t, 1<<20, 100)
		mustRun(t, req, "data", "import", car)
		spec := "name: bomb\nimage: " + jobImage + "\nargs: [echo, x]\ninputs: [{cid: " + root + ", path: /inputs/bomb}]\nresources: {gpus: 1, disk_mib: 32}\nmax_price: \"5\"\n"
		id := submitSpec(t, req, spec)
		s := waitState(t, req, id, terminal)
		t.Logf("provider says: %s", s.Reason)
		if s.State != "failed" || !strings.Contains(s.Reason, "resources.disk_mib") {
			t.Fatalf("a job whose input is a DAG bomb: %+v", s)
		}
	})
}

func submitSpec(t *testing.T, repo, spec string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "job.yaml")
	writeFile(t, p, spec)
	return strings.TrimSpace(mustRun(t, repo, "job", "submit", p))
}

// bombCAR writes a CAR of one UnixFS file whose root links one random leaf
// of size bytes n times, and returns its path and root CID.
func bombCAR(t *testing.T, size, n int) (string, string) {
	t.Helper()
	leaf := make([]byte, size)
	rand.Read(leaf)
	raw := merkledag.NewRawNode(leaf)
	fsn := ft.NewFSNode(ft.TFile)
	root := new(merkledag.ProtoNode)
	p, _ := merkledag.PrefixForCidVersion(1)
	root.SetCidBuilder(p)
	for range n {
		fsn.AddBlockSize(uint64(size))
		if err := root.AddRawLink("", &ipld.Link{Cid: raw.Cid(), Size: uint64(size)}); err != nil {
			t.Fatal(err)
		}
	}
	data, err := fsn.GetBytes()
	if err != nil {
		t.Fatal(err)
	}
	root.SetData(data)
	path := filepath.Join(t.TempDir(), "bomb.car")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := storage.NewWritable(f, []cid.Cid{root.Cid()}, carv2.WriteAsCarV1(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range []ipld.Node{root, raw} {
		if err := w.Put(context.Background(), nd.Cid().KeyString(), nd.RawData()); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finalize(); err != nil {
		t.Fatal(err)
	}
	return path, root.Cid().String()
}
