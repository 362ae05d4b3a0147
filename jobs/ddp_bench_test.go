package jobs

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// BenchmarkAllReduce is the distributed workload's all-reduce throughput
// (vector bytes averaged per second, 2 ranks as processes on loopback)
// against a plain TCP copy between two processes in the same run, the
// ceiling for any exchange over one connection. make bench-ddp.
func BenchmarkAllReduce(b *testing.B) {
	bin := buildDDP(b)
	const pad = 2 << 20 // 16 MiB of float64 per all-reduce
	var ar, tcp []float64
	for i := 0; i < b.N; i++ {
		runs, _ := startRanks(b, bin, 2, fmt.Sprintf("PAD=%d", pad), "STEPS=30")
		var rate float64
		for r, run := range runs {
			if err := run.cmd.Wait(); err != nil {
				b.Fatalf("rank %d: %v\n%s", r, err, run.out)
			}
		}
		for _, l := range strings.Split(runs[0].out.String(), "\n") {
			if s, ok := strings.CutPrefix(l, "final "); ok {
				var m struct {
					MiB float64 `json:"allreduce_mib_per_s"`
				}
				json.Unmarshal([]byte(s), &m)
				rate = m.MiB
			}
		}
		if rate == 0 {
			b.Fatalf("no rate in rank 0's output:\n%s", runs[0].out)
		}
		ar = append(ar, rate)
		tcp = append(tcp, tcpCopy(b, bin))
	}
	a, t := median(ar), median(tcp)
	b.ReportMetric(a, "allreduce-MiB/s")
	b.ReportMetric(t, "tcp-MiB/s")
	b.ReportMetric(a/t, "ratio")
}

// tcpCopy runs the workload's tcpcopy pair and returns the receiver's rate.
func tcpCopy(b *testing.B, bin string) float64 {
	recv := exec.Command(bin, "tcpcopy", "listen:127.0.0.1:0")
	out, _ := recv.StdoutPipe()
	if err := recv.Start(); err != nil {
		b.Fatal(err)
	}
	defer recv.Process.Kill()
	sc := bufio.NewScanner(out)
	var addr string
	if sc.Scan() {
		addr, _ = strings.CutPrefix(sc.Text(), "listening ")
	}
	send := exec.Command(bin, "tcpcopy", addr)
	send.Env = append(os.Environ(), "BYTES=1073741824")
	if o, err := send.CombinedOutput(); err != nil {
		b.Fatalf("tcpcopy: %v\n%s", err, o)
	}
	var m struct {
		MiB float64 `json:"mib_per_s"`
	}
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "copied "); ok {
			json.Unmarshal([]byte(s), &m)
		}
	}
	recv.Wait()
	if m.MiB == 0 {
		b.Fatal("tcpcopy printed no rate")
	}
	return m.MiB
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
