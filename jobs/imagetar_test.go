package jobs

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aixblock/aixblock/p2p/content"
)

func readArchiveBytes(b []byte) (*imageArchive, error) {
	return readImageArchive(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, int64(len(b)))
}

// tarOf writes entries as given (name, type, body or link target).
func tarOf(t testing.TB, entries ...[3]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e[0], Mode: 0o644, Typeflag: e[1][0]}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e[2]))
		} else {
			h.Linkname = e[2]
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e[2]))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func (a *testArchive) entries() [][3]string {
	var out [][3]string
	for _, n := range a.names {
		if b, ok := a.files[n]; ok {
			out = append(out, [3]string{n, string(tar.TypeReg), string(b)})
		}
	}
	man, _ := json.Marshal(a.manifest)
	return append(out, [3]string{"manifest.json", string(tar.TypeReg), string(man)})
}

// Attack 2, at the parser: every tarball the daemon must not load is
// refused with its reason, and what it does load carries one tag, ours.
func TestImageArchiveRefusals(t *testing.T) {
	prog := []byte("#!not really a program")
	layerOf := func(a *testArchive) string { return a.manifest[0]["Layers"].([]string)[0] }
	for _, tc := range []struct {
		name string
		make func(a *testArchive) []byte
		want string
	}{
		{"two images", func(a *testArchive) []byte {
			a.manifest = append(a.manifest, a.manifest[0])
			return a.bytes(t)
		}, "lists 2 images"},
		{"no manifest", func(a *testArchive) []byte {
			e := a.entries()
			return tarOf(t, e[:len(e)-1]...)
		}, "no manifest.json"},
		{"manifest not JSON", func(a *testArchive) []byte {
			e := a.entries()
			e[len(e)-1][2] = "[{"
			return tarOf(t, e...)
		}, "manifest.json:"},
		{"layer missing", func(a *testArchive) []byte {
			delete(a.files, layerOf(a))
			return a.bytes(t)
		}, "layer 0 \"" + "%s\" is missing"},
		{"layer changed", func(a *testArchive) []byte {
			l := layerOf(a)
			a.files[l] = append([]byte{}, a.files[l]...)
			a.files[l][600] ^= 1
			return a.bytes(t)
		}, "does not match its diff ID"},
		{"more layers than the config", func(a *testArchive) []byte {
			a.manifest[0]["Layers"] = []string{layerOf(a), layerOf(a)}
			return a.bytes(t)
		}, "the config lists 1 layers, manifest.json 2"},
		{"foreign layers", func(a *testArchive) []byte {
			a.manifest[0]["LayerSources"] = map[string]any{"sha256:x": map[string]any{"urls": []string{"http://198.18.0.1/x"}}}
			return a.bytes(t)
		}, "LayerSources"},
		{"config outside", func(a *testArchive) []byte {
			a.manifest[0]["Config"] = "../../etc/passwd"
			return a.bytes(t)
		}, "outside the tarball"},
		{"layer is an absolute symlink", func(a *testArchive) []byte {
			l := layerOf(a)
			e := a.entries()
			for i := range e {
				if e[i][0] == l {
					e[i] = [3]string{l, string(tar.TypeSymlink), "/etc/shadow"}
				}
			}
			return tarOf(t, e...)
		}, "is not a file in the tarball"},
		{"entry twice", func(a *testArchive) []byte {
			e := a.entries()
			return tarOf(t, append([][3]string{e[1]}, e...)...)
		}, "appears twice"},
		{"not a tar", func(a *testArchive) []byte { return []byte("not an image") }, "image tarball refused"},
		{"sparse entry", func(a *testArchive) []byte { return sparseTar(t) }, "is sparse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newArchive(prog, []string{"/jobprog"}, []string{"x:1"})
			want := strings.Replace(tc.want, "%s", layerOf(a), 1)
			_, err := readArchiveBytes(tc.make(a))
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "image tarball refused") {
				t.Fatalf("got %v, want %q", err, want)
			}
		})
	}

	// A layer given as a symlink to another entry (docker save writes
	// those for repeated layers) is followed inside the tarball.
	a := newArchive(prog, []string{"/jobprog"}, []string{"victim:latest", "other:1"})
	l := a.manifest[0]["Layers"].([]string)[0]
	e := a.entries()
	e = append([][3]string{{"copy/layer.tar", string(tar.TypeSymlink), "../" + l}}, e...)
	a.manifest[0]["Layers"] = []string{"copy/layer.tar"}
	man, _ := json.Marshal(a.manifest)
	e[len(e)-1][2] = string(man)
	in := tarOf(t, e...)
	got, err := readArchiveBytes(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Layers, []string{l}) {
		t.Fatalf("layers %q, want %q", got.Layers, l)
	}
	checkRewrite(t, in, got, "aixblock-ipfs/x:latest")
}

// checkRewrite rewrites in and checks the result: config, layers and a
// manifest with tag as its only tag, nothing else.
func checkRewrite(t testing.TB, in []byte, a *imageArchive, tag string) {
	t.Helper()
	var out bytes.Buffer
	if err := writeImageArchive(&out, bytes.NewReader(in), a, tag); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(out.Bytes()))
	names := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			t.Fatalf("%s is not a plain file in the rewritten tarball", h.Name)
		}
		names[h.Name] = true
		if h.Name == "manifest.json" {
			var man []struct{ RepoTags []string }
			b, _ := io.ReadAll(tr)
			if err := json.Unmarshal(b, &man); err != nil || len(man) != 1 || !slices.Equal(man[0].RepoTags, []string{tag}) {
				t.Fatalf("rewritten manifest %s (%v)", b, err)
			}
		}
	}
	want := map[string]bool{"manifest.json": true, a.Config: true}
	for _, l := range a.Layers {
		want[l] = true
	}
	if len(names) != len(want) {
		t.Fatalf("rewritten tarball holds %v, want %v", names, want)
	}
	for n := range want {
		if !names[n] {
			t.Fatalf("rewritten tarball lacks %s", n)
		}
	}
	again, err := readArchiveBytes(out.Bytes())
	if err != nil {
		t.Fatalf("the rewritten tarball does not parse: %v", err)
	}
	if again.Config != a.Config || !slices.Equal(again.Layers, a.Layers) {
		t.Fatalf("rewritten %+v, was %+v", again, a)
	}
}

// FuzzImageArchive feeds the tarball parser what a requester can put in
// an ipfs:// image; whatever it accepts must rewrite to a tarball with one
// image and our tag alone.
func FuzzImageArchive(f *testing.F) {
	prog := []byte("#!not really a program")
	a := newArchive(prog, []string{"/jobprog"}, []string{"victim:latest", "other:1"})
	f.Add(a.bytes(f))
	two := newArchive(prog, nil, []string{"a:1"})
	two.manifest = append(two.manifest, two.manifest[0])
	f.Add(two.bytes(f))
	missing := newArchive(prog, nil, nil)
	delete(missing.files, missing.manifest[0]["Layers"].([]string)[0])
	f.Add(missing.bytes(f))
	f.Add(tarOf(f, [3]string{"manifest.json", string(tar.TypeReg), `[{"Config":"c","Layers":["l"]}]`},
		[3]string{"c", string(tar.TypeReg), `{"rootfs":{"diff_ids":["sha256:x"]}}`}, [3]string{"l", string(tar.TypeSymlink), "l"}))
	f.Add([]byte("not a tar"))
	f.Add(sparseTar(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := readArchiveBytes(b)
		if err != nil {
			return
		}
		checkRewrite(t, b, got, "aixblock-ipfs/fuzz:latest")
	})
}

// The limits and the kind of file are checked before anything is loaded:
// a tarball over the provider's limit, and a CID that is a symlink (which
// would have the engine read a host file) are refused with the reason.
func TestImageTarballRefusedByManager(t *testing.T) {
	d := dockerOrSkip(t)
	dir := t.TempDir()
	_, store := newTestManager(t, d, dir)
	m, err := NewManager(context.Background(), Config{Dir: dir, Runtime: d, Content: store, MockGPUs: true, MaxImageMiB: 1})
	if err != nil {
		t.Fatal(err)
	}
	a := newTestArchive(t, []string{"/jobprog"}, []string{"aixblock-test/big:1"})
	s := job("echo", "x")
	s.Image = addTarball(t, store, a.bytes(t))
	if j := runJob(t, m, s); j.State != Failed || !strings.Contains(j.Reason, "over the 1 MiB limit on image tarballs") {
		t.Fatalf("big tarball: %s %q", j.State, j.Reason)
	}
	host := filepath.Join(t.TempDir(), "host.tar")
	os.WriteFile(host, a.bytes(t), 0o644)
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(host, link)
	root, err := store.Add(context.Background(), link, content.AddOptions{Pin: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Image = "ipfs://" + root.String()
	if j := runJob(t, m, s); j.State != Failed || !strings.Contains(j.Reason, "the CID is a symlink, not a file") {
		t.Fatalf("symlink image: %s %q", j.State, j.Reason)
	}
}

// sparseTar holds a PAX (GNU 0.1) sparse entry that reads back as 1 TiB
// of zeros. archive/tar writes no sparse headers, so the PAX header is
// made by hand: a file entry whose type byte becomes 'x'.
func sparseTar(t testing.TB) []byte {
	rec := func(k, v string) string {
		n := len(k) + len(v) + 3
		for len(fmt.Sprintf("%d %s=%s\n", n, k, v)) != n {
			n++
		}
		return fmt.Sprintf("%d %s=%s\n", n, k, v)
	}
	pax := rec("GNU.sparse.numblocks", "1") + rec("GNU.sparse.offset", "0") + rec("GNU.sparse.numbytes", "0") +
		rec("GNU.sparse.map", "0,0") + rec("GNU.sparse.size", "1099511627776")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "PaxHeaders/big", Typeflag: tar.TypeReg, Size: int64(len(pax)), Format: tar.FormatUSTAR})
	tw.Write([]byte(pax))
	tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatUSTAR})
	tw.Close()
	b := buf.Bytes()
	b[156] = tar.TypeXHeader
	copy(b[148:156], "        ")
	var sum int
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}
