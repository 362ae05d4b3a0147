package market

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// fakeSigner stands in for the wallet at the DealSigner boundary: ed25519
// keys, with "wallets" derived from them. Package chain's real EIP-712
// signer is tested there and end to end through the daemon.
type fakeSigner struct {
	priv   ed25519.PrivateKey
	wallet string
}

var fakeWallets sync.Map // wallet -> ed25519.PublicKey

func newFakeSigner() *fakeSigner {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	h := sha256.Sum256(pub)
	w := "0x" + hex.EncodeToString(h[:20])
	fakeWallets.Store(w, pub)
	return &fakeSigner{priv, w}
}

func (f *fakeSigner) Wallet() string { return f.wallet }
func (f *fakeSigner) SignDeal(t DealTerms) ([]byte, error) {
	b, err := canonical(t)
	if err != nil {
		return nil, err
	}
	return ed25519.Sign(f.priv, b), nil
}
func (f *fakeSigner) VerifyDeal(t DealTerms, sig []byte, wallet string) error {
	pub, ok := fakeWallets.Load(wallet)
	if !ok {
		return errors.New("unknown wallet")
	}
	b, _ := canonical(t)
	if !ed25519.Verify(pub.(ed25519.PublicKey), b, sig) {
		return errors.New("bad signature")
	}
	return nil
}

// cpuOnly is the inventory of a node without GPUs.
type cpuOnly struct{}

func (cpuOnly) Inventory() gpu.Inventory {
	return gpu.Inventory{Source: "none", Host: gpu.Host{CPUCores: 16, MemoryMiB: 65536, DiskFreeMiB: 100000}}
}
func (cpuOnly) Subscribe() (<-chan gpu.Change, func()) { return make(chan gpu.Change), func() {} }

type tnode struct {
	p2p    *p2p.Node
	m      *Market
	gpus   *gpu.Manager // nil for CPU-only nodes
	signer *fakeSigner
}

type nodeSpec struct {
	mock   string            // "" for CPU-only
	prices map[string]string // class -> price in "native"
}

// startMarket starts one node per spec on loopback, all bootstrapped from
// the first, each with a market running.
func startMarket(t testing.TB, network string, specs []nodeSpec, cfg Config) []*tnode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var nodes []*tnode
	for i, s := range specs {
		key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
		pc := testP2PConfig(network, key)
		if i > 0 {
			pc.Bootstrap = []peer.AddrInfo{{ID: nodes[0].p2p.Host.ID(), Addrs: nodes[0].p2p.Host.Addrs()}}
		}
		tn := newTnode(t, ctx, pc)
		var inv Inventory = cpuOnly{}
		if s.mock != "" {
			g, err := gpu.New(gpu.Config{Mock: s.mock, PollInterval: 100 * time.Millisecond, DiskPath: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			go g.Run(ctx)
			tn.gpus, inv = g, g
		}
		c := cfg
		c.Prices = map[string]map[string]string{}
		for class, p := range s.prices {
			c.Prices[class] = map[string]string{"native": p}
		}
		var err error
		if tn.m, err = New(tn.p2p, key, inv, tn.signer, c); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, tn)
	}
	for _, n := range nodes {
		if err := n.p2p.Bootstrap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		n.p2p.RefreshRoutingTable(ctx)
	}
	for _, n := range nodes {
		go n.m.Run(ctx)
	}
	return nodes
}

// waitProviders polls the DHT from n until want(found) holds.
func waitProviders(t testing.TB, n *tnode, class string, want func([]ProviderInfo) bool) []ProviderInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		found, err := n.m.FindProviders(context.Background(), class, 50)
		if err == nil && want(found) {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("providers of %s: %d found, not what the test waits for (%v)", class, len(found), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ids(ps []ProviderInfo) map[string]bool {
	out := map[string]bool{}
	for _, p := range ps {
		out[p.Advert.PeerID] = true
	}
	return out
}

const specHash = "5d41402abc4b2a76b9719d911017c592ae5d41402abc4b2a76b9719d911017c5"

// testP2PConfig is a quiet loopback node that accepts adverts.
func testP2PConfig(network string, key crypto.PrivKey) p2p.Config {
	return p2p.Config{Network: network, Identity: key, NoNAT: true, DHTRefresh: -1,
		GossipHeartbeat: 200 * time.Millisecond, Records: []p2p.RecordValidator{AdvertRecord()}}
}

// newTnode starts the p2p node of pc, with a fresh fake wallet.
func newTnode(t testing.TB, ctx context.Context, pc p2p.Config) *tnode {
	t.Helper()
	pn, err := p2p.New(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pn.Close() })
	return &tnode{p2p: pn, signer: newFakeSigner()}
}
