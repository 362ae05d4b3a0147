package main

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

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

	var gpus []gpuRow
	runJSON(t, repo, &gpus, "gpu", "list")
	if len(gpus) != 8 {
		t.Fatalf("gpu list: %d GPUs, want 8", len(gpus))
	}
	for i, g := range gpus {
		if g.Index != i || g.Name != "NVIDIA H100 80GB HBM3" || g.Class != "nvidia-h100-80gb" ||
			g.MemoryMiB != 81920 || g.Health != "healthy" || g.UUID == "" {
			t.Fatalf("gpu %d: %+v", i, g)
		}
	}

	// A watcher started before the fault sees it as one JSON line.
	watch := exec.Command(bin, "--repo", repo, "gpu", "health", "--watch", "--json")
	stdout, _ := watch.StdoutPipe()
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer watch.Process.Kill()
	time.Sleep(300 * time.Millisecond) // let it subscribe

	injected := time.Now()
	mustRun(t, repo, "gpu", "inject", "--gpu", "3", "--xid", "79")
	deadline := injected.Add(2 * time.Second)
	for {
		var rows []gpuRow
		runJSON(t, repo, &rows, "gpu", "health")
		if rows[3].Health == "unhealthy" {
			if !strings.Contains(rows[3].Reason, "XID 79") {
				t.Fatalf("reason %q", rows[3].Reason)
			}
			for i, r := range rows {
				if i != 3 && r.Health != "healthy" {
					t.Fatalf("gpu %d is %s", i, r.Health)
				}
			}
			t.Logf("unhealthy %s after the injection", time.Since(injected).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gpu 3 still %s 2s after XID 79", rows[3].Health)
		}
		time.Sleep(50 * time.Millisecond)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	var change struct {
		Index int    `json:"index"`
		To    string `json:"to"`
	}
	if err := json.Unmarshal([]byte(line), &change); err != nil || change.Index != 3 || change.To != "unhealthy" {
		t.Fatalf("watch line %q: %v", line, err)
	}

	// XID 13 blames the application: the GPU stays healthy.
	mustRun(t, repo, "gpu", "inject", "--gpu", "2", "--xid", "13")
	time.Sleep(700 * time.Millisecond)
	var rows []gpuRow
	runJSON(t, repo, &rows, "gpu", "health")
	if rows[2].Health != "healthy" {
		t.Fatalf("gpu 2 is %s after XID 13", rows[2].Health)
	}

	var reset gpuRow
	runJSON(t, repo, &reset, "gpu", "reset-health", gpus[3].UUID)
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
