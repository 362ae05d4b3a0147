package main

import (
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// BenchmarkJobs times submit → running → exit of a scratch image through
// `aixblock job run --local` against `docker run --rm` of the same image in
// the same run, then submits 50 small jobs at once.
func BenchmarkJobs(b *testing.B) {
	jobDocker(b)
	repo := initRepo(b, "jobbench")
	startDaemon(b, repo)
	const n = 15
	med := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
	for range b.N {
		var ours, theirs []time.Duration
		for i := 0; i < n; i++ {
			t0 := time.Now()
			if out, err := exec.Command("docker", "run", "--rm", "--network", "none", jobImage, "echo", "hi").CombinedOutput(); err != nil {
				b.Fatalf("docker run: %v %s", err, out)
			}
			theirs = append(theirs, time.Since(t0))
			t0 = time.Now()
			mustRun(b, repo, "job", "run", "--local", jobImage, "--", "echo", "hi")
			ours = append(ours, time.Since(t0))
		}
		b.ReportMetric(p2ptest.Ms(med(theirs)), "docker-run-ms")
		b.ReportMetric(p2ptest.Ms(med(ours)), "job-run-ms")
		b.ReportMetric(float64(med(ours))/float64(med(theirs)), "job/docker")

		const burst = 50
		t0 := time.Now()
		ids := make([]string, burst)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				ids[i] = strings.TrimSpace(mustRun(b, repo, "job", "run", "--local", "-d", jobImage, "--", "echo", "burst"))
			}(i)
		}
		wg.Wait()
		for _, id := range ids {
			if s := waitState(b, repo, id, terminal); s.State != "completed" {
				b.Fatalf("burst job %s: %+v", id, s)
			}
		}
		el := time.Since(t0)
		b.ReportMetric(float64(burst)/el.Seconds(), "burst-jobs/s")
		b.ReportMetric(el.Seconds(), "burst-50-s")
	}
}
