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
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs/jobstest"
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
	// A named pipe in /outputs is refused, not opened (which would
	// block the upload forever).
	if f := runJob(t, m, job("mkfifo", "/outputs/pipe")); f.State != Failed || !strings.Contains(f.Reason, "upload outputs: add /outputs/pipe: not a file") {
		t.Fatalf("fifo in /outputs: %s %q", f.State, f.Reason)
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
	bin, err := os.ReadFile(jobstest.Program(t, jobstest.Jobprog))
	if err != nil {
		t.Fatal(err)
	}
	return newArchive(bin, entrypoint, repoTags)
}

// newArchive is newTestArchive with any bytes as the program (parser
// tests need no Docker).
func newArchive(bin []byte, entrypoint, repoTags []string) *testArchive {
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

func (a *testArchive) bytes(t testing.TB) []byte {
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
	// The image a job loads from it goes with the test.
	if d, err := NewDocker(context.Background()); err == nil {
		t.Cleanup(func() {
			d.Client().ImageRemove(context.Background(), ipfsImageTag(root), client.ImageRemoveOptions{Force: true})
			d.Close()
		})
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
	if _, err := d.Client().ImageTag(ctx, client.ImageTagOptions{Source: jobstest.Image, Target: victim}); err != nil {
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

// diskOrSkip skips where disk_mib cannot be enforced; elsewhere a test
// that stops half-way leaves no job's disk mounted under dir.
func diskOrSkip(t *testing.T, dir string) {
	t.Helper()
	if err := diskSupport(); err != nil {
		t.Skipf("disk_mib cannot be enforced here: %v", err)
	}
	t.Cleanup(func() {
		jobs, _ := os.ReadDir(dir)
		for _, j := range jobs {
			removeDisk(filepath.Join(dir, j.Name()))
		}
	})
}

// noMountsUnder fails if any mount or loop device is left under dir.
func noMountsUnder(t *testing.T, dir string) {
	t.Helper()
	b, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(b), dir) {
		t.Errorf("a mount is left under %s", dir)
	}
	if out, _ := exec.Command("losetup", "-a").CombinedOutput(); strings.Contains(string(out), dir) {
		t.Errorf("a loop device is left on %s: %s", dir, out)
	}
}

// Attack 5: a job that writes more than disk_mib. Before the fix the limit
// was not enforced and the job filled the provider's disk; now the kernel
// refuses the write at the limit and the job fails with the reason.
func TestDiskLimit(t *testing.T) {
	d := dockerOrSkip(t)
	dir := t.TempDir()
	diskOrSkip(t, dir)
	m, store := newTestManager(t, d, dir)
	ctx := context.Background()

	t.Run("outputs past the limit", func(t *testing.T) {
		s := job("fill", "/outputs/big", "200")
		s.Resources.DiskMiB = 32
		j := runJob(t, m, s)
		l := logsOf(t, m, j.ID)
		if j.State != Failed || !strings.Contains(j.Reason, "disk_mib 32 exceeded: /outputs") {
			t.Fatalf("job %s %q, logs %q", j.State, j.Reason, l)
		}
		var wrote int64
		if _, err := fmt.Sscanf(l[strings.Index(l, "wrote "):], "wrote %d bytes, then:", &wrote); err != nil || !strings.Contains(l, "no space left on device") {
			t.Fatalf("the job was not stopped by the disk: %q", l)
		}
		if wrote > 32<<20 {
			t.Fatalf("the job wrote %d bytes, more than its 32 MiB", wrote)
		}
		t.Logf("wrote %.1f MiB of 200 before ENOSPC; reason: %s", float64(wrote)/(1<<20), j.Reason)
		if _, err := os.Stat(filepath.Join(m.dir(j), diskImage)); !os.IsNotExist(err) {
			t.Fatalf("the disk image is left: %v", err)
		}
	})
	t.Run("inputs past the limit", func(t *testing.T) {
		big := filepath.Join(t.TempDir(), "big")
		b := make([]byte, 24<<20)
		rand.Read(b)
		os.WriteFile(big, b, 0o644)
		root, err := store.Add(ctx, big, content.AddOptions{Pin: true})
		if err != nil {
			t.Fatal(err)
		}
		s := job("cat", "/inputs/big")
		s.Inputs = []Input{{CID: root.String(), Path: "/inputs/big"}}
		s.Resources.DiskMiB = 16
		j := runJob(t, m, s)
		if want := fmt.Sprintf("disk_mib 16 exceeded: input 0 (%s → /inputs/big)", root); j.State != Failed || !strings.Contains(j.Reason, want) {
			t.Fatalf("job %s %q, want %q", j.State, j.Reason, want)
		}
	})
	t.Run("within the limit", func(t *testing.T) {
		in := filepath.Join(t.TempDir(), "in.txt")
		os.WriteFile(in, []byte("input bytes"), 0o644)
		root, _ := store.Add(ctx, in, content.AddOptions{Pin: true})
		s := job("fill", "/outputs/data", "4")
		s.Inputs = []Input{{CID: root.String(), Path: "/inputs/in.txt"}}
		s.Resources.DiskMiB = 16
		j := runJob(t, m, s)
		if j.State != Completed || j.ResultCID == "" {
			t.Fatalf("job %s %q, logs %q", j.State, j.Reason, logsOf(t, m, j.ID))
		}
		rc, _ := cidDecode(j.ResultCID)
		out := filepath.Join(t.TempDir(), "out")
		if _, err := store.Get(ctx, rc, out, nil); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(filepath.Join(out, "data")); err != nil || st.Size() != 4<<20 {
			t.Fatalf("result: %v %v", st, err)
		}
		if _, err := os.Stat(filepath.Join(out, "lost+found")); !os.IsNotExist(err) {
			t.Fatalf("the filesystem's own lost+found is in the result")
		}
	})
	noMountsUnder(t, dir)
}

// A daemon that restarts after a reboot finds the disk unmounted; it
// mounts it again and uploads the outputs of the job that ended meanwhile.
func TestDiskReattachRemounts(t *testing.T) {
	d := dockerOrSkip(t)
	dir := t.TempDir()
	diskOrSkip(t, dir)
	first, _ := newTestManager(t, stuck{d}, dir)
	s := job("write", "/outputs/r.txt", "written before the restart")
	s.Resources.DiskMiB = 16
	j := mustSubmit(t, first, s)
	ctx := context.Background()
	await(t, first, j.ID, "its container's end", time.Minute, func(g *Job) bool {
		if g.State != Running {
			return false
		}
		st, err := d.State(ctx, g.ContainerID)
		return err == nil && st.Exists && !st.Running
	})
	mnt := filepath.Join(dir, j.ID, diskMount)
	if err := syscall.Unmount(mnt, 0); err != nil { // the reboot
		t.Fatal(err)
	}
	second, store := newTestManager(t, d, dir)
	got := waitJob(t, second, j.ID, time.Minute)
	if got.State != Completed {
		t.Fatalf("after the restart: %s %q", got.State, got.Reason)
	}
	rc, _ := cidDecode(got.ResultCID)
	out := filepath.Join(t.TempDir(), "out")
	if _, err := store.Get(ctx, rc, out, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "r.txt")); string(b) != "written before the restart" {
		t.Fatalf("result %q", b)
	}
	noMountsUnder(t, dir)
}

// A provider that cannot enforce disk_mib refuses jobs that set it, with
// the reason; the others still run.
func TestDiskUnsupportedRefused(t *testing.T) {
	d := dockerOrSkip(t)
	m, _ := newTestManager(t, d, t.TempDir())
	m.diskErr = errors.New("no loop devices (test)")
	s := job("echo", "hi")
	s.Resources.DiskMiB = 16
	if j := runJob(t, m, s); j.State != Failed || !strings.Contains(j.Reason, "resources.disk_mib 16 cannot be enforced on this provider (no loop devices (test))") {
		t.Fatalf("job %s %q", j.State, j.Reason)
	}
	if j := runJob(t, m, job("echo", "hi")); j.State != Completed {
		t.Fatalf("a job without disk_mib: %s %q", j.State, j.Reason)
	}
}

// Attack 6, through the manager: a "go" request whose env would hand the
// job every GPU fails the job with the key named; the launcher's own env
// goes in, after the daemon's, and the daemon's GPU key stays.
func TestGoEnvRefused(t *testing.T) {
	d := dockerOrSkip(t)
	m, _ := newTestManager(t, d, t.TempDir())
	gated := func() *Job {
		j, err := m.Submit(job("getenv", "RANK", "NVIDIA_VISIBLE_DEVICES"), SubmitOptions{Gate: true})
		if err != nil {
			t.Fatal(err)
		}
		await(t, m, j.ID, "prepared at its gate", time.Minute, func(*Job) bool { return m.Prepared(j.ID) })
		return j
	}
	j := gated()
	if err := m.Go(j.ID, []string{"RANK=0", "NVIDIA_VISIBLE_DEVICES=all"}, ""); err == nil || !strings.Contains(err.Error(), "NVIDIA_VISIBLE_DEVICES") {
		t.Fatalf("hostile go env accepted: %v", err)
	}
	if g := waitJob(t, m, j.ID, time.Minute); g.State != Failed || !strings.Contains(g.Reason, "distributed start refused") || !strings.Contains(g.Reason, "NVIDIA_VISIBLE_DEVICES") {
		t.Fatalf("job %s %q", g.State, g.Reason)
	}
	k := gated()
	if err := m.Go(k.ID, []string{"RANK=3"}, ""); err != nil {
		t.Fatal(err)
	}
	g := waitJob(t, m, k.ID, time.Minute)
	if l := logsOf(t, m, k.ID); g.State != Completed || !strings.Contains(l, "RANK=3") || !strings.Contains(l, "NVIDIA_VISIBLE_DEVICES=none") {
		t.Fatalf("job %s %q, logs %q", g.State, g.Reason, l)
	}
}

// A requester's two starts with one job ID at once (two deals, one ID)
// both used to succeed: the second took the first's place in the
// manager, and the first ran on, unwatched and unstoppable. Of two
// submissions of one ID at once exactly one now succeeds.
func TestSameJobIDTwiceAtOnce(t *testing.T) {
	d := dockerOrSkip(t)
	m, _ := newTestManager(t, d, t.TempDir())
	for round := range 20 {
		id := fmt.Sprintf("%016x", 0xabc000+round)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = m.Submit(job("sleep", "30s"), SubmitOptions{ID: id})
			}()
		}
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("round %d: two submissions of %s: %v, %v; want exactly one to succeed", round, id, errs[0], errs[1])
		}
		for _, err := range errs {
			if err != nil && !strings.Contains(err.Error(), "is taken here") {
				t.Fatalf("the refused one: %v", err)
			}
		}
		if _, err := m.Cancel(id); err != nil {
			t.Fatalf("cancel %s: %v", id, err)
		}
		waitJob(t, m, id, time.Minute)
	}
}
