package jobs

// Attacks on the provider's host from a job or its requester (issue 16),
// each tried through the manager on the real Docker engine.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/content"
	"github.com/moby/moby/client"
)

func runJob(t *testing.T, m *Manager, s Spec) *Job {
	t.Helper()
	return waitJob(t, m, mustSubmit(t, m, s).ID, time.Minute)
}

func randomText(t *testing.T) string {
	var b [8]byte
	rand.Read(b[:])
	return "host secret " + hex.EncodeToString(b[:])
}

// Attack 1: an input whose root is a symlink to a host directory (or
// file). Before the fix Docker bound the link's target and the job read
// the provider's files; now the job fails naming the input.
func TestInputSymlinkRootRefused(t *testing.T) {
	d := dockerOrSkip(t)
	m, store := newTestManager(t, d, t.TempDir())
	ctx := context.Background()
	secret := randomText(t)
	hostDir := t.TempDir()
	os.WriteFile(filepath.Join(hostDir, "secret.txt"), []byte(secret), 0o644)
	for _, tc := range []struct{ name, target, read string }{
		{"directory", hostDir, "/inputs/a/secret.txt"},
		{"file", filepath.Join(hostDir, "secret.txt"), "/inputs/a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			link := filepath.Join(t.TempDir(), "link")
			if err := os.Symlink(tc.target, link); err != nil {
				t.Fatal(err)
			}
			root, err := store.Add(ctx, link, content.AddOptions{Pin: true})
			if err != nil {
				t.Fatal(err)
			}
			s := job("cat", tc.read)
			s.Inputs = []Input{{CID: root.String(), Path: "/inputs/a"}}
			j := runJob(t, m, s)
			l := logsOf(t, m, j.ID)
			if strings.Contains(l, secret) {
				t.Fatalf("the job read the host's %s through a symlink input: %q", tc.name, l)
			}
			want := fmt.Sprintf("input 0 (%s → /inputs/a): is a symlink", root)
			if j.State != Failed || !strings.Contains(j.Reason, want) {
				t.Fatalf("job %s %q, want failed with %q", j.State, j.Reason, want)
			}
		})
	}
}

// Symlinks inside an input directory stay symlinks: relative and absolute
// ones resolve inside the container, and one naming a host path finds
// nothing there.
func TestInputInternalSymlinks(t *testing.T) {
	d := dockerOrSkip(t)
	m, store := newTestManager(t, d, t.TempDir())
	ctx := context.Background()
	secret := randomText(t)
	hostFile := filepath.Join(t.TempDir(), "secret.txt")
	os.WriteFile(hostFile, []byte(secret), 0o644)
	in := filepath.Join(t.TempDir(), "in")
	os.MkdirAll(filepath.Join(in, "sub"), 0o755)
	os.WriteFile(filepath.Join(in, "data.txt"), []byte("the data"), 0o644)
	for link, target := range map[string]string{
		"rel": "data.txt", "sub/up": "../data.txt", "abs": "/inputs/d/data.txt",
		"host": hostFile, "hostdir": filepath.Dir(hostFile), "dotdot": "../../../../../../" + hostFile,
	} {
		if err := os.Symlink(target, filepath.Join(in, link)); err != nil {
			t.Fatal(err)
		}
	}
	root, err := store.Add(ctx, in, content.AddOptions{Pin: true})
	if err != nil {
		t.Fatal(err)
	}
	s := job("cat", "/inputs/d/rel", "/inputs/d/sub/up", "/inputs/d/abs", "/inputs/d/host",
		"/inputs/d/hostdir/secret.txt", "/inputs/d/dotdot")
	s.Inputs = []Input{{CID: root.String(), Path: "/inputs/d"}}
	j := runJob(t, m, s)
	l := logsOf(t, m, j.ID)
	if j.State != Completed {
		t.Fatalf("job %s %q, logs %q", j.State, j.Reason, l)
	}
	for _, p := range []string{"/inputs/d/rel", "/inputs/d/sub/up", "/inputs/d/abs"} {
		if !strings.Contains(l, p+": the data") {
			t.Errorf("%s did not resolve inside the input: %q", p, l)
		}
	}
	for _, p := range []string{"/inputs/d/host", "/inputs/d/hostdir/secret.txt", "/inputs/d/dotdot"} {
		if !strings.Contains(l, p+": unreadable") {
			t.Errorf("%s reached something: %q", p, l)
		}
	}
	if strings.Contains(l, secret) {
		t.Fatalf("a symlink inside an input reached the host: %q", l)
	}
}

// A job's /outputs may hold symlinks to host paths; the upload adds them
// as symlinks and never reads their targets, and the cleanup does not
// follow them.
func TestOutputSymlinksAreNotFollowed(t *testing.T) {
	d := dockerOrSkip(t)
	m, store := newTestManager(t, d, t.TempDir())
	ctx := context.Background()
	secret := randomText(t)
	hostFile := filepath.Join(t.TempDir(), "secret.txt")
	os.WriteFile(hostFile, []byte(secret), 0o644)
	j := runJob(t, m, job("symlink", hostFile, "/outputs/x"))
	if j.State != Completed {
		t.Fatalf("job %s %q", j.State, j.Reason)
	}
	k := runJob(t, m, job("symlink", filepath.Dir(hostFile), "/outputs/dir"))
	if k.State != Completed {
		t.Fatalf("job %s %q", k.State, k.Reason)
	}
	for _, c := range []struct {
		job          *Job
		name, target string
	}{{j, "x", hostFile}, {k, "dir", filepath.Dir(hostFile)}} {
		rc, _ := cidDecode(c.job.ResultCID)
		var dag bytes.Buffer
		if err := store.ExportCAR(ctx, rc, &dag); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(dag.Bytes(), []byte(secret)) {
			t.Fatalf("the result of %s holds the host file's bytes", c.name)
		}
		out := filepath.Join(t.TempDir(), "out")
		if _, err := store.Get(ctx, rc, out, nil); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(filepath.Join(out, c.name)); err != nil || got != c.target {
			t.Fatalf("result %s: readlink %q, %v; want the symlink to %s", c.name, got, err, c.target)
		}
	}
	if b, _ := os.ReadFile(hostFile); string(b) != secret {
		t.Fatalf("the host file changed: %q", b)
	}
	if _, err := os.Stat(filepath.Dir(hostFile)); err != nil {
		t.Fatalf("the cleanup followed the job's symlink: %v", err)
	}
}

// testArchive is a docker-save tarball made by hand: a FROM-scratch image
// holding jobprog, with the entrypoint and manifest the test asks for.
type testArchive struct {
	names    []string
	files    map[string][]byte
	manifest []map[string]any
	config   string
}

func newTestArchive(t *testing.T, entrypoint, repoTags []string) *testArchive {
	t.Helper()
	bin, err := os.ReadFile(jobprogBin)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "jobprog", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg})
	tw.Write(bin)
	for _, dir := range []string{"inputs/", "outputs/", "tmp/", "mnt/"} {
		tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir})
	}
	tw.Close()
	diff := sha256.Sum256(layer.Bytes())
	cfg, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Entrypoint": entrypoint},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(diff[:])}},
	})
	cfgSum := sha256.Sum256(cfg)
	a := &testArchive{files: map[string][]byte{}}
	a.config = hex.EncodeToString(cfgSum[:]) + ".json"
	layerName := hex.EncodeToString(diff[:]) + "/layer.tar"
	a.add(a.config, cfg)
	a.add(layerName, layer.Bytes())
	a.manifest = []map[string]any{{"Config": a.config, "RepoTags": repoTags, "Layers": []string{layerName}}}
	return a
}

func (a *testArchive) add(name string, body []byte) {
	a.names = append(a.names, name)
	a.files[name] = body
}

func (a *testArchive) bytes(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	man, _ := json.Marshal(a.manifest)
	for _, n := range append(append([]string{}, a.names...), "manifest.json") {
		body, ok := a.files[n]
		if n == "manifest.json" {
			body, ok = man, true
		}
		if !ok {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// addTarball stores the tarball and returns its ipfs:// image reference.
func addTarball(t *testing.T, store *content.Store, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.tar")
	os.WriteFile(p, b, 0o644)
	root, err := store.Add(context.Background(), p, content.AddOptions{Pin: true})
	if err != nil {
		t.Fatal(err)
	}
	return "ipfs://" + root.String()
}

func imageID(t *testing.T, d *Docker, ref string) string {
	t.Helper()
	res, err := d.Client().ImageInspect(context.Background(), ref)
	if err != nil {
		t.Fatalf("inspect %s: %v", ref, err)
	}
	return res.ID
}

// Attack 2: an ipfs:// tarball whose manifest lists another tenant's tag.
// Before the fix loading it moved that tag to the attacker's image (and a
// tarball whose first tag existed locally was not loaded at all, so the
// job ran the other image). Now no tag of another image moves, and the
// job runs the tarball's own image.
func TestImageTagPoisoning(t *testing.T) {
	d := dockerOrSkip(t)
	m, store := newTestManager(t, d, t.TempDir())
	ctx := context.Background()
	const victim = "aixblock-test/victim:latest"
	const hostileTag = "aixblock-test/hostile:latest"
	if _, err := d.Client().ImageTag(ctx, client.ImageTagOptions{Source: testImage, Target: victim}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Client().ImageRemove(context.Background(), victim, client.ImageRemoveOptions{})
		d.Client().ImageRemove(context.Background(), hostileTag, client.ImageRemoveOptions{Force: true})
	})
	before := imageID(t, d, victim)
	for _, tc := range []struct {
		name string
		tags []string
	}{
		{"extra tags", []string{hostileTag, victim}},
		{"first tag exists locally", []string{victim}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTestArchive(t, []string{"/jobprog", "echo", "HOSTILE IMAGE " + tc.name}, tc.tags)
			s := job("x")
			s.Image = addTarball(t, store, a.bytes(t))
			j := runJob(t, m, s)
			l := logsOf(t, m, j.ID)
			if j.State != Completed || !strings.Contains(l, "HOSTILE IMAGE "+tc.name) {
				t.Errorf("the job did not run its own tarball's image: %s %q, logs %q", j.State, j.Reason, l)
			}
			if after := imageID(t, d, victim); after != before {
				t.Fatalf("%s now names %s, was %s: the tarball moved another image's tag", victim, after, before)
			}
			if ok, _ := d.HasImage(ctx, hostileTag); ok {
				t.Fatalf("the tarball's own tag %s was written", hostileTag)
			}
			// The victim's own jobs still run the victim's image.
			v := job("echo", "victim")
			v.Image = victim
			if j := runJob(t, m, v); j.State != Completed || strings.Contains(logsOf(t, m, j.ID), "HOSTILE") {
				t.Fatalf("the victim's job ran the hostile image: %s %q", j.State, logsOf(t, m, j.ID))
			}
		})
	}
}
