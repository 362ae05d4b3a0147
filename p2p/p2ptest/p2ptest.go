// Package p2ptest holds the test helpers of p2p and of the packages built
// on it: quiet nodes on loopback TCP and on a mocknet, the one poll loop
// tests wait with (WaitFor), the skip rule of tests that need network
// namespaces, and the benchmarks' millisecond figure.
//
// It imports p2p and libp2p's mocknet, so p2p's own tests are an external
// test package (p2p_test): they test p2p through its exported API, as every
// other user does, and share these helpers instead of copying them.
package p2ptest

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
)

// WaitFor polls cond until it holds and fails tb when it still does not
// after timeout. The message says what never happened; it is formatted
// when WaitFor gives up, so a Stringer among args (a *bytes.Buffer of a
// helper's output, say) shows its state then. The poll interval starts
// at 5 ms and doubles up to 200 ms: quick for in-process state, gentle on
// conditions that run a command or walk the DHT.
func WaitFor(tb testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for pause := 5 * time.Millisecond; !cond(); pause = min(2*pause, 200*time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(pause)
	}
}

// SkipNetns skips a test that needs network namespaces where this machine
// cannot make them, except under AIXBLOCK_REQUIRE_NETNS (CI), where it
// fails.
func SkipNetns(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("AIXBLOCK_REQUIRE_NETNS") != "" {
		tb.Fatal(why)
	}
	tb.Skip(why)
}

// Ms is d in milliseconds, the unit benchmarks report latencies in.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Config is a quiet node of network for tests: no NAT traversal, no DHT
// refresh in the background, and a 200 ms gossip heartbeat so that meshes
// form within a test's patience. Callers add records, identities, hosts.
func Config(network string) p2p.Config {
	return p2p.Config{
		Network:         network,
		NoNAT:           true,
		DHTRefresh:      -1,
		GossipHeartbeat: 200 * time.Millisecond,
	}
}

// New starts one node, closed when the test ends.
func New(tb testing.TB, cfg p2p.Config) *p2p.Node {
	tb.Helper()
	nd, err := p2p.New(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("p2p node: %v", err)
	}
	tb.Cleanup(func() { nd.Close() })
	return nd
}

// ServiceStat is what the streams in h's resource-manager service of
// protocol id hold now (see p2p.HandleStream).
func ServiceStat(tb testing.TB, h host.Host, id protocol.ID) network.ScopeStat {
	tb.Helper()
	var st network.ScopeStat
	err := h.Network().ResourceManager().ViewService(p2p.ServiceName(id), func(s network.ServiceScope) error {
		st = s.Stat()
		return nil
	})
	if err != nil {
		tb.Fatalf("service of %s: %v", id, err)
	}
	return st
}

// AddrInfo is how another node dials n.
func AddrInfo(n *p2p.Node) peer.AddrInfo {
	return peer.AddrInfo{ID: n.Host.ID(), Addrs: n.Host.Addrs()}
}

// Start starts n nodes of cfg on loopback TCP, each after the first with
// the first as its bootstrap peer; it dials nobody (see Bootstrap), so a
// caller can register its protocols first.
func Start(tb testing.TB, n int, cfg p2p.Config) []*p2p.Node {
	tb.Helper()
	nodes := make([]*p2p.Node, n)
	for i := range nodes {
		c := cfg
		if i > 0 {
			c.Bootstrap = []peer.AddrInfo{AddrInfo(nodes[0])}
		}
		nodes[i] = New(tb, c)
	}
	return nodes
}

// Loopback is Start and Bootstrap: n nodes that know each other.
func Loopback(tb testing.TB, n int, cfg p2p.Config) []*p2p.Node {
	tb.Helper()
	nodes := Start(tb, n, cfg)
	Bootstrap(tb, nodes)
	return nodes
}

// Bootstrap bootstraps every node, then refreshes each routing table so
// that every node learns more than its bootstrap peer. Ten minutes is a
// limit for a stuck walk, not a budget: large mocknets bootstrap in one call.
func Bootstrap(tb testing.TB, nodes []*p2p.Node) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	Parallel(len(nodes), 32, func(i int) {
		if err := nodes[i].Bootstrap(ctx); err != nil {
			tb.Errorf("bootstrap node %d: %v", i, err)
		}
	})
	Parallel(len(nodes), 32, func(i int) {
		if err := nodes[i].RefreshRoutingTable(ctx); err != nil {
			tb.Logf("refresh node %d: %v", i, err)
		}
	})
}

// Connect connects a to b and waits until each has identified the other
// as a node of its network: a stream opened before could meet the
// connection closing under it, as the membership guard acts on identify.
func Connect(tb testing.TB, a, b *p2p.Node) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	WaitFor(tb, 10*time.Second, func() bool {
		if !connected(a, b) {
			// Seen on loopback now and then: a fresh connection closed
			// before identify finished. Dial again.
			_ = a.Host.Connect(ctx, AddrInfo(b))
		}
		return connected(a, b) && a.IsMember(b.Host.ID()) && b.IsMember(a.Host.ID())
	}, "%s and %s never identified each other", a.Host.ID(), b.Host.ID())
}

func connected(a, b *p2p.Node) bool {
	return len(a.Host.Network().ConnsToPeer(b.Host.ID())) > 0 && len(b.Host.Network().ConnsToPeer(a.Host.ID())) > 0
}

// MocknetRange holds every address Mocknet gives out: one IPv6 /64, which
// GossipSub would otherwise score as one crowded host.
var MocknetRange = &net.IPNet{IP: net.ParseIP("100::"), Mask: net.CIDRMask(64, 128)}

// Mocknet is nodes on an in-memory network whose links all have one
// latency.
type Mocknet struct {
	mocknet.Mocknet
	Nodes []*p2p.Node
	// Edges are the random connections made at the start, by index.
	Edges [][2]int
}

// NewMocknet starts n nodes of cfg on a mocknet, each with an Ed25519 key
// (market messages name their signer by such a peer ID; mocknet's own
// peers get ECDSA ones) and a 1 s gossip heartbeat, and connects each to
// degree random others (seeded, so every run has the same graph), as a
// node would be after its first DHT walk. It bootstraps nobody: the DHT
// finds the rest through lookups once Bootstrap runs.
func NewMocknet(tb testing.TB, n, degree int, latency time.Duration, cfg p2p.Config) *Mocknet {
	tb.Helper()
	mn := &Mocknet{Mocknet: mocknet.New(), Nodes: make([]*p2p.Node, n)}
	tb.Cleanup(func() { mn.Close() })
	mn.SetLinkDefaults(mocknet.LinkOptions{Latency: latency})
	for i := range mn.Nodes {
		key, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			tb.Fatal(err)
		}
		ip := make(net.IP, net.IPv6len)
		copy(ip, MocknetRange.IP)
		ip[14], ip[15] = byte((i+1)>>8), byte(i+1)
		h, err := mn.AddPeer(key, ma.StringCast(fmt.Sprintf("/ip6/%s/tcp/4242", ip)))
		if err != nil {
			tb.Fatal(err)
		}
		c := cfg
		c.Host = h
		c.GossipHeartbeat = time.Second
		c.ColocatedNets = []*net.IPNet{MocknetRange}
		mn.Nodes[i] = New(tb, c)
	}
	if err := mn.LinkAll(); err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	for i := range mn.Nodes {
		for range degree {
			if j := rng.Intn(n); j != i {
				mn.Edges = append(mn.Edges, [2]int{i, j})
			}
		}
	}
	Parallel(len(mn.Edges), 64, func(e int) {
		a, b := mn.Nodes[mn.Edges[e][0]], mn.Nodes[mn.Edges[e][1]]
		if _, err := mn.ConnectPeers(a.Host.ID(), b.Host.ID()); err != nil {
			tb.Errorf("connect: %v", err)
		}
	})
	return mn
}

// MockHosts is n bare hosts on a mocknet, linked and connected to each
// other, closed when the test ends: for a protocol tested on hosts alone,
// without a node's DHT and gossip. Their keys are mocknet's (ECDSA).
func MockHosts(tb testing.TB, n int) []host.Host {
	tb.Helper()
	mn := mocknet.New()
	tb.Cleanup(func() { mn.Close() })
	hs := make([]host.Host, n)
	for i := range hs {
		h, err := mn.GenPeer()
		if err != nil {
			tb.Fatal(err)
		}
		hs[i] = h
	}
	if err := mn.LinkAll(); err != nil {
		tb.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		tb.Fatal(err)
	}
	return hs
}

// Parallel runs fn(0) to fn(n-1), at most width at a time.
func Parallel(n, width int, fn func(i int)) {
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	for i := range n {
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
