package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// BenchmarkE2E runs 20 tiny jobs from node0 of a four-node testnet
// (`aixblock testnet up`): submit → running and submit → results fetched,
// against `docker run --rm` of the same image in the same run.
func BenchmarkE2E(b *testing.B) {
	jobDocker(b)
	dir := testnetUp(b)
	req := filepath.Join(dir, "node0")
	const n = 20
	pct := func(ds []time.Duration, p int) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return p2ptest.Ms(s[min(len(s)-1, len(s)*p/100)])
	}
	for range b.N {
		var toRun, toResult, docker []time.Duration
		for i := 0; i < n; i++ {
			t0 := time.Now()
			if out, err := exec.Command("docker", "run", "--rm", "--network", "none", jobImage, "write", "/tmp/x", "y").CombinedOutput(); err != nil {
				b.Fatalf("docker run: %v %s", err, out)
			}
			docker = append(docker, time.Since(t0))

			t0 = time.Now()
			id := strings.TrimSpace(mustRun(b, req, "job", "run", "-d", "--gpus", "1", "--max-price", "5", jobImage, "--", "write", "/outputs/x", "y"))
			var running time.Duration
			for {
				var s jobStatus
				runJSON(b, req, &s, "job", "status", id)
				if running == 0 && s.State != "pending" && s.State != "preparing" {
					running = time.Since(t0)
				}
				if terminal(s.State) {
					if s.State != "completed" {
						b.Fatalf("job %s: %+v", id, s)
					}
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			mustRun(b, req, "job", "results", id, "-o", filepath.Join(b.TempDir(), id))
			toRun, toResult = append(toRun, running), append(toResult, time.Since(t0))
		}
		b.ReportMetric(pct(docker, 50), "docker-run-p50-ms")
		b.ReportMetric(pct(toRun, 50), "to-running-p50-ms")
		b.ReportMetric(pct(toRun, 99), "to-running-p99-ms")
		b.ReportMetric(pct(toResult, 50), "to-results-p50-ms")
		b.ReportMetric(pct(toResult, 99), "to-results-p99-ms")
		b.ReportMetric(pct(toResult, 50)/pct(docker, 50), "results/docker")
	}
}

// BenchmarkGangStart times a distributed job of 2 and 3 ranks across as
// many providers on their job network: from submit (the deals from one
// offer, funding, prepare, go) to every rank running, and the gang start
// proper (prepare, then go) as the requester measured it.
func BenchmarkGangStart(b *testing.B) {
	ddpImage(b)
	for _, nodes := range []int{2, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) { gangStart(b, nodes) })
	}
}

func gangStart(b *testing.B, nodes int) {
	repos, _ := ddpNetwork(b, nodes)
	req := repos[nodes]
	spec := filepath.Join(b.TempDir(), "ddp.yaml")
	os.WriteFile(spec, []byte(fmt.Sprintf("name: ddp\nimage: aixblock-test/ddp:latest\nresources: {gpus: 1, memory_mib: 128}\n"+
		"distributed: {nodes: %d}\nmax_price: \"20\"\nenv: {STEPS: \"50\"}\n", nodes)), 0o600)
	const n = 8
	for range b.N {
		var times, gang []time.Duration
		for i := 0; i < n; i++ {
			t0 := time.Now()
			id := strings.TrimSpace(mustRun(b, req, "job", "submit", spec))
			var list []struct {
				ID    string `json:"id"`
				State string `json:"state"`
			}
			for {
				runJSON(b, req, &list, "job", "list")
				running := 0
				for _, j := range list {
					if j.State == "running" || j.State == "uploading" || j.State == "completed" {
						running++
					}
				}
				if running >= nodes*(i+1) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			times = append(times, time.Since(t0))
			var st struct {
				GangStartMs int64 `json:"gang_start_ms"`
			}
			runJSON(b, req, &st, "job", "status", id)
			gang = append(gang, time.Duration(st.GangStartMs)*time.Millisecond)
			waitState(b, req, id, terminal)
		}
		slices.Sort(times)
		slices.Sort(gang)
		// The gang start proper: every rank prepared (its job network
		// joined, its peers reached), then told to go; the requester's
		// own figure.
		b.ReportMetric(p2ptest.Ms(gang[len(gang)/2]), "prepare-go-p50-ms")
		b.ReportMetric(p2ptest.Ms(gang[len(gang)-1]), "prepare-go-max-ms")
		b.ReportMetric(p2ptest.Ms(times[len(times)/2]), "gang-start-p50-ms")
		b.ReportMetric(p2ptest.Ms(times[len(times)-1]), "gang-start-max-ms")
	}
}
