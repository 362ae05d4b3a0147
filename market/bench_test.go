package market

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/peer"
)

// BenchmarkDeal times offer to signed deal, and counts market messages per
// deal, as the network grows: 10 and 50 daemons on loopback, and 500 peers
// on a mocknet with 10 ms links. A fixed share of nodes are H100
// providers (mock GPUs); the rest relay.
func BenchmarkDeal(b *testing.B) {
	for _, tc := range []struct {
		name             string
		nodes, providers int
		latency          time.Duration
		mock             bool
	}{
		{"loopback-10", 10, 5, 0, false},
		{"loopback-50", 50, 10, 0, false},
		{"mocknet-50-10ms", 50, 10, 10 * time.Millisecond, true},
		{"mocknet-500-10ms", 500, 20, 10 * time.Millisecond, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			nodes := benchNetwork(b, tc.nodes, tc.providers, tc.latency, tc.mock)
			req := nodes[len(nodes)-1]
			byID := map[string]*tnode{}
			for _, n := range nodes {
				byID[n.p2p.Host.ID().String()] = n
			}
			waitProviders(b, req, h100, func(f []ProviderInfo) bool { return len(f) >= min(tc.providers, 3) })
			const deals = 30
			var times []time.Duration
			msgs := func() (s int64) {
				for _, n := range nodes {
					s += n.m.MessagesSent()
				}
				return s
			}
			b.ResetTimer()
			for range b.N {
				before := msgs()
				times = times[:0]
				var rtts []time.Duration
				for range deals {
					start := time.Now()
					d, st, err := req.m.Negotiate(context.Background(), OfferRequest{
						Req: Requirements{GPUClass: h100, GPUs: 1}, Token: "native", MaxPrice: "5000",
						MaxDuration: time.Hour, SpecHash: specHash,
					})
					if err != nil {
						b.Fatal(err)
					}
					times = append(times, time.Since(start))
					// The baseline in the same network and load: one request
					// and answer between the requester and the winner (a
					// release of nothing, which it refuses at once).
					t0 := time.Now()
					p, _ := peer.Decode(d.Provider)
					_, perr := req.m.request(context.Background(), p, protoFree, []byte("none"), p2p.StreamLimits{MaxRequest: 128, MaxResponse: 64})
					if perr == nil || !strings.Contains(perr.Error(), "no releasable bid") {
						b.Fatalf("baseline request: %v", perr)
					}
					rtts = append(rtts, time.Since(t0))
					if time.Since(start) > time.Second {
						b.Logf("slow deal: %s, %d bids, %d awards, %d found", st.Elapsed, st.Bids, st.Awards, st.Found)
					}
					byID[d.Provider].m.Release(d.ID)
				}
				slices.Sort(rtts)
				slices.Sort(times)
				if !tc.mock { // mocknet delays writes, not every round trip: links are its baseline
					b.ReportMetric(p2ptest.Ms(rtts[len(rtts)/2]), "rtt-p50-ms")
					b.ReportMetric(float64(times[len(times)/2])/float64(rtts[len(rtts)/2]), "p50/rtt")
				}
				b.ReportMetric(p2ptest.Ms(times[len(times)/2]), "p50-ms")
				b.ReportMetric(p2ptest.Ms(times[len(times)*99/100]), "p99-ms")
				b.ReportMetric(float64(msgs()-before-deals)/deals, "msgs/deal")
				if tc.mock {
					b.Logf("node 0: %d conns, routing table %d", len(nodes[0].p2p.Host.Network().Conns()), nodes[0].p2p.DHT.RoutingTable().Size())
				}
				if tc.latency > 0 {
					b.ReportMetric(float64(times[len(times)/2])/float64(tc.latency), "p50/link")
				}
			}
		})
	}
}

// benchInventory is eight healthy H100s without go-nvml behind them: at
// 500 peers the mock servers would dominate the benchmark's memory. The
// market tests use the real gpu.Manager over go-nvml's mocks.
type benchInventory struct{ inv gpu.Inventory }

func newBenchInventory(i int) *benchInventory {
	inv := gpu.Inventory{Source: "bench", Host: gpu.Host{CPUCores: 64, MemoryMiB: 1 << 20, DiskFreeMiB: 1 << 20}}
	for g := 0; g < 8; g++ {
		inv.GPUs = append(inv.GPUs, gpu.GPU{Index: g, UUID: fmt.Sprintf("GPU-%d-%d", i, g), Class: h100, MemoryMiB: 81920, Health: gpu.Healthy})
	}
	return &benchInventory{inv}
}
func (b *benchInventory) Inventory() gpu.Inventory { return b.inv }
func (b *benchInventory) Subscribe() (<-chan gpu.Change, func()) {
	return make(chan gpu.Change), func() {}
}

func benchNetwork(b *testing.B, n, providers int, latency time.Duration, mock bool) []*tnode {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	var pns []*p2p.Node
	if mock {
		pns = p2ptest.NewMocknet(b, n, 8, latency, testP2PConfig("marketbench")).Nodes
	} else {
		pns = p2ptest.Start(b, n, testP2PConfig("marketbench"))
	}
	nodes := make([]*tnode, n)
	for i := range nodes {
		var inv Inventory = cpuOnly{}
		c := Config{BidWindow: 5 * time.Second, Enough: 3, Fanout: 5}
		if i < providers {
			inv = newBenchInventory(i)
			c.Prices = map[string]map[string]string{h100: {"native": fmt.Sprint(1000 + i)}}
		}
		nodes[i] = newTnode(b, pns[i], inv, c)
	}
	p2ptest.Bootstrap(b, pns)
	for _, nd := range nodes {
		go nd.m.Run(ctx)
	}
	return nodes
}
