package sim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/fxamacker/cbor/v2"
	"github.com/libp2p/go-libp2p/core/crypto"
	ma "github.com/multiformats/go-multiaddr"
)

// The GPU classes of the simulated providers: most sell H100s, some
// A100s, and two sell a rare class, too few for a requester's fanout.
// Nobody sells the unsold class: the DHT names no provider of it, so
// its offers go out by gossip (an offer for the rare class goes straight
// to its two providers, gossiped only when its lookup ran dry in time).
const (
	classH100   = "nvidia-h100-80gb"
	classA100   = "nvidia-a100-80gb"
	classRare   = "nvidia-b200-192gb"
	classUnsold = "nvidia-gh200-96gb"
	netName     = "sim"
)

// Node is one simulated daemon: the p2p node and the market of the real
// code, on a mocknet host.
type Node struct {
	Index    int
	P2P      *p2p.Node
	Market   *market.Market
	Class    string // the GPUs it sells; empty for a node that only requests
	place    *place
	host     *simHost
	up       atomic.Bool
	stop     context.CancelFunc
	running  sync.WaitGroup
	closeErr error
}

// Gone says whether the node has left the network.
func (n *Node) Gone() bool { return n.place.gone.Load() }

// Up says whether the node has joined (its DHT walk done, its market
// running) and not left.
func (n *Node) Up() bool { return n.up.Load() && !n.Gone() }

// wallets stands in for the chain's deal signer: an ed25519 key per
// wallet, the wallet named by a hash of its public key.
type wallets struct{ keys sync.Map } // wallet -> ed25519.PublicKey

type wallet struct {
	priv ed25519.PrivateKey
	addr string
	all  *wallets
}

func (ws *wallets) open() (*wallet, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sim: wallet key: %w", err)
	}
	h := sha256.Sum256(pub)
	w := &wallet{priv: priv, addr: "0x" + hex.EncodeToString(h[:20]), all: ws}
	ws.keys.Store(w.addr, pub)
	return w, nil
}

func (w *wallet) Wallet() string { return w.addr }

func (w *wallet) SignDeal(t market.DealTerms) ([]byte, error) {
	b, err := cbor.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("sim: deal terms: %w", err)
	}
	return ed25519.Sign(w.priv, b), nil
}

func (w *wallet) VerifyDeal(t market.DealTerms, sig []byte, addr string) error {
	pub, ok := w.all.keys.Load(addr)
	if !ok {
		return errors.New("sim: unknown wallet")
	}
	b, err := cbor.Marshal(t)
	if err != nil {
		return fmt.Errorf("sim: deal terms: %w", err)
	}
	if !ed25519.Verify(pub.(ed25519.PublicKey), b, sig) {
		return errors.New("sim: bad deal signature")
	}
	return nil
}

// inventory is a fixed set of healthy GPUs (none for a requester).
type inventory struct{ inv gpu.Inventory }

func newInventory(index int, class string) *inventory {
	inv := gpu.Inventory{Source: "sim", Host: gpu.Host{CPUCores: 64, MemoryMiB: 1 << 20, DiskFreeMiB: 1 << 20}}
	for g := 0; class != "" && g < 8; g++ {
		inv.GPUs = append(inv.GPUs, gpu.GPU{Index: g, UUID: fmt.Sprintf("GPU-%d-%d", index, g), Class: class, MemoryMiB: 81920, Health: gpu.Healthy})
	}
	return &inventory{inv}
}

func (i *inventory) Inventory() gpu.Inventory { return i.inv }
func (i *inventory) Subscribe() (<-chan gpu.Change, func()) {
	return make(chan gpu.Change), func() {}
}

var quiet = slog.New(slog.DiscardHandler)

// addrOf is node index's mocknet address, in p2ptest's range.
func addrOf(index int) ma.Multiaddr {
	ip := make(net.IP, net.IPv6len)
	copy(ip, p2ptest.MocknetRange.IP)
	ip[13], ip[14], ip[15] = byte((index+1)>>16), byte((index+1)>>8), byte(index+1)
	return ma.StringCast(fmt.Sprintf("/ip6/%s/tcp/4242", ip))
}

// newNode builds node index at pl, selling class (none when empty) at
// price: the host, the p2p node as the daemon configures it, and the
// market. It dials nobody.
func (w *World) newNode(index int, pl *place, class string, price int) (*Node, error) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sim: key: %w", err)
	}
	mh, err := w.net.mn.AddPeer(key, addrOf(index))
	if err != nil {
		return nil, fmt.Errorf("sim: add peer: %w", err)
	}
	w.net.mu.Lock()
	w.net.nodes[mh.ID()] = pl
	w.net.mu.Unlock()
	h, err := newSimHost(mh, w.net, 64, 192) // the daemon's watermarks
	if err != nil {
		return nil, err
	}
	pc := p2p.Config{Network: netName, NoNAT: true, Host: h, Logger: quiet,
		Records: []p2p.RecordValidator{market.AdvertRecord()}, ColocatedNets: []*net.IPNet{p2ptest.MocknetRange}}
	pn, err := p2p.New(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("sim: p2p node: %w", err)
	}
	wl, err := w.wallets.open()
	if err != nil {
		return nil, err
	}
	mc := w.cfg.Market
	mc.Logger = quiet
	if class != "" {
		mc.Prices = map[string]map[string]string{class: {"native": fmt.Sprint(price)}}
	}
	m, err := market.New(pn, key, newInventory(index, class), wl, mc)
	if err != nil {
		return nil, fmt.Errorf("sim: market: %w", err)
	}
	return &Node{Index: index, P2P: pn, Market: m, Class: class, place: pl, host: h}, nil
}

// start runs the node's market until stop.
func (n *Node) start() {
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	n.running.Add(1)
	n.up.Store(true)
	go func() {
		defer n.running.Done()
		if err := n.Market.Run(ctx); err != nil {
			n.closeErr = err
		}
	}()
}

// leave takes the node off the network: peers that dial it from now on
// get no answer; its market, p2p node and host close.
func (n *Node) leave() error {
	n.place.gone.Store(true)
	if n.stop != nil {
		n.stop()
	}
	errs := []error{n.Market.Close(time.Minute)}
	n.running.Wait()
	errs = append(errs, n.closeErr, n.P2P.Close(), n.host.Close())
	return errors.Join(errs...)
}
