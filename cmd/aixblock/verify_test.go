package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs/jobstest"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// verifyNet is two CPU providers and a requester on a dev chain.
func verifyNet(t testing.TB, network string) (req string) {
	t.Helper()
	jobstest.Docker(t)
	info, file := startDevchain(t)
	net := startChainNet(t, network, info, file,
		chainNode{init: []string{"--price", "cpu=1"}},
		chainNode{init: []string{"--price", "cpu=2"}},
		chainNode{})
	req = net.repos[2]
	waitProviders(t, req, 2, "--gpu", "cpu")
	return req
}

// comparedJob is job status --json of a replicated job with a comparator.
type comparedJob struct {
	checkedJob
	Verification *struct {
		Runs []struct {
			ResultCID string `json:"result_cid"`
			Outcome   string `json:"outcome"`
		} `json:"runs"`
		Comparisons []struct {
			Equivalent bool  `json:"equivalent"`
			WallMs     int64 `json:"wall_ms"`
		} `json:"comparisons"`
	} `json:"verification"`
}

// Two honest replicas whose results differ only in a float's last digit
// (the workload writes one from its job ID): their CIDs differ, and the
// requester's comparator, a FROM-scratch image run on its own node with
// both results read-only, finds them equivalent within 1e-9. The job
// completes with two runs agreeing, and job status shows what the
// comparison cost.
func TestReplicaComparator(t *testing.T) {
	req := verifyNet(t, "comparetest")
	spec := filepath.Join(t.TempDir(), "job.yaml")
	writeFile(t, spec, "image: "+jobstest.Image+"\nargs: [noisy, /outputs/metrics.json]\nresources: {cpu: 1}\nmax_price: \"5\"\n"+
		"verify:\n  replicas: 2\n  comparator:\n    image: "+jobstest.Image+"\n    args: [near, \"1e-9\", /inputs/a/metrics.json, /inputs/b/metrics.json]\n")
	id := strings.TrimSpace(mustRun(t, req, "job", "submit", spec))
	var j comparedJob
	p2ptest.WaitFor(t, 3*time.Minute, func() bool {
		runJSON(t, req, &j, "job", "status", id)
		return j.State == "completed" || j.State == "failed"
	}, "the replicated job %s never ended: %+v", id, &j)
	v := j.Verification
	if j.State != "completed" || j.Reason != "2 runs agree" || v == nil || len(v.Runs) != 2 {
		b, _ := json.Marshal(j)
		t.Fatalf("job %s", b)
	}
	if v.Runs[0].ResultCID == v.Runs[1].ResultCID {
		t.Fatalf("both runs returned %s: the workload was meant to differ in its last digit", v.Runs[0].ResultCID)
	}
	if len(v.Comparisons) != 1 || !v.Comparisons[0].Equivalent || v.Comparisons[0].WallMs <= 0 {
		t.Fatalf("comparisons %+v: want one, equivalent, with its cost", v.Comparisons)
	}
	if out := mustRun(t, req, "job", "status", id); !strings.Contains(out, "comparator") || !strings.Contains(out, "equivalent, took") {
		t.Fatalf("job status does not show the comparison:\n%s", out)
	}
}

// runTimes is what job status says of a run's own times.
type runTimes struct {
	State      string     `json:"state"`
	ResultCID  string     `json:"result_cid"`
	CreatedAt  time.Time  `json:"created_at"`
	FinishedAt *time.Time `json:"finished_at"`
}

// waitEnded polls job id on repo until it ends, and returns it and how
// long after t0 that was seen.
func waitEnded(b testing.TB, repo, id string, t0 time.Time) (runTimes, time.Duration) {
	b.Helper()
	var s runTimes
	p2ptest.WaitFor(b, 5*time.Minute, func() bool {
		runJSON(b, repo, &s, "job", "status", id)
		return terminal(s.State)
	}, "job %s never ended", id)
	if s.State != "completed" {
		b.Fatalf("job %s: %+v", id, s)
	}
	return s, time.Since(t0)
}

// BenchmarkVerify: the speed figure of a replicated job. A job of a
// fixed length (sleep 5 s) runs alone, then with --replicas 2; the
// replicated job's time is set against the slower run's own time
// (created to finished on the requester) plus one fetch of the result.
// The target: at most 1.2.
func BenchmarkVerify(b *testing.B) {
	req := verifyNet(b, "benchverify")
	work := []string{"--cpu", "1", "--max-price", "5", jobstest.Image, "--", "sleepwrite", "5s", "/outputs/done", "y"}
	for range b.N {
		t0 := time.Now()
		single := strings.TrimSpace(mustRun(b, req, append([]string{"job", "run", "-d"}, work...)...))
		_, alone := waitEnded(b, req, single, t0)

		t0 = time.Now()
		id := strings.TrimSpace(mustRun(b, req, append([]string{"job", "run", "-d", "--replicas", "2"}, work...)...))
		g, total := waitEnded(b, req, id, t0)
		var j checkedJob
		runJSON(b, req, &j, "job", "status", id)
		var slowest, skew time.Duration
		var first time.Time
		for i, r := range j.Verification.Runs {
			var s runTimes
			runJSON(b, req, &s, "job", "status", r.JobID)
			slowest = max(slowest, s.FinishedAt.Sub(s.CreatedAt))
			if i == 0 {
				first = s.CreatedAt
			}
			skew = max(skew, s.CreatedAt.Sub(first))
		}
		t1 := time.Now()
		mustRun(b, req, "data", "get", g.ResultCID, "-o", filepath.Join(b.TempDir(), "result"))
		fetch := time.Since(t1)
		ratio := total.Seconds() / (slowest + fetch).Seconds()
		// The same on the daemon's clock: from the replicated job's record
		// to its decision, without the CLI's start and polls.
		inDaemon := g.FinishedAt.Sub(g.CreatedAt)
		daemonRatio := inDaemon.Seconds() / (slowest + fetch).Seconds()
		fmt.Fprintf(os.Stderr, "verify: alone %s, replicated %s (%s in the daemon), slower run %s, fetch %s, second run started %s after the first: ratio %.3f, %.3f in the daemon (target <= 1.2)\n",
			alone.Round(time.Millisecond), total.Round(time.Millisecond), inDaemon.Round(time.Millisecond), slowest.Round(time.Millisecond), fetch.Round(time.Millisecond), skew.Round(time.Millisecond), ratio, daemonRatio)
		b.ReportMetric(daemonRatio, "daemon-ratio")
		b.ReportMetric(p2ptest.Ms(alone), "alone-ms")
		b.ReportMetric(p2ptest.Ms(total), "replicated-ms")
		b.ReportMetric(p2ptest.Ms(slowest), "slower-run-ms")
		b.ReportMetric(p2ptest.Ms(fetch), "fetch-ms")
		b.ReportMetric(p2ptest.Ms(skew), "start-skew-ms")
		b.ReportMetric(ratio, "ratio")
	}
}
