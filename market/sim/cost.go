package sim

import "time"

// Cost is the processing the light tier charges the market's requests
// (offers, bids sent back, awards), which it otherwise delivers as if
// handling them took no time: to hold the model against real daemons,
// whose deals wait on their CPU. make bench-scale-real measures what to
// set it to (its cpu-ms/deal over the market requests of a deal, and
// the "bid phases" of AIXBLOCK_BENCH_PHASES=1).
type Cost struct {
	// Proc is the CPU time a market request costs the node that handles
	// it: the request waits its turn (first come, first served), then
	// takes Proc before its handler runs and its answer leaves. Zero
	// charges nothing, the figures are then the protocol's alone.
	Proc time.Duration
	// Cores is the CPUs the requests queue for. Zero: each node has one
	// of its own. More: every node shares these, as daemons on one
	// machine do (make bench-scale-real's on its two cores).
	Cores int
}

// cpus are the light tier's CPUs: when each is next free, one per node
// or Cost.Cores shared by all.
type cpus struct {
	ev     *events
	cost   Cost
	shared []time.Duration
	node   map[int32]time.Duration
}

func newCPUs(ev *events, c Cost) *cpus {
	return &cpus{ev: ev, cost: c, shared: make([]time.Duration, max(c.Cores, 0)), node: map[int32]time.Duration{}}
}

// handle runs f once n has processed a request of family fam: at once
// but for the market's requests under a Cost, which wait for a free CPU
// and take Cost.Proc of it.
func (c *cpus) handle(fam string, n *lnode, f func()) {
	if c == nil || c.cost.Proc <= 0 || fam != "market" {
		f()
		return
	}
	free := c.node[n.idx]
	core := -1
	for i, t := range c.shared {
		if core < 0 || t < free {
			core, free = i, t
		}
	}
	end := max(free, c.ev.now) + c.cost.Proc
	if core >= 0 {
		c.shared[core] = end
	} else {
		c.node[n.idx] = end
	}
	c.ev.after(end-c.ev.now, f)
}
