package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestDataAcrossThreeDaemons(t *testing.T) {
	d := &dataTest{t: t, out: t.TempDir()}
	d.startChain()
	d.addOnA()
	d.fetchOnC()
	d.carIntoD()
	d.gcOnC()
	d.gatewayOnA()
	d.fetchErrors()
}

// dataTest is TestDataAcrossThreeDaemons' daemons, A to B to C, and what
// its phases add to A and fetch on C.
type dataTest struct {
	t               *testing.T
	a, c            string // the repos at the ends of the chain
	out             string // where C writes what it gets
	data            []byte // the file's bytes
	fileCID, dirCID string
}

// startChain starts A, B bootstrapped from A, and C from B, so C reaches
// A's content only through the DHT.
func (d *dataTest) startChain() {
	t := d.t
	a, b, c := initRepo(t, "clitest"), initRepo(t, "clitest"), initRepo(t, "clitest")
	d.a, d.c = a, c
	startDaemon(t, a)
	var idA, idB idInfo
	runJSON(t, a, &idA, "id")
	startDaemon(t, b, "--bootstrap", idA.Addrs[0])
	runJSON(t, b, &idB, "id")
	dc := startDaemon(t, c, "--bootstrap", idB.Addrs[0], "--log-level", "debug")
	t.Cleanup(func() {
		if t.Failed() {
			dc.cmd.Process.Signal(syscall.SIGQUIT)
			<-dc.done
			t.Logf("daemon c's log and goroutines when the test failed:\n%s", dc.stderr.Bytes())
		}
	})
}

// addOnA adds and pins a file of 8 MiB and more, and a directory, on A.
func (d *dataTest) addOnA() {
	t, a := d.t, d.a
	src := t.TempDir()
	d.data = make([]byte, 8<<20+12345)
	rand.Read(d.data)
	os.WriteFile(filepath.Join(src, "model.bin"), d.data, 0o644)
	os.MkdirAll(filepath.Join(src, "ds", "train"), 0o755)
	os.WriteFile(filepath.Join(src, "ds", "train", "x.csv"), []byte("1,2,3\n"), 0o644)
	os.WriteFile(filepath.Join(src, "ds", "README"), []byte("a dataset\n"), 0o644)

	var added struct {
		CID string `json:"cid"`
	}
	runJSON(t, a, &added, "data", "add", "--pin", filepath.Join(src, "model.bin"))
	var dir struct {
		CID string `json:"cid"`
	}
	runJSON(t, a, &dir, "data", "add", "--pin", filepath.Join(src, "ds"))
	if !strings.HasPrefix(added.CID, "bafy") || !strings.HasPrefix(dir.CID, "bafy") {
		t.Fatalf("cids %s %s", added.CID, dir.CID)
	}
	d.fileCID, d.dirCID = added.CID, dir.CID
}

// fetchOnC gets, cats and lists on C what A added, and refuses to
// overwrite or to write where it cannot.
func (d *dataTest) fetchOnC() {
	t, a, c, out, data := d.t, d.a, d.c, d.out, d.data
	var got1 struct {
		From []string `json:"from"`
		MiBs float64  `json:"mib_s"`
	}
	runJSON(t, c, &got1, "data", "get", d.fileCID, "-o", filepath.Join(out, "model.bin"))
	// Progress names who sent the blocks (A, the only one that has them)
	// and the rate.
	var idA2 idInfo
	runJSON(t, a, &idA2, "id")
	if len(got1.From) != 1 || got1.From[0] != idA2.PeerID || got1.MiBs <= 0 {
		t.Fatalf("data get --json: from %v at %.1f MiB/s, want A (%s) and a rate", got1.From, got1.MiBs, idA2.PeerID)
	}
	got, _ := os.ReadFile(filepath.Join(out, "model.bin"))
	if !bytes.Equal(got, data) {
		t.Fatalf("C got %d bytes, want %d identical", len(got), len(data))
	}
	mustRun(t, c, "data", "get", d.dirCID, "-o", filepath.Join(out, "ds"))
	if b, _ := os.ReadFile(filepath.Join(out, "ds", "train", "x.csv")); string(b) != "1,2,3\n" {
		t.Fatalf("ds/train/x.csv = %q", b)
	}
	if cat := mustRun(t, c, "data", "cat", d.fileCID); cat != string(data) {
		t.Fatalf("cat gave %d bytes, want %d identical", len(cat), len(data))
	}
	var entries []struct {
		Name string `json:"name"`
	}
	runJSON(t, c, &entries, "data", "ls", d.dirCID)
	if len(entries) != 2 || entries[0].Name != "README" || entries[1].Name != "train" {
		t.Fatalf("ls: %+v", entries)
	}
	checkOneLineError(t, run(t, c, "data", "get", d.fileCID, "-o", filepath.Join(out, "model.bin")), "exists; not overwriting it")
	// The daemon writes -o itself: a place it cannot write is refused up front.
	checkOneLineError(t, run(t, c, "data", "get", d.fileCID, "-o", filepath.Join(out, "no", "such", "f")), "create the directory first")
}

// carIntoD: a CAR out of A, into a fresh D, which pins it; a cut CAR is
// refused.
func (d *dataTest) carIntoD() {
	t, out := d.t, d.out
	car := filepath.Join(out, "ds.car")
	mustRun(t, d.a, "data", "export", d.dirCID, "-o", car)
	repoD := initRepo(t, "clitest")
	startDaemon(t, repoD)
	var imp struct {
		Roots []map[string]string `json:"roots"`
	}
	runJSON(t, repoD, &imp, "data", "import", car)
	if len(imp.Roots) != 1 || imp.Roots[0]["/"] != d.dirCID {
		t.Fatalf("import roots %v, want [%s]", imp.Roots, d.dirCID)
	}
	var pins []string
	runJSON(t, repoD, &pins, "data", "pin", "ls")
	if len(pins) != 1 || pins[0] != d.dirCID {
		t.Fatalf("pins on D after import: %v", pins)
	}
	whole, _ := os.ReadFile(car)
	os.WriteFile(filepath.Join(out, "cut.car"), whole[:len(whole)-20], 0o644)
	checkOneLineError(t, run(t, repoD, "data", "import", filepath.Join(out, "cut.car")), "truncated or corrupted")
}

// gcOnC: the file C fetched is not pinned there, so gc removes it.
func (d *dataTest) gcOnC() {
	var gc struct {
		Removed int `json:"removed"`
	}
	runJSON(d.t, d.c, &gc, "data", "gc")
	if gc.Removed < 8 {
		d.t.Fatalf("gc removed %d blocks", gc.Removed)
	}
}

// gatewayOnA: A's trustless gateway serves the raw root block and a CAR.
func (d *dataTest) gatewayOnA() {
	t := d.t
	var full idInfo
	runJSON(t, d.a, &full, "id")
	for format, ctype := range map[string]string{"raw": "application/vnd.ipld.raw", "car": "application/vnd.ipld.car"} {
		resp, err := http.Get(full.Gateway + "/ipfs/" + d.dirCID + "?format=" + format)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(body) == 0 {
			t.Fatalf("gateway %s: %d %s %d bytes", format, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
}

// fetchErrors: content nobody has, and a CID that is none, are clear
// one-line errors.
func (d *dataTest) fetchErrors() {
	t, c := d.t, d.c
	checkOneLineError(t, run(t, c, "data", "get", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "-o", filepath.Join(d.out, "none")), "no providers found (find timeout)")
	checkOneLineError(t, run(t, c, "data", "get", "not-a-cid"), `cid: "not-a-cid" is not a CID`)
	// cat streams; a failure before its first byte is still a clear error.
	checkOneLineError(t, run(t, c, "data", "cat", "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"), "no providers found (find timeout)")
}
