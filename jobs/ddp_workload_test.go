package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs/jobstest"
)

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type rankRun struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

// startRanks runs the workload as n processes on loopback with the
// contract's variables (what a container of each node rank gets).
func startRanks(t testing.TB, bin string, n int, extra ...string) ([]rankRun, string) {
	t.Helper()
	port := freePort(t)
	outDir := t.TempDir()
	var runs []rankRun
	for r := 0; r < n; r++ {
		rv := Rendezvous{Nodes: n, NodeRank: r, MasterAddr: "127.0.0.1", MasterPort: port}
		cmd := exec.Command(bin)
		cmd.Env = append(append(os.Environ(), rv.Env()...), append([]string{"OUTPUT_DIR=" + outDir}, extra...)...)
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, rankRun{cmd, &b})
	}
	t.Cleanup(func() {
		for _, r := range runs {
			r.cmd.Process.Kill()
		}
	})
	return runs, outDir
}

// The ranks train one model: identical final weights, close to the truth,
// and rank 0's model written to the outputs.
func TestDDPWorkloadTrains(t *testing.T) {
	bin := jobstest.Program(t, jobstest.DDP)
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d ranks", n), func(t *testing.T) {
			runs, out := startRanks(t, bin, n)
			var finals []string
			for i, r := range runs {
				if err := r.cmd.Wait(); err != nil {
					t.Fatalf("rank %d: %v\n%s", i, err, r.out)
				}
				for _, l := range strings.Split(r.out.String(), "\n") {
					if strings.HasPrefix(l, "final ") {
						finals = append(finals, strings.TrimPrefix(l, "final "))
					}
				}
			}
			var ws [][]float64
			for _, f := range finals {
				var m struct{ Weights []float64 }
				json.Unmarshal([]byte(f), &m)
				ws = append(ws, m.Weights)
			}
			if len(ws) != n {
				t.Fatalf("%d final lines from %d ranks", len(ws), n)
			}
			for i := 1; i < n; i++ {
				for k := range ws[0] {
					if ws[i][k] != ws[0][k] {
						t.Fatalf("rank %d weights %v differ from rank 0's %v", i, ws[i], ws[0])
					}
				}
			}
			for k, want := range []float64{2, -3, 0.5, 1} {
				if math.Abs(ws[0][k]-want) > 0.05 {
					t.Fatalf("weights %v, want close to [2 -3 0.5 1]", ws[0])
				}
			}
			if b, err := os.ReadFile(filepath.Join(out, "model.json")); err != nil || !strings.Contains(string(b), `"weights"`) {
				t.Fatalf("model.json: %v %s", err, b)
			}
		})
	}
}

// Killing one rank fails the others cleanly, naming the lost rank.
func TestDDPWorkloadRankLost(t *testing.T) {
	bin := jobstest.Program(t, jobstest.DDP)
	runs, _ := startRanks(t, bin, 3, "STEPS=100000", "STEP_DELAY_MS=5")
	time.Sleep(700 * time.Millisecond)
	runs[2].cmd.Process.Kill()
	runs[2].cmd.Wait()
	for i := 0; i < 2; i++ {
		done := make(chan error, 1)
		go func() { done <- runs[i].cmd.Wait() }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("rank %d exited 0 after rank 2 died", i)
			}
			if !strings.Contains(runs[i].out.String(), "lost") {
				t.Fatalf("rank %d says: %s", i, runs[i].out)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("rank %d still runs after rank 2 died", i)
		}
	}
}

// The TensorFlow-style check: every worker reaches the others and the
// indices are unique.
func TestTFConfigCheck(t *testing.T) {
	bin := jobstest.Program(t, jobstest.DDP)
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var workers []string
	for _, p := range ports {
		workers = append(workers, fmt.Sprintf("127.0.0.1:%d", p))
	}
	var runs []rankRun
	for r := range ports {
		rv := Rendezvous{Nodes: 3, NodeRank: r, MasterAddr: "127.0.0.1", MasterPort: ports[0], Workers: workers, Framework: "tensorflow"}
		cmd := exec.Command(bin, "tfcheck")
		cmd.Env = append(os.Environ(), rv.Env()...)
		var b bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &b
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, rankRun{cmd, &b})
	}
	for i, r := range runs {
		if err := r.cmd.Wait(); err != nil || !strings.Contains(r.out.String(), "tfcheck ok") {
			t.Fatalf("worker %d: %v %s", i, err, r.out)
		}
	}
}
