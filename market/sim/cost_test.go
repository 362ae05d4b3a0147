package sim

import (
	"slices"
	"testing"
	"time"
)

// TestCPUs checks when requests that arrive together are handled: at
// once without a cost or outside the market, one after another on a
// node's own CPU, and spread over the shared cores.
func TestCPUs(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name  string
		cost  Cost
		fam   string
		nodes []int32         // the handler of each request, all sent at 0
		want  []time.Duration // when they are handled, in order
	}{
		{"no cost", Cost{}, "market", []int32{0, 0, 1}, []time.Duration{0, 0, 0}},
		{"not the market", Cost{Proc: 5 * ms}, "dht", []int32{0, 0}, []time.Duration{0, 0}},
		{"own CPU", Cost{Proc: 5 * ms}, "market", []int32{0, 0, 1, 0}, []time.Duration{5 * ms, 5 * ms, 10 * ms, 15 * ms}},
		{"two shared cores", Cost{Proc: 5 * ms, Cores: 2}, "market", []int32{0, 1, 2, 3, 0}, []time.Duration{5 * ms, 5 * ms, 10 * ms, 10 * ms, 15 * ms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &events{}
			c := newCPUs(ev, tc.cost)
			var got []time.Duration
			for _, n := range tc.nodes {
				c.handle(tc.fam, &lnode{idx: n}, func() { got = append(got, ev.now) })
			}
			ev.runUntil(func() bool { return false })
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("handled at %v, want %v", got, tc.want)
			}
		})
	}
}
