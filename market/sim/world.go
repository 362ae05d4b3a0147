package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"time"

	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// Config describes a simulated network. Its zero value is 100 nodes with
// the shares below.
type Config struct {
	// Nodes is how many daemons start; zero means 100.
	Nodes int
	// ProviderShare of the nodes sell GPUs (eight each), four in five of
	// them H100s and the rest A100s; two more sell the rare class. Zero
	// means a tenth.
	ProviderShare float64
	// NATShare of the nodes sit behind NAT: they dial out and are reached
	// only over connections they opened. Providers among them are reached
	// by requesters only when they dial first (by bidding on gossip).
	// Zero means none; negative is taken as zero.
	NATShare float64
	// Loss is the share of messages lost on their first try (resent after
	// a retransmission timeout); zero means none.
	Loss float64
	// Degree is how many random public nodes a joining node dials before
	// its first DHT walk; zero means 4.
	Degree int
	// Seed makes the network's layout repeatable; zero means 1.
	Seed int64
	// RTTScale multiplies every link's round trip (0.01 makes the
	// regions' 20-300 ms about loopback's); zero means 1.
	RTTScale float64
	// HandshakeRTTs is what opening a connection costs, in round trips:
	// 1 for QUIC, which the daemon listens on and libp2p dials first;
	// 2 for TCP (its handshake, then TLS 1.3's with the muxer agreed
	// within it). Zero means 1.
	HandshakeRTTs int
	// Cost is what handling a market request costs a node, on the light
	// tier only; its zero value, nothing.
	Cost Cost
	// Market is every node's market configuration (prices apart); its
	// zero value is the daemon's defaults.
	Market market.Config
}

// classOf is what node i sells: the first two the rare class, then
// ProviderShare of the nodes, four in five H100s and the rest A100s.
func (c *Config) classOf(i int) string {
	providers := max(int(float64(c.Nodes)*c.ProviderShare), 5)
	switch {
	case i < 2:
		return classRare
	case i < 2+providers*4/5:
		return classH100
	case i < 2+providers:
		return classA100
	}
	return ""
}

func (c *Config) withDefaults() {
	if c.Nodes == 0 {
		c.Nodes = 100
	}
	if c.ProviderShare == 0 {
		c.ProviderShare = 0.1
	}
	c.NATShare = max(c.NATShare, 0)
	if c.Degree == 0 {
		c.Degree = 4
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.RTTScale == 0 {
		c.RTTScale = 1
	}
	if c.HandshakeRTTs == 0 {
		c.HandshakeRTTs = 1
	}
}

// World is a simulated network of daemons. Build it, and everything
// after, inside a synctest bubble: its clock is then virtual, and moves
// only when every goroutine waits.
type World struct {
	cfg     Config
	net     *Net
	wallets wallets

	mu    sync.Mutex
	rng   *rand.Rand
	nodes []*Node // live and gone, by index
	busy  map[int]bool
	obs   *observer
}

// NewWorld builds cfg's nodes and joins them to the network: each dials
// a few random public nodes that joined before it, then walks the DHT
// and refreshes its routing table, all at once. Then the markets start.
func NewWorld(ctx context.Context, cfg Config) (*World, error) {
	cfg.withDefaults()
	w := &World{cfg: cfg, net: newNet(cfg.Seed, cfg.Loss, cfg.RTTScale, cfg.HandshakeRTTs), rng: rand.New(rand.NewSource(cfg.Seed)), busy: map[int]bool{}}
	for i := range cfg.Nodes {
		class := cfg.classOf(i)
		// Providers of the rare class are public: they are what gossip
		// must reach.
		if _, err := w.add(class, i >= 2 && w.rng.Float64() < cfg.NATShare); err != nil {
			return nil, errors.Join(err, w.Close())
		}
	}
	errs := make([]error, len(w.nodes))
	p2ptest.Parallel(len(w.nodes), 1024, func(i int) { errs[i] = w.join(ctx, w.nodes[i]) })
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(err, w.Close())
	}
	for _, n := range w.nodes {
		n.start()
	}
	return w, nil
}

// add builds the next node, selling class when not empty.
func (w *World) add(class string, nat bool) (*Node, error) {
	w.mu.Lock()
	index := len(w.nodes)
	pl := &place{region: w.rng.Intn(len(regionNames)), nat: nat}
	price := 1000 + w.rng.Intn(1000)
	w.mu.Unlock()
	n, err := w.newNode(index, pl, class, price)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.nodes = append(w.nodes, n)
	w.mu.Unlock()
	return n, nil
}

// join dials Degree random live public nodes among those before n (the
// first nodes have fewer), waits for identify, then walks the DHT. Under
// churn a node picked may leave while it is dialled: one that answers
// is enough.
func (w *World) join(ctx context.Context, n *Node) error {
	var errs []error
	peers := w.pick(n.Index, w.cfg.Degree, func(o *Node) bool { return !o.place.nat })
	for _, p := range peers {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := n.host.Connect(cctx, p2ptest.AddrInfo(p.P2P)); err != nil {
			errs = append(errs, fmt.Errorf("sim: node %d dials %d: %w", n.Index, p.Index, err))
		}
		cancel()
	}
	if len(peers) > 0 && len(errs) == len(peers) {
		return errors.Join(errs...)
	}
	time.Sleep(time.Second) // identify, then the DHT adds the peers
	if err := n.P2P.Bootstrap(ctx); err != nil {
		return fmt.Errorf("sim: node %d bootstrap: %w", n.Index, err)
	}
	// A node alone in its routing table (the very first) has nobody to
	// ask yet: its refresh fails and it learns its peers as they come.
	_ = n.P2P.RefreshRoutingTable(ctx)
	return nil
}

// pick chooses up to k distinct live nodes with index below before that
// ok accepts, at random.
func (w *World) pick(before, k int, ok func(*Node) bool) []*Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*Node
	for _, i := range w.rng.Perm(before) {
		if o := w.nodes[i]; !o.Gone() && ok(o) {
			out = append(out, o)
			if len(out) == k {
				break
			}
		}
	}
	return out
}

// requester picks a live node that sells nothing and is not negotiating,
// and marks it busy until done is called.
func (w *World) requester() (*Node, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		n := w.nodes[w.rng.Intn(len(w.nodes))]
		if n.Class == "" && n.Up() && !w.busy[n.Index] {
			w.busy[n.Index] = true
			return n, func() {
				w.mu.Lock()
				delete(w.busy, n.Index)
				w.mu.Unlock()
			}
		}
	}
}

// Live is the nodes on the network now, joined and not gone.
func (w *World) Live() []*Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*Node
	for _, n := range w.nodes {
		if n.Up() {
			out = append(out, n)
		}
	}
	return out
}

// Churn replaces nodes at rate (a share of the network per hour) until
// ctx ends: a random live node that is not negotiating and sells no
// rare GPUs leaves, and a new node of the same kind joins. It reports
// how many were replaced.
func (w *World) Churn(ctx context.Context, rate float64) (int, error) {
	every := time.Duration(float64(time.Hour) / (rate * float64(w.cfg.Nodes)))
	t := time.NewTicker(every)
	defer t.Stop()
	replaced := 0
	for {
		select {
		case <-ctx.Done():
			return replaced, nil
		case <-t.C:
		}
		if err := w.replace(ctx); err != nil {
			return replaced, err
		}
		replaced++
	}
}

func (w *World) replace(ctx context.Context) error {
	w.mu.Lock()
	var old *Node
	for old == nil {
		n := w.nodes[w.rng.Intn(len(w.nodes))]
		if n.Up() && !w.busy[n.Index] && n.Class != classRare {
			old = n
		}
	}
	w.mu.Unlock()
	if err := old.leave(); err != nil {
		return fmt.Errorf("sim: node %d leaves: %w", old.Index, err)
	}
	n, err := w.add(old.Class, old.place.nat)
	if err != nil {
		return err
	}
	if err := w.join(ctx, n); err != nil {
		return err
	}
	w.observe(n)
	n.start()
	return nil
}

// Close takes every live node off the network and closes the mocknet.
func (w *World) Close() error {
	var errs []error
	for _, n := range w.all() {
		if !n.Gone() {
			errs = append(errs, n.leave())
		}
	}
	w.obs.close()
	errs = append(errs, w.net.Close())
	return errors.Join(errs...)
}
