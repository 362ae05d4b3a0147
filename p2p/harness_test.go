package p2p

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// testRecords is a DHT namespace for tests: values must start with "ok:".
var testRecords = RecordValidator{
	Namespace: "test",
	MaxSize:   1024,
	Check: func(key string, value []byte) error {
		if !bytes.HasPrefix(value, []byte("ok:")) {
			return fmt.Errorf("%s: value must start with ok:", key)
		}
		return nil
	},
}

func quietConfig(network string) Config {
	return Config{
		Network:         network,
		NoNAT:           true,
		Records:         []RecordValidator{testRecords},
		GossipHeartbeat: 200 * time.Millisecond,
		DHTRefresh:      -1,
	}
}

// startLoopback starts n nodes on loopback TCP, all bootstrapped from the first.
func startLoopback(tb testing.TB, n int, network string) []*Node {
	tb.Helper()
	ctx := context.Background()
	nodes := make([]*Node, n)
	for i := range nodes {
		cfg := quietConfig(network)
		if i > 0 {
			cfg.Bootstrap = []peer.AddrInfo{addrInfo(nodes[0])}
		}
		nd, err := New(ctx, cfg)
		if err != nil {
			tb.Fatalf("node %d: %v", i, err)
		}
		tb.Cleanup(func() { nd.Close() })
		nodes[i] = nd
	}
	bootstrapAll(tb, nodes)
	return nodes
}

func addrInfo(n *Node) peer.AddrInfo {
	return peer.AddrInfo{ID: n.Host.ID(), Addrs: n.Host.Addrs()}
}

// bootstrapAll bootstraps every node, then refreshes each routing table so
// that every node learns more than its bootstrap peer.
func bootstrapAll(tb testing.TB, nodes []*Node) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	parallel(len(nodes), 32, func(i int) {
		if err := nodes[i].Bootstrap(ctx); err != nil {
			tb.Errorf("bootstrap node %d: %v", i, err)
		}
	})
	parallel(len(nodes), 32, func(i int) {
		if err := nodes[i].RefreshRoutingTable(ctx); err != nil {
			tb.Logf("refresh node %d: %v", i, err)
		}
	})
}

func parallel(n, width int, fn func(i int)) {
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

// mocknetRange holds every mocknet address: one IPv6 /64, which GossipSub
// would otherwise score as one crowded host.
var mocknetRange = &net.IPNet{IP: net.ParseIP("100::"), Mask: net.CIDRMask(64, 128)}

// startMocknet starts n nodes on a mocknet whose links all have the given
// latency. Each node connects to degree random others, as a node would after
// its first DHT walk; the DHT then finds the rest through lookups.
func startMocknet(tb testing.TB, n, degree int, latency time.Duration) ([]*Node, *mockGraph) {
	tb.Helper()
	mn := mocknet.New()
	tb.Cleanup(func() { mn.Close() })
	mn.SetLinkDefaults(mocknet.LinkOptions{Latency: latency})
	ctx := context.Background()
	nodes := make([]*Node, n)
	for i := range nodes {
		h, err := mn.GenPeer()
		if err != nil {
			tb.Fatal(err)
		}
		cfg := quietConfig("mock")
		cfg.Host = h
		cfg.GossipHeartbeat = time.Second
		cfg.ColocatedNets = []*net.IPNet{mocknetRange}
		nd, err := New(ctx, cfg)
		if err != nil {
			tb.Fatalf("node %d: %v", i, err)
		}
		tb.Cleanup(func() { nd.Close() })
		nodes[i] = nd
	}
	if err := mn.LinkAll(); err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	var edges [][2]int
	for i := range nodes {
		for k := 0; k < degree; k++ {
			if j := rng.Intn(n); j != i {
				edges = append(edges, [2]int{i, j})
			}
		}
	}
	g := &mockGraph{keep: make(map[[2]peer.ID]bool)}
	parallel(len(edges), 64, func(e int) {
		a, b := nodes[edges[e][0]], nodes[edges[e][1]]
		if _, err := mn.ConnectPeers(a.Host.ID(), b.Host.ID()); err != nil {
			tb.Errorf("connect: %v", err)
		}
	})
	for _, e := range edges {
		a, b := nodes[e[0]].Host.ID(), nodes[e[1]].Host.ID()
		g.keep[[2]peer.ID{a, b}], g.keep[[2]peer.ID{b, a}] = true, true
	}
	return nodes, g
}

// mockGraph remembers a mocknet's first random connections.
type mockGraph struct {
	keep map[[2]peer.ID]bool
}

// bootstrapTrimmed bootstraps a large mocknet in batches and, like a
// connection manager would, closes each batch's connections beyond the
// first random ones afterwards: routing tables keep what the walks learnt,
// and lookups dial again when they need to. Without it every node stays
// connected to hundreds of others, which a real node's connection manager
// never allows and which a 1000-peer mocknet cannot hold in memory.
func bootstrapTrimmed(tb testing.TB, nodes []*Node, g *mockGraph) {
	tb.Helper()
	const batch = 100
	for lo := 0; lo < len(nodes); lo += batch {
		part := nodes[lo:min(lo+batch, len(nodes))]
		bootstrapAll(tb, part)
		for _, n := range part {
			for _, c := range n.Host.Network().Conns() {
				if !g.keep[[2]peer.ID{n.Host.ID(), c.RemotePeer()}] {
					c.Close()
				}
			}
		}
	}
}

// hops is each node's distance in connections from nodes[src]: the fewest
// links any message from src must cross to reach it.
func hops(nodes []*Node, src int) []int {
	idx := make(map[peer.ID]int, len(nodes))
	for i, n := range nodes {
		idx[n.Host.ID()] = i
	}
	dist := make([]int, len(nodes))
	for i := range dist {
		dist[i] = -1
	}
	dist[src] = 0
	queue := []int{src}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, p := range nodes[cur].Host.Network().Peers() {
			j, ok := idx[p]
			if ok && dist[j] < 0 {
				dist[j] = dist[cur] + 1
				queue = append(queue, j)
			}
		}
	}
	return dist
}

// gossipResult is one message's delivery to one node.
type gossipResult struct {
	Latency time.Duration
	Hops    int
}

// joinAll subscribes every node to topic and waits until each sees at
// least one other subscriber and the meshes had time to form.
func joinAll(tb testing.TB, nodes []*Node, topic string) ([]*pubsub.Topic, []*pubsub.Subscription) {
	tb.Helper()
	topics := make([]*pubsub.Topic, len(nodes))
	subs := make([]*pubsub.Subscription, len(nodes))
	for i, n := range nodes {
		t, err := n.Join(topic, nil)
		if err != nil {
			tb.Fatal(err)
		}
		s, err := t.Subscribe()
		if err != nil {
			tb.Fatal(err)
		}
		topics[i], subs[i] = t, s
		tb.Cleanup(s.Cancel)
	}
	deadline := time.Now().Add(time.Minute)
	for i, t := range topics {
		for len(t.ListPeers()) == 0 {
			if time.Now().After(deadline) {
				tb.Fatalf("node %d sees no subscriber of %s", i, topic)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(3 * time.Second) // a few heartbeats to graft the meshes
	return topics, subs
}

// gossipRounds publishes msgs messages from random nodes, one at a time,
// and records when each node receives each. It fails if any delivery
// takes longer than timeout.
func gossipRounds(tb testing.TB, nodes []*Node, topics []*pubsub.Topic, subs []*pubsub.Subscription, msgs int, timeout time.Duration) []gossipResult {
	tb.Helper()
	rng := rand.New(rand.NewSource(2))
	var out []gossipResult
	for m := 0; m < msgs; m++ {
		src := rng.Intn(len(nodes))
		dist := hops(nodes, src)
		payload := make([]byte, 16)
		binary.BigEndian.PutUint64(payload, uint64(m))
		start := time.Now()
		binary.BigEndian.PutUint64(payload[8:], uint64(start.UnixNano()))
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		lat := make([]time.Duration, len(nodes))
		var wg sync.WaitGroup
		for i := range nodes {
			if i == src {
				continue
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				for {
					msg, err := subs[i].Next(ctx)
					if err != nil {
						lat[i] = -1
						return
					}
					if bytes.Equal(msg.Data, payload) {
						lat[i] = time.Since(start)
						return
					}
				}
			}(i)
		}
		if err := topics[src].Publish(ctx, payload); err != nil {
			tb.Fatalf("publish: %v", err)
		}
		// The publisher's own subscription sees the message too.
		if _, err := subs[src].Next(ctx); err != nil {
			tb.Fatalf("publisher's own delivery: %v", err)
		}
		wg.Wait()
		cancel()
		for i := range nodes {
			if i == src {
				continue
			}
			if lat[i] < 0 {
				tb.Fatalf("message %d from node %d never reached node %d (%d hops) within %s", m, src, i, dist[i], timeout)
			}
			out = append(out, gossipResult{Latency: lat[i], Hops: dist[i]})
		}
	}
	return out
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func sortedDurations(ds []time.Duration) []time.Duration {
	out := slices.Clone(ds)
	slices.Sort(out)
	return out
}
