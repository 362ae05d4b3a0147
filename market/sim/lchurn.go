package sim

import "time"

// churn replaces nodes at rate (a share of the network per hour) until
// the returned stop runs, as World.Churn.
func (w *lightWorld) churn(rate float64) (stop func()) {
	every := time.Duration(float64(time.Hour) / (rate * float64(w.cfg.Nodes)))
	stopped := false
	var tick func()
	tick = func() {
		if stopped {
			return
		}
		w.replace()
		w.ev.after(every, tick)
	}
	w.ev.after(every, tick)
	return func() { stopped = true }
}

// replace takes a random live node that is not negotiating and sells no
// rare GPUs off the network, and joins a new node of the same kind: its
// routing table from every live node, its key learnt by its closest
// peers and bootstrap peers (its self-lookup), its mesh, its adverts.
func (w *lightWorld) replace() {
	var old *lnode
	for old == nil {
		n := w.net.nodes[w.rng.Intn(len(w.net.nodes))]
		if n.up && !n.gone && !w.busy[n.idx] && n.class != classRare {
			old = n
		}
	}
	old.gone = true
	w.leaveMesh(old)
	for p := range old.conns {
		delete(w.net.nodes[p].conns, old.idx)
	}
	n := w.add(old.class, old.nat)
	for _, o := range w.liveNodes() {
		if !o.nat {
			w.learn(n, o)
		}
	}
	w.dialBootstrap(n)
	for _, p := range w.closest(n, n.key, kadK) {
		w.net.connect(n, w.net.nodes[p])
	}
	for p := range n.conns {
		w.learn(w.net.nodes[p], n)
	}
	w.joinMesh(n)
	w.publish(n)
	w.replaced++
}
