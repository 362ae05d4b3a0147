package sim

import (
	"math"
	"slices"
	"time"
)

// GossipSub's mesh degree and its bounds.
const (
	meshD   = 6
	meshDlo = 4
	meshDhi = 12
)

// joinMesh grafts n to random peers until its mesh has D, each a peer
// with room in its own mesh that one side can dial (not both behind
// NAT); a graft connects them.
func (w *lightWorld) joinMesh(n *lnode) {
	ok := func(o *lnode) bool {
		return o != n && !(o.nat && n.nat) && len(o.mesh) < meshDhi && !slices.Contains(n.mesh, o.idx)
	}
	for _, p := range w.pick(meshD-len(n.mesh), ok) {
		n.mesh = append(n.mesh, p.idx)
		p.mesh = append(p.mesh, n.idx)
		w.net.connect(n, p)
	}
}

// leaveMesh drops n from its peers' meshes; a peer left under Dlo grafts
// new peers, as its next heartbeat would.
func (w *lightWorld) leaveMesh(n *lnode) {
	for _, p := range n.mesh {
		o := w.net.nodes[p]
		if i := slices.Index(o.mesh, n.idx); i >= 0 {
			o.mesh = slices.Delete(o.mesh, i, i+1)
		}
		if len(o.mesh) < meshDlo && !o.gone {
			w.joinMesh(o)
		}
	}
	n.mesh = nil
}

// gossip publishes a message from n: to every peer it is connected to
// (GossipSub's flood publishing), then each node forwards it to its
// mesh on first receipt. arrive runs at each node on first receipt,
// the publisher's at once.
func (w *lightWorld) gossip(n *lnode, arrive func(*lnode)) {
	got := map[int32]bool{n.idx: true}
	arrive(n)
	var forward func(from, to *lnode)
	forward = func(from, to *lnode) {
		w.net.send("gossip", from, to, func() {
			if got[to.idx] {
				return
			}
			got[to.idx] = true
			arrive(to)
			for _, p := range to.mesh {
				if p != from.idx && !got[p] {
					forward(to, w.net.nodes[p])
				}
			}
		})
	}
	for p := range n.conns {
		forward(n, w.net.nodes[p])
	}
}

// gossipRound publishes count offers from random requesters, one every
// every, and returns how long each took to reach 99% of the live nodes
// and how many never did.
func (w *lightWorld) gossipRound(count int, every time.Duration) ([]time.Duration, int) {
	arrivals := make([][]time.Duration, count)
	for i := range count {
		w.ev.after(time.Duration(i)*every, func() {
			n, done := w.requester()
			start := w.ev.now
			w.gossip(n, func(*lnode) { arrivals[i] = append(arrivals[i], w.ev.now-start) })
			done()
		})
	}
	w.ev.runFor(time.Duration(count)*every + 5*time.Second)
	need := int(math.Ceil(0.99 * float64(len(w.liveNodes()))))
	var took []time.Duration
	short := 0
	for _, at := range arrivals {
		if len(at) >= need {
			slices.Sort(at)
			took = append(took, at[need-1])
		} else {
			short++
		}
	}
	return took, short
}
