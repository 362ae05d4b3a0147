package sim

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	bconnmgr "github.com/libp2p/go-libp2p/p2p/net/connmgr"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// Regions and their round trips: a node sits in one region, and a link's
// round trip is that of its two regions, give or take a tenth. Within a
// region 20 ms, across an ocean up to 300 ms.
var (
	regionNames = []string{"us-east", "us-west", "europe", "asia", "south-america"}
	regionRTT   = [][]time.Duration{
		{20, 70, 90, 220, 130},
		{70, 20, 150, 150, 190},
		{90, 150, 20, 250, 210},
		{220, 150, 250, 20, 300},
		{130, 190, 210, 300, 20},
	}
)

// dialTimeout is how long a dial to a peer that cannot be reached (gone,
// or behind NAT with no connection to it) hangs before it fails, as an
// unanswered TCP or QUIC handshake would.
const dialTimeout = 5 * time.Second

// Net is a mocknet whose links are made on the first dial between two
// nodes, each with the latency of their regions: linking every pair up
// front, as mocknet's LinkAll does, takes memory by the square of the
// nodes. It knows which nodes are behind NAT (they dial out, and are
// reached only over connections they opened) and which have left (a dial
// to them hangs for dialTimeout), and counts the messages each protocol
// family sends.
type Net struct {
	mn    mocknet.Mocknet
	loss  float64
	scale float64 // of every round trip
	// handshake is what a new connection costs, in round trips.
	handshake int

	linkMu sync.Mutex
	mu     sync.Mutex
	rng    *rand.Rand
	nodes  map[peer.ID]*place
	hosts  []*simHost

	counts sync.Map // family -> *atomic.Int64
}

// place is where a node sits on the network.
type place struct {
	region int
	nat    bool
	gone   atomic.Bool
}

func newNet(seed int64, loss, scale float64, handshake int) *Net {
	return &Net{mn: mocknet.New(), loss: loss, scale: scale, handshake: handshake, rng: rand.New(rand.NewSource(seed)), nodes: map[peer.ID]*place{}}
}

// rtt is the round trip between two regions, with a tenth of jitter.
func (n *Net) rtt(a, b int) time.Duration {
	n.mu.Lock()
	j := 0.9 + 0.2*n.rng.Float64()
	n.mu.Unlock()
	return time.Duration(float64(regionRTT[a][b]*time.Millisecond) * j * n.scale)
}

// lost says whether a message is lost on its first try.
func (n *Net) lost() bool {
	if n.loss == 0 {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rng.Float64() < n.loss
}

// reach makes sure from can dial to: a link exists, or is made now. A
// peer that left, or sits behind NAT with no connection to from, is not
// reached: the dial hangs until ctx ends or dialTimeout passes.
func (n *Net) reach(ctx context.Context, from, to peer.ID) error {
	if n.mn.Net(from).Connectedness(to) == network.Connected {
		return nil
	}
	n.mu.Lock()
	pf, pt := n.nodes[from], n.nodes[to]
	n.mu.Unlock()
	if pt == nil || pf == nil || pt.gone.Load() || pt.nat {
		// As libp2p's swarm, a shorter dial peer timeout on ctx wins.
		t := time.NewTimer(min(dialTimeout, network.GetDialPeerTimeout(ctx)))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return fmt.Errorf("sim: dial %s: no answer", to)
		}
	}
	l, err := n.link(from, to, pf, pt)
	if err != nil {
		return err
	}
	// Mocknet connects at once; a new connection costs round trips
	// (Config.HandshakeRTTs).
	time.Sleep(time.Duration(n.handshake) * 2 * l.Options().Latency)
	return nil
}

// link is the link between from and to, made now if there is none.
func (n *Net) link(from, to peer.ID, pf, pt *place) (mocknet.Link, error) {
	n.linkMu.Lock() // two dials at once make one link
	defer n.linkMu.Unlock()
	if ls := n.mn.LinksBetweenPeers(from, to); len(ls) > 0 {
		return ls[0], nil
	}
	l, err := n.mn.LinkPeers(from, to)
	if err != nil {
		return nil, fmt.Errorf("sim: link: %w", err)
	}
	// Mocknet delays each write by the link's latency: one way.
	l.SetOptions(mocknet.LinkOptions{Latency: n.rtt(pf.region, pt.region) / 2})
	return l, nil
}

// latency is the one-way latency between a and b; zero when no link
// was made.
func (n *Net) latency(a, b peer.ID) time.Duration {
	if ls := n.mn.LinksBetweenPeers(a, b); len(ls) > 0 {
		return ls[0].Options().Latency
	}
	return 0
}

// count adds one message of the protocol family of id.
func (n *Net) count(id protocol.ID) {
	f := family(id)
	c, ok := n.counts.Load(f)
	if !ok {
		c, _ = n.counts.LoadOrStore(f, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(1)
}

// Counts is the messages sent so far, by protocol family.
func (n *Net) Counts() map[string]int64 {
	out := map[string]int64{}
	n.counts.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// family names what a protocol ID is part of: the DHT, GossipSub, the
// market, or other (identify, membership).
func family(id protocol.ID) string {
	s := string(id)
	switch {
	case strings.Contains(s, "/kad/"):
		return "dht"
	case strings.Contains(s, "meshsub"):
		return "gossip"
	case strings.Contains(s, "/market/"):
		return "market"
	}
	return "other"
}

// simHost is a mocknet host that dials through Net, counts what it
// sends, and trims its connections as a daemon's connection manager
// does (mocknet's hosts keep every connection they ever made).
type simHost struct {
	host.Host
	net *Net
	cm  *bconnmgr.BasicConnMgr

	mu   sync.Mutex
	open map[*countedStream]struct{}
}

func newSimHost(h host.Host, n *Net, low, high int) (*simHost, error) {
	cm, err := bconnmgr.NewConnManager(low, high, bconnmgr.WithGracePeriod(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("sim: connection manager: %w", err)
	}
	h.Network().Notify(cm.Notifee())
	sh := &simHost{Host: h, net: n, cm: cm, open: map[*countedStream]struct{}{}}
	n.mu.Lock()
	n.hosts = append(n.hosts, sh)
	n.mu.Unlock()
	return sh, nil
}

func (h *simHost) ConnManager() connmgr.ConnManager { return h.cm }

func (h *simHost) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if err := h.net.reach(ctx, h.ID(), ai.ID); err != nil {
		return err
	}
	return h.Host.Connect(ctx, ai)
}

func (h *simHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	if err := h.net.reach(ctx, h.ID(), p); err != nil {
		return nil, err
	}
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	cs := &countedStream{Stream: s, net: h.net, host: h, rto: h.net.rto(s.Conn())}
	h.mu.Lock()
	h.open[cs] = struct{}{}
	h.mu.Unlock()
	return cs, nil
}

// resetAll resets the streams this host opened that were never closed.
// Mocknet lets a stream open on a connection that is closing, and never
// resets it: both ends then wait for ever for the protocol's handshake.
func (h *simHost) resetAll() {
	h.mu.Lock()
	open := make([]*countedStream, 0, len(h.open))
	for s := range h.open {
		open = append(open, s)
	}
	h.mu.Unlock()
	for _, s := range open {
		s.Reset()
	}
}

// Close resets the streams every host opened and left open, once all
// hosts are closed, and closes the mocknet.
func (n *Net) Close() error {
	n.mu.Lock()
	hosts := n.hosts
	n.mu.Unlock()
	for _, h := range hosts {
		h.resetAll()
	}
	return n.mn.Close()
}

func (h *simHost) Close() error {
	h.cm.Close()
	return h.Host.Close()
}

// rto is the retransmission timeout of a connection: three round trips
// of its link, and at least 200 ms, as Linux's TCP.
func (n *Net) rto(c network.Conn) time.Duration {
	return max(6*n.latency(c.LocalPeer(), c.RemotePeer()), 200*time.Millisecond)
}

// countedStream counts the messages written on a stream this node
// opened: requests, and GossipSub's RPCs. A market request is counted
// once though written as a length and a body. With loss, a message lost
// on its first try is sent again after the connection's retransmission
// timeout, and what follows it on the stream waits too (head-of-line
// blocking, as on TCP).
type countedStream struct {
	network.Stream
	net     *Net
	host    *simHost
	rto     time.Duration
	counted bool
}

func (s *countedStream) Close() error {
	err := s.Stream.Close()
	s.forget()
	return err
}

func (s *countedStream) Reset() error {
	err := s.Stream.Reset()
	s.forget()
	return err
}

func (s *countedStream) forget() {
	s.host.mu.Lock()
	delete(s.host.open, s)
	s.host.mu.Unlock()
}

func (s *countedStream) Write(b []byte) (int, error) {
	if fam := family(s.Protocol()); fam != "market" || !s.counted {
		s.counted = true
		s.net.count(s.Protocol())
		if s.net.lost() {
			time.Sleep(s.rto)
		}
	}
	return s.Stream.Write(b)
}
