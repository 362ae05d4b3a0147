package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/node"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// BenchmarkScaleReal is make bench-scale-real: AIXBLOCK_REAL_NODES (50)
// daemons on loopback and one dev chain, a fifth of them CPU providers
// (price cpu=1), the rest each submitting one tiny job at once. It
// reports offer → signed deal p50/p99 (from the requesters' "deal
// signed" log lines), submit → completed p50/p99, jobs per second from
// the first submit to the last completion, and each daemon's resident
// memory, to hold against market/sim's figures at the same size.
func BenchmarkScaleReal(b *testing.B) {
	jobDocker(b)
	n := realNodes(b)
	providers := max(2, n/5)
	info, file := startDevchain(b, "--accounts", strconv.Itoa(n+1))
	start := time.Now()
	nodes := make([]chainNode, n)
	for i := range nodes {
		if benchPhases() {
			nodes[i].flags = []string{"--log-level", "debug"}
		}
		if i < providers {
			nodes[i].init = []string{"--price", "cpu=1"}
		}
	}
	net := startChainNet(b, "scalereal", info, file, nodes...)
	reqs := net.repos[providers:]
	b.Logf("%d daemons (%d providers) up in %s", n, providers, time.Since(start).Round(time.Second))
	waitCPUProviders(b, reqs, min(providers, 5))
	pids, chainPid := benchPids(b, net.daemons, file)
	b.ReportMetric(idleCPU(b, pids, 3*time.Second), "idle-cpu-ms/s")
	b.Logf("load average before the burst: %s", loadAvg(b))
	for range b.N {
		cpu := dealCPU(b, append(pids, chainPid), net.daemons[providers:], len(reqs))
		chainCPU := dealCPU(b, []int{chainPid}, net.daemons[providers:], len(reqs))
		profiled := profileBurst(b, map[string]string{"provider": net.repos[0], "requester": reqs[0]}, 3)
		r := submitAll(b, reqs)
		profiled()
		deals := dealTimes(b, net.daemons[providers:])
		reportScale(b, r, deals)
		ms, took := cpu()
		chainMs, _ := chainCPU()
		b.ReportMetric(ms/float64(len(deals)), "cpu-ms/deal")
		b.ReportMetric(chainMs/float64(len(deals)), "chain-cpu-ms/deal")
		b.ReportMetric(p2ptest.Ms(took), "burst-deals-ms")
		b.ReportMetric(p2ptest.Ms(offerSpread(b, net.daemons[providers:])), "offer-spread-ms")
	}
	b.Logf("load average after: %s", loadAvg(b))
	if benchPhases() {
		logPhases(b, net.daemons)
	}
	reportRSS(b, net.daemons)
}

// benchPids are the daemons' processes and the dev chain's.
func benchPids(b *testing.B, ds []*daemon, chainFile string) ([]int, int) {
	var pids []int
	for _, d := range ds {
		pids = append(pids, d.cmd.Process.Pid)
	}
	p, ok := devchainProcs.Load(chainFile)
	if !ok {
		b.Fatalf("no process for dev chain %s", chainFile)
	}
	return pids, p.(*os.Process).Pid
}

// loadAvg is the machine's load average (1, 5 and 15 minutes): the
// figures of a shared machine are read beside it.
func loadAvg(b *testing.B) string {
	l, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		b.Fatal(err)
	}
	return strings.Join(strings.Fields(string(l))[:3], " ")
}

// realNodes is AIXBLOCK_REAL_NODES, 50 when unset.
func realNodes(b *testing.B) int {
	s := os.Getenv("AIXBLOCK_REAL_NODES")
	if s == "" {
		return 50
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 3 {
		b.Fatalf("AIXBLOCK_REAL_NODES=%q: want a number of daemons, at least 3", s)
	}
	return n
}

// waitCPUProviders waits until the first and the last requester find
// want providers in the DHT (enough for an offer to go to a full fanout
// without gossip).
func waitCPUProviders(b *testing.B, reqs []string, want int) {
	for _, r := range []string{reqs[0], reqs[len(reqs)-1]} {
		c, err := node.NewClient(r)
		if err != nil {
			b.Fatal(err)
		}
		var found int
		p2ptest.WaitFor(b, 3*time.Minute, func() bool {
			info, err := c.Providers(context.Background(), "cpu")
			found = len(info.Providers)
			return err == nil && found >= want
		}, "%s finds %s CPU providers, want %d", r, later(func() string { return strconv.Itoa(found) }), want)
	}
}

// scaleRun is one burst of jobs: each one's submit → completed, and the
// burst's span from the first submit to the last completion.
type scaleRun struct {
	e2e  []time.Duration
	span time.Duration
}

// submitAll submits one tiny CPU job from each requester at once and
// waits for them all to complete.
func submitAll(b *testing.B, reqs []string) scaleRun {
	const spec = "image: " + jobImage + "\nargs: [echo, hi]\nresources: {cpu: 1}\nmax_price: \"5\"\n"
	out := make([]time.Duration, len(reqs))
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	t0 := time.Now()
	for i, repo := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = runOne(repo, spec)
		}()
	}
	wg.Wait()
	span := time.Since(t0)
	for i, err := range errs {
		if err != nil {
			b.Errorf("requester %d: %v", i, err)
		}
	}
	if b.Failed() {
		b.FailNow()
	}
	return scaleRun{e2e: out, span: span}
}

// runOne submits spec on repo's daemon and polls it until it ends; it
// returns submit → completed.
func runOne(repo, spec string) (time.Duration, error) {
	c, err := node.NewClient(repo)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t0 := time.Now()
	j, err := c.SubmitJob(ctx, api.SubmitRequest{SpecYAML: spec})
	if err != nil {
		return 0, fmt.Errorf("submit: %w", err)
	}
	for {
		got, err := c.Job(ctx, j.ID)
		if err != nil {
			return 0, fmt.Errorf("job %s: %w", j.ID, err)
		}
		if terminal(string(got.State)) {
			if got.State != "completed" {
				return 0, fmt.Errorf("job %s: %s (%s)", j.ID, got.State, got.Reason)
			}
			return time.Since(t0), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("job %s still %s: %w", j.ID, got.State, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

var dealLine = regexp.MustCompile(`msg="deal signed".* negotiation=(\S+)`)

// dealTimes reads offer → signed deal from the requesters' logs: one
// line per negotiation that made a deal.
func dealTimes(b *testing.B, ds []*daemon) []time.Duration {
	var out []time.Duration
	for _, d := range ds {
		for _, m := range dealLine.FindAllStringSubmatch(d.stderr.String(), -1) {
			t, err := time.ParseDuration(m[1])
			if err != nil {
				b.Fatalf("deal signed line: %v", err)
			}
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		b.Fatal("no deal signed line in the requesters' logs")
	}
	return out
}

func reportScale(b *testing.B, r scaleRun, deals []time.Duration) {
	b.ReportMetric(pctMs(deals, 50), "deal-p50-ms")
	b.ReportMetric(pctMs(deals, 99), "deal-p99-ms")
	b.ReportMetric(pctMs(r.e2e, 50), "job-p50-ms")
	b.ReportMetric(pctMs(r.e2e, 99), "job-p99-ms")
	b.ReportMetric(float64(len(r.e2e))/r.span.Seconds(), "jobs/s")
	b.ReportMetric(float64(len(deals)), "deals")
}

// pctMs is the p-th percentile of ds in milliseconds (nearest rank).
func pctMs(ds []time.Duration, p int) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return p2ptest.Ms(s[min(len(s)-1, (len(s)*p+99)/100-1)])
}

// reportRSS reports the daemons' resident memory now and at its peak
// (VmRSS, VmHWM), mean and max.
func reportRSS(b *testing.B, ds []*daemon) {
	var rss, hwm []float64
	for _, d := range ds {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
		if err != nil {
			b.Fatalf("daemon's status: %v", err)
		}
		rss, hwm = append(rss, statusMiB(b, st, "VmRSS:")), append(hwm, statusMiB(b, st, "VmHWM:"))
	}
	mean := func(v []float64) (s float64) {
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	b.ReportMetric(mean(rss), "rss-mean-MiB")
	b.ReportMetric(slices.Max(rss), "rss-max-MiB")
	b.ReportMetric(mean(hwm), "rss-peak-mean-MiB")
	b.ReportMetric(slices.Max(hwm), "rss-peak-max-MiB")
}

// statusMiB is the value of key (in kB) in /proc/PID/status, in MiB.
func statusMiB(b *testing.B, st []byte, key string) float64 {
	for _, l := range strings.Split(string(st), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				b.Fatalf("%s: %v", key, err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no %s in the daemon's status", key)
	return 0
}
