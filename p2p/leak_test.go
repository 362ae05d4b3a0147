package p2p_test

import (
	"testing"

	"github.com/aixblock/aixblock/internal/leakcheck"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// Nothing of a node outlives its Close, even when the context it was
// started with is never cancelled: two nodes on loopback that met, joined
// a gossip topic and exchanged a message close with no goroutine left
// (GossipSub ran on New's context until Close cancelled its own).
func TestCloseLeavesNoGoroutine(t *testing.T) {
	leakcheck.Check(t)
	nodes := p2ptest.Loopback(t, 2, p2ptest.Config("leak"))
	for _, n := range nodes {
		topic, err := n.Join("leak-topic", nil)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := topic.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Cancel)
	}
	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
