package p2p_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testRecords is a DHT namespace for tests: values must start with "ok:".
var testRecords = p2p.RecordValidator{
	Namespace: "test",
	MaxSize:   1024,
	Check: func(key string, value []byte) error {
		if !bytes.HasPrefix(value, []byte("ok:")) {
			return fmt.Errorf("%s: value must start with ok:", key)
		}
		return nil
	},
}

func quietConfig(network string) p2p.Config {
	cfg := p2ptest.Config(network)
	cfg.Records = []p2p.RecordValidator{testRecords}
	return cfg
}

// bootstrapTrimmed bootstraps a large mocknet in batches and, like a
// connection manager would, closes each batch's connections beyond the
// first random ones afterwards: routing tables keep what the walks learnt,
// and lookups dial again when they need to. Without it every node stays
// connected to hundreds of others, which a real node's connection manager
// never allows and which a 1000-peer mocknet cannot hold in memory.
func bootstrapTrimmed(tb testing.TB, mn *p2ptest.Mocknet) {
	tb.Helper()
	keep := make(map[[2]peer.ID]bool)
	for _, e := range mn.Edges {
		a, b := mn.Nodes[e[0]].Host.ID(), mn.Nodes[e[1]].Host.ID()
		keep[[2]peer.ID{a, b}], keep[[2]peer.ID{b, a}] = true, true
	}
	const batch = 100
	for lo := 0; lo < len(mn.Nodes); lo += batch {
		part := mn.Nodes[lo:min(lo+batch, len(mn.Nodes))]
		p2ptest.Bootstrap(tb, part)
		for _, n := range part {
			for _, c := range n.Host.Network().Conns() {
				if !keep[[2]peer.ID{n.Host.ID(), c.RemotePeer()}] {
					c.Close()
				}
			}
		}
	}
}

// hops is each node's distance in connections from nodes[src]: the fewest
// links any message from src must cross to reach it.
func hops(nodes []*p2p.Node, src int) []int {
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
func joinAll(tb testing.TB, nodes []*p2p.Node, topic string) ([]*pubsub.Topic, []*pubsub.Subscription) {
	tb.Helper()
	topics := make([]*pubsub.Topic, len(nodes))
	subs := make([]*pubsub.Subscription, len(nodes))
	for i, n := range nodes {
		topics[i], subs[i] = subscribe(tb, n, topic, nil)
	}
	for i, t := range topics {
		p2ptest.WaitFor(tb, time.Minute, func() bool { return len(t.ListPeers()) > 0 }, "node %d sees no subscriber of %s", i, topic)
	}
	time.Sleep(3 * time.Second) // a few heartbeats to graft the meshes
	return topics, subs
}

// subscribe joins n to topic with validator v (nil: none) and subscribes
// to it until the test ends.
func subscribe(tb testing.TB, n *p2p.Node, topic string, v p2p.TopicValidator) (*pubsub.Topic, *pubsub.Subscription) {
	tb.Helper()
	t, err := n.Join(topic, v)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := t.Subscribe()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Cancel)
	return t, s
}

// gossipRounds publishes msgs messages from random nodes, one at a time,
// and records when each node receives each. It fails if any delivery
// takes longer than timeout.
func gossipRounds(tb testing.TB, nodes []*p2p.Node, topics []*pubsub.Topic, subs []*pubsub.Subscription, msgs int, timeout time.Duration) []gossipResult {
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
