package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// gpuChange is a line of gpu health --watch --json.
type gpuChange struct {
	Index int    `json:"index"`
	To    string `json:"to"`
}

type gpuRow struct {
	Index     int    `json:"index"`
	UUID      string `json:"uuid"`
	Name      string `json:"name"`
	Class     string `json:"class"`
	MemoryMiB uint64 `json:"memory_mib"`
	Health    string `json:"health"`
	Reason    string `json:"reason"`
}

func TestMockGPUsThroughTheCLI(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	mustRun(t, repo, "init", "--network", "clitest", "--gpu-mock", "dgxh100")
	startDaemon(t, repo)
	g := &gpuTest{t: t, repo: repo}
	g.listsTheMock()
	changes := g.watch()
	g.faultShows(changes)
	g.applicationXIDBlamesNoGPU()
	g.resetAndBadInput()
}

// gpuTest is TestMockGPUsThroughTheCLI's daemon on a dgxh100 mock, and
// the GPUs it listed first.
type gpuTest struct {
	t    *testing.T
	repo string
	gpus []gpuRow
}

// listsTheMock: gpu list shows the mock's 8 healthy H100s.
func (g *gpuTest) listsTheMock() {
	t := g.t
	runJSON(t, g.repo, &g.gpus, "gpu", "list")
	if len(g.gpus) != 8 {
		t.Fatalf("gpu list: %d GPUs, want 8", len(g.gpus))
	}
	for i, g := range g.gpus {
		if g.Index != i || g.Name != "NVIDIA H100 80GB HBM3" || g.Class != "mock-h100-80gb" ||
			g.MemoryMiB != 81920 || g.Health != "healthy" || g.UUID == "" {
			t.Fatalf("gpu %d: %+v", i, g)
		}
	}
}

func (g *gpuTest) health() []gpuRow {
	var rows []gpuRow
	runJSON(g.t, g.repo, &rows, "gpu", "health")
	return rows
}

// fail makes GPU i unhealthy with a fatal XID and waits until it is.
func (g *gpuTest) fail(i int) time.Duration {
	injected := time.Now()
	mustRun(g.t, g.repo, "gpu", "inject", "--gpu", fmt.Sprint(i), "--xid", "79")
	p2ptest.WaitFor(g.t, 2*time.Second, func() bool { return g.health()[i].Health == "unhealthy" }, "gpu %d still healthy 2s after XID 79", i)
	return time.Since(injected)
}

// watch starts a watcher before the fault, to see it as one JSON line,
// and returns once it has subscribed, with the changes it prints.
func (g *gpuTest) watch() <-chan gpuChange {
	t := g.t
	watch := exec.Command(bin, "--repo", g.repo, "gpu", "health", "--watch", "--json")
	stdout, _ := watch.StdoutPipe()
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watch.Process.Kill() })
	changes := make(chan gpuChange, 16)
	go func() {
		defer close(changes)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var c gpuChange
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
				c.Index, c.To = -1, "unparsable: "+sc.Text()
			}
			changes <- c
		}
	}()
	// It prints only changes, so it shows it has subscribed by printing
	// one: GPU 5 fails and is reset until a line comes.
	p2ptest.WaitFor(t, 20*time.Second, func() bool {
		g.fail(5)
		mustRun(t, g.repo, "gpu", "reset-health", g.gpus[5].UUID)
		select {
		case c := <-changes:
			return c.Index == 5
		case <-time.After(200 * time.Millisecond):
			return false
		}
	}, "gpu health --watch printed no change of gpu 5")
	return changes
}

// faultShows: an XID 79 on GPU 3 makes it, and it alone, unhealthy, with
// the XID as its reason, and the watcher prints the change.
func (g *gpuTest) faultShows(changes <-chan gpuChange) {
	t := g.t
	took := g.fail(3)
	rows := g.health()
	if !strings.Contains(rows[3].Reason, "XID 79") {
		t.Fatalf("reason %q", rows[3].Reason)
	}
	for i, r := range rows {
		if i != 3 && r.Health != "healthy" {
			t.Fatalf("gpu %d is %s", i, r.Health)
		}
	}
	t.Logf("unhealthy %s after the injection", took.Round(time.Millisecond))
	for seen := false; !seen; {
		select {
		case c, ok := <-changes:
			switch {
			case !ok:
				t.Fatal("the watcher ended before it printed gpu 3's change")
			case c.Index == 5: // the rest of the subscription check
			case c.Index != 3 || c.To != "unhealthy":
				t.Fatalf("watch line %+v, want gpu 3 unhealthy", c)
			default:
				seen = true
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the watcher printed no change of gpu 3")
		}
	}
}

// applicationXIDBlamesNoGPU: XID 13 blames the application, so the GPU
// stays healthy. A fatal XID on another GPU after it is read after it (one
// event queue), so once that one shows, 13 has had its effect.
func (g *gpuTest) applicationXIDBlamesNoGPU() {
	mustRun(g.t, g.repo, "gpu", "inject", "--gpu", "2", "--xid", "13")
	g.fail(4)
	if h := g.health()[2]; h.Health != "healthy" {
		g.t.Fatalf("gpu 2 is %s after XID 13 (%s)", h.Health, h.Reason)
	}
}

// resetAndBadInput: reset-health makes GPU 3 healthy again; a GPU or a
// UUID the mock lacks, or a fault not named, is a clear error.
func (g *gpuTest) resetAndBadInput() {
	t, repo := g.t, g.repo
	var reset gpuRow
	runJSON(t, repo, &reset, "gpu", "reset-health", g.gpus[3].UUID)
	if reset.Health != "healthy" {
		t.Fatalf("reset-health: %+v", reset)
	}
	checkOneLineError(t, run(t, repo, "gpu", "inject", "--gpu", "8", "--xid", "79"), "gpu 8: this mock has GPUs 0 to 7")
	checkOneLineError(t, run(t, repo, "gpu", "inject", "--gpu", "1"), "give --xid N or --fault KIND")
	checkOneLineError(t, run(t, repo, "gpu", "reset-health", "GPU-nope"), `gpu "GPU-nope": no such UUID`)
}

func TestCPUOnlyNode(t *testing.T) {
	repo := initRepo(t, "clitest")
	startDaemon(t, repo)
	var st struct {
		GPUSource string `json:"gpu_source"`
		GPUReason string `json:"gpu_reason"`
	}
	runJSON(t, repo, &st, "status")
	if st.GPUSource == "nvml" {
		t.Skip("this machine has NVML")
	}
	if st.GPUSource != "none" || !strings.Contains(st.GPUReason, "CPU-only") {
		t.Fatalf("status: %+v", st)
	}
	var gpus []gpuRow
	runJSON(t, repo, &gpus, "gpu", "list")
	if len(gpus) != 0 {
		t.Fatalf("gpu list on a CPU-only node: %+v", gpus)
	}
	checkOneLineError(t, run(t, repo, "gpu", "inject", "--gpu", "0", "--xid", "79"), "fault injection works only on mock GPUs")
	checkOneLineError(t, run(t, filepath.Join(t.TempDir(), "r"), "init", "--gpu-mock", "dgx1"), `gpu.mock: gpu-mock "dgx1": want one of dgxa100`)
}
