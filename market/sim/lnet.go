package sim

import (
	"encoding/binary"
	"hash/fnv"
	"math/bits"
	"math/rand"
	"sort"
	"time"
)

// lnode is one node of the light tier: no libp2p host, just what the
// models of the DHT, gossip and market keep per node.
type lnode struct {
	idx    int32
	key    kkey
	region int
	nat    bool
	gone   bool
	up     bool
	class  string
	price  int

	conns   map[int32]time.Duration // peer -> last use
	mesh    []int32                 // gossip mesh peers
	buckets [][]int32               // routing table by common prefix length
	records map[kkey][]int32        // provider records held here

	// market state: a provider's GPUs, a requester's advert cache
	gpus      int
	held      map[uint64]time.Duration // offer -> reserved until
	cache     map[int32]int            // provider -> price, from adverts
	refreshed time.Duration
	refreshOK bool
	msgs      int64 // market requests sent
	// republishing is set while an advert's republish waits
	republishing bool
}

// kkey is a 256-bit Kademlia key, as the SHA-256 of a peer ID or CID.
type kkey [4]uint64

func (a kkey) xor(b kkey) kkey {
	return kkey{a[0] ^ b[0], a[1] ^ b[1], a[2] ^ b[2], a[3] ^ b[3]}
}

func (a kkey) less(b kkey) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// cpl is the length of the common prefix of a and b, in bits.
func (a kkey) cpl(b kkey) int {
	for i := range a {
		if x := a[i] ^ b[i]; x != 0 {
			return 64*i + bits.LeadingZeros64(x)
		}
	}
	return 256
}

func randKey(rng *rand.Rand) kkey {
	return kkey{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()}
}

// lnet is the light tier's network: links with the regions' round
// trips, connections opened on first use (two round trips, as the full
// tier's), trimmed by the daemon's watermarks, nodes behind NAT reached
// only over their own connections, and a count of requests by family.
type lnet struct {
	ev     *events
	nodes  []*lnode
	counts map[string]int64
	scale  float64 // of every round trip
	// handshake is what a new connection costs, in round trips.
	handshake int
	// cpu charges the handling of a request (see Cost).
	cpu *cpus
}

// oneWay is the one-way latency between a and b: half their regions'
// round trip, with a tenth of jitter fixed for the pair.
func (n *lnet) oneWay(a, b *lnode) time.Duration {
	lo, hi := min(a.idx, b.idx), max(a.idx, b.idx)
	h := fnv.New64a()
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], uint64(lo)<<32|uint64(hi))
	h.Write(buf[:])
	j := 0.9 + 0.2*float64(h.Sum64()%1000)/1000
	return time.Duration(float64(regionRTT[a.region][b.region]*time.Millisecond) * j * n.scale / 2)
}

// Connection watermarks and grace, as the daemon's connection manager.
const (
	connLow   = 64
	connHigh  = 192
	connGrace = time.Minute
)

func (n *lnet) connected(a, b *lnode) bool {
	_, ok := a.conns[b.idx]
	return ok
}

func (n *lnet) connect(a, b *lnode) {
	a.conns[b.idx], b.conns[a.idx] = n.ev.now, n.ev.now
	n.trim(a)
	n.trim(b)
}

// trim closes the least recently used connections of a past the high
// watermark, down to the low one; mesh peers and connections younger
// than the grace period stay.
func (n *lnet) trim(a *lnode) {
	if len(a.conns) <= connHigh {
		return
	}
	inMesh := map[int32]bool{}
	for _, p := range a.mesh {
		inMesh[p] = true
	}
	type c struct {
		p    int32
		used time.Duration
	}
	var cs []c
	for p, t := range a.conns {
		if !inMesh[p] && n.ev.now-t > connGrace {
			cs = append(cs, c{p, t})
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].used < cs[j].used || cs[i].used == cs[j].used && cs[i].p < cs[j].p })
	for _, x := range cs[:max(0, min(len(cs), len(a.conns)-connLow))] {
		delete(a.conns, x.p)
		delete(n.nodes[x.p].conns, a.idx)
	}
}

// request sends a request of family from a to b; b answers with
// handle's result one way later. Without a connection, one is opened
// first (two round trips); a node that left, or one behind NAT with no
// connection to a, does not answer, and fail runs after dialTimeout.
// A request or answer to a node that left on the way is lost (fail
// runs after dialTimeout from the send).
func (n *lnet) request(fam string, a, b *lnode, handle func() func(), fail func()) {
	n.requestDial(fam, a, b, dialTimeout, handle, fail)
}

// requestDial is request whose dial gives up after dial, as a dial
// under a context with libp2p's dial peer timeout does.
func (n *lnet) requestDial(fam string, a, b *lnode, dial time.Duration, handle func() func(), fail func()) {
	n.counts[fam]++
	if b.gone || (!n.connected(a, b) && b.nat) {
		n.ev.after(min(dial, dialTimeout), fail)
		return
	}
	delay := n.oneWay(a, b)
	if !n.connected(a, b) {
		delay += time.Duration(n.handshake) * 2 * n.oneWay(a, b)
	}
	sent := n.ev.now
	n.ev.after(delay, func() {
		if b.gone || a.gone {
			n.ev.after(dialTimeout-(n.ev.now-sent), fail)
			return
		}
		if !n.connected(a, b) {
			n.connect(a, b)
		}
		a.conns[b.idx], b.conns[a.idx] = n.ev.now, n.ev.now
		n.cpu.handle(fam, b, func() {
			reply := handle()
			n.ev.after(n.oneWay(a, b), func() {
				if !a.gone && reply != nil {
					reply()
				}
			})
		})
	})
}

// send is a one-way message from a to b over a connection they have
// (or none is sent): gossip, releases.
func (n *lnet) send(fam string, a, b *lnode, deliver func()) {
	if b.gone || !n.connected(a, b) {
		return
	}
	n.counts[fam]++
	n.ev.after(n.oneWay(a, b), func() {
		if !b.gone {
			deliver()
		}
	})
}
