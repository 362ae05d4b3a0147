package p2p_test

import (
	"context"
	"fmt"
	"math/rand"
	"runtime"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	dht "github.com/libp2p/go-libp2p-kad-dht"
)

// The figures of the foundation issue. Run them with `make bench`; each
// size runs once (-benchtime 1x) and reports percentiles as metrics:
//
//	gossip: p50-ms, p99-ms of delivery to every other node, over many
//	        messages from random publishers; with link latency, also the
//	        ideal (fewest hops over the connections × link latency) and the
//	        delivery as a multiple of it.
//	dht:    p50-ms, p99-ms of GetValue for records put by random nodes,
//	        with the default quorum and with quorum 1.
//
// Mocknets are bootstrapped with connections trimmed the way a connection
// manager would (see bootstrapTrimmed).

const benchMsgs = 20

func BenchmarkGossipLoopback(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			nodes := p2ptest.Loopback(b, n, quietConfig("bench"))
			topics, subs := joinAll(b, nodes, "bench/1")
			b.ResetTimer()
			for range b.N {
				reportGossip(b, gossipRounds(b, nodes, topics, subs, benchMsgs, time.Minute), 0)
			}
		})
	}
}

func BenchmarkGossipMocknet(b *testing.B) {
	const latency = 10 * time.Millisecond
	for _, n := range []int{200, 1000} {
		b.Run(fmt.Sprintf("peers=%d/latency=10ms", n), func(b *testing.B) {
			mn := p2ptest.NewMocknet(b, n, 4, latency, quietConfig("mock"))
			nodes := mn.Nodes
			bootstrapTrimmed(b, mn)
			topics, subs := joinAll(b, nodes, "bench/1")
			b.ResetTimer()
			for range b.N {
				reportGossip(b, gossipRounds(b, nodes, topics, subs, benchMsgs, 2*time.Minute), latency)
			}
		})
	}
}

func reportGossip(b *testing.B, res []gossipResult, latency time.Duration) {
	lat := make([]time.Duration, len(res))
	ideal := make([]time.Duration, len(res))
	maxHops := 0
	for i, r := range res {
		lat[i] = r.Latency
		ideal[i] = time.Duration(r.Hops) * latency
		maxHops = max(maxHops, r.Hops)
	}
	lat, ideal = sortedDurations(lat), sortedDurations(ideal)
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	b.ReportMetric(p2ptest.Ms(p50), "p50-ms")
	b.ReportMetric(p2ptest.Ms(p99), "p99-ms")
	b.ReportMetric(float64(maxHops), "max-hops")
	if latency > 0 {
		i50, i99 := percentile(ideal, 50), percentile(ideal, 99)
		b.ReportMetric(p2ptest.Ms(i50), "ideal-p50-ms")
		b.ReportMetric(p2ptest.Ms(i99), "ideal-p99-ms")
		b.ReportMetric(float64(p50)/float64(i50), "p50-x-ideal")
		b.ReportMetric(float64(p99)/float64(i99), "p99-x-ideal")
	}
	b.ReportMetric(float64(len(res)), "deliveries")
}

func BenchmarkDHTGetValueLoopback(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			benchGetValue(b, p2ptest.Loopback(b, n, quietConfig("bench")))
		})
	}
}

func BenchmarkDHTGetValueMocknet(b *testing.B) {
	for _, n := range []int{200, 1000} {
		b.Run(fmt.Sprintf("peers=%d/latency=10ms", n), func(b *testing.B) {
			mn := p2ptest.NewMocknet(b, n, 4, 10*time.Millisecond, quietConfig("mock"))
			bootstrapTrimmed(b, mn)
			benchGetValue(b, mn.Nodes)
		})
	}
}

func benchGetValue(b *testing.B, nodes []*p2p.Node) {
	const records, reads = 10, 50
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rng := rand.New(rand.NewSource(3))
	for r := 0; r < records; r++ {
		if err := nodes[rng.Intn(len(nodes))].DHT.PutValue(ctx, fmt.Sprintf("/test/r%d", r), []byte("ok:v")); err != nil {
			b.Fatalf("put r%d: %v", r, err)
		}
	}
	b.ResetTimer()
	for range b.N {
		for _, quorum := range []int{0, 1} {
			var lat []time.Duration
			for range reads {
				key := fmt.Sprintf("/test/r%d", rng.Intn(records))
				start := time.Now()
				var err error
				if quorum == 0 {
					_, err = nodes[rng.Intn(len(nodes))].DHT.GetValue(ctx, key)
				} else {
					_, err = nodes[rng.Intn(len(nodes))].DHT.GetValue(ctx, key, dht.Quorum(quorum))
				}
				if err != nil {
					b.Fatalf("get %s: %v", key, err)
				}
				lat = append(lat, time.Since(start))
			}
			lat = sortedDurations(lat)
			name := "default"
			if quorum > 0 {
				name = fmt.Sprintf("q%d", quorum)
			}
			b.ReportMetric(p2ptest.Ms(percentile(lat, 50)), name+"-p50-ms")
			b.ReportMetric(p2ptest.Ms(percentile(lat, 99)), name+"-p99-ms")
		}
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(m.HeapAlloc)/float64(len(nodes))/1024, "heap-KiB/node")
}
