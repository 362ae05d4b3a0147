package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
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
