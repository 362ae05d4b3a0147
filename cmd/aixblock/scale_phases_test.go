package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchPhases is AIXBLOCK_BENCH_PHASES=1: make bench-scale-real runs its
// daemons at debug level and logs where a deal's time goes, from the
// market's phase lines (see market/phases.go).
func benchPhases() bool { return os.Getenv("AIXBLOCK_BENCH_PHASES") == "1" }

// phaseLines are the market's debug lines that time phases, the
// requester's and then the provider's.
var phaseLines = []string{"negotiation phases", "award phases", "bid phases", "award confirmed"}

var phaseKey = regexp.MustCompile(`\b(\w+)_ms=([0-9.]+)`)

// logPhases logs p50 and p99 of each phase of each phase line in the
// daemons' logs, in milliseconds.
func logPhases(b *testing.B, ds []*daemon) {
	byLine := map[string]map[string][]float64{}
	var order []string
	for _, d := range ds {
		for _, l := range strings.Split(d.stderr.String(), "\n") {
			msg := phaseLine(l)
			if msg == "" {
				continue
			}
			if byLine[msg] == nil {
				byLine[msg] = map[string][]float64{}
			}
			for _, m := range phaseKey.FindAllStringSubmatch(l, -1) {
				v, err := strconv.ParseFloat(m[2], 64)
				if err != nil {
					b.Fatalf("%s: %s: %v", msg, m[0], err)
				}
				if byLine[msg][m[1]] == nil {
					order = append(order, msg+"\x00"+m[1])
				}
				byLine[msg][m[1]] = append(byLine[msg][m[1]], v)
			}
		}
	}
	var out strings.Builder
	for _, k := range order {
		msg, key, _ := strings.Cut(k, "\x00")
		v := byLine[msg][key]
		fmt.Fprintf(&out, "\n%-20s %-14s n=%-4d p50 %8.2f  p99 %8.2f  max %8.2f ms", msg, key, len(v), pct(v, 50), pct(v, 99), slices.Max(v))
	}
	b.Logf("phases:%s", out.String())
}

// phaseLine is which phase line l is, or "".
func phaseLine(l string) string {
	for _, msg := range phaseLines {
		if strings.Contains(l, `msg="`+msg+`"`) {
			return msg
		}
	}
	return ""
}

// pct is the p-th percentile of v (nearest rank).
func pct(v []float64, p int) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, (len(s)*p+99)/100-1)]
}

// cpuTicks is the CPU time (user and system, in clock ticks of 10 ms)
// the processes pids have used so far.
func cpuTicks(b *testing.B, pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatalf("process %d: %v", pid, err)
		}
		// The fields after the command's name, which is in parentheses
		// and may hold spaces: utime and stime are the 12th and 13th.
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		for _, s := range f[11:13] {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				b.Fatalf("process %d's stat: %v", pid, err)
			}
			sum += v
		}
	}
	return sum
}

const tickMs = 10 // USER_HZ is 100 on Linux

// idleCPU is the CPU the processes use idle, in ms per second, over span.
func idleCPU(b *testing.B, pids []int, span time.Duration) float64 {
	t0 := cpuTicks(b, pids)
	time.Sleep(span) // a measuring window, not a wait for a condition
	return float64((cpuTicks(b, pids)-t0)*tickMs) / span.Seconds()
}

// dealCPU watches a burst of want deals in the requesters' logs and
// returns a function that says the CPU (in ms) that pids used from now
// until the last of them was signed, and how long that took: what a
// deal costs the machine, to set market/sim's SCALE_PROC_MS by.
func dealCPU(b *testing.B, pids []int, reqs []*daemon, want int) func() (cpuMs float64, took time.Duration) {
	t0, c0 := time.Now(), cpuTicks(b, pids)
	var c1 int64
	var took time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for time.Since(t0) < 5*time.Minute {
			n := 0
			for _, d := range reqs {
				n += strings.Count(d.stderr.String(), `msg="deal signed"`)
			}
			if n >= want {
				c1, took = cpuTicks(b, pids), time.Since(t0)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() (float64, time.Duration) {
		<-done
		return float64((c1 - c0) * tickMs), took
	}
}

// profileBurst is AIXBLOCK_BENCH_PROFILE=DIR: it starts a CPU profile of
// secs seconds on each repo's daemon, written to DIR/NAME.pprof, and
// returns a function that waits for them.
func profileBurst(b *testing.B, repos map[string]string, secs int) func() {
	dir := os.Getenv("AIXBLOCK_BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	for name, repo := range repos {
		wg.Go(func() {
			if err := fetchProfile(repo, filepath.Join(dir, name+".pprof"), secs); err != nil {
				b.Errorf("profile of %s: %v", name, err)
			}
		})
	}
	return wg.Wait
}

func fetchProfile(repo, file string, secs int) error {
	url, err := os.ReadFile(filepath.Join(repo, "api"))
	if err != nil {
		return err
	}
	token, err := os.ReadFile(filepath.Join(repo, "api.token"))
	if err != nil {
		return err
	}
	req, err := http.NewRequest("GET", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSpace(string(url)), secs), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %.200s", resp.Status, body)
	}
	return os.WriteFile(file, body, 0o644)
}

var dealAt = regexp.MustCompile(`time=(\S+) .*msg="deal signed".* negotiation=(\S+)`)

// offerSpread is how far apart the burst's offers went out (each deal
// signed line's time less its negotiation): the requesters' submits
// reach the market spread by their own work, which market/sim's
// SCALE_DEAL_EVERY_MS stands for (the spread over the deals).
func offerSpread(b *testing.B, ds []*daemon) time.Duration {
	var first, last time.Time
	for _, d := range ds {
		for _, m := range dealAt.FindAllStringSubmatch(d.stderr.String(), -1) {
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				b.Fatalf("deal signed line's time: %v", err)
			}
			took, err := time.ParseDuration(m[2])
			if err != nil {
				b.Fatalf("deal signed line: %v", err)
			}
			start := at.Add(-took)
			if first.IsZero() || start.Before(first) {
				first = start
			}
			if start.After(last) {
				last = start
			}
		}
	}
	return last.Sub(first)
}
