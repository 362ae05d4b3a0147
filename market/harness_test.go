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
	"github.com/aixblock/aixblock/internal/leakcheck"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// fakeSigner stands in for the wallet at the DealSigner boundary: ed25519
// keys, with "wallets" derived from them. Package chain's real EIP-712
// signer is tested there and end to end through the daemon.
type fakeSigner struct {
	mu     sync.Mutex // a test may hand a running market another wallet (share)
	priv   ed25519.PrivateKey
	wallet string
}

var fakeWallets sync.Map // wallet -> ed25519.PublicKey

func newFakeSigner() *fakeSigner {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	h := sha256.Sum256(pub)
	w := "0x" + hex.EncodeToString(h[:20])
	fakeWallets.Store(w, pub)
	return &fakeSigner{priv: priv, wallet: w}
}

// share makes f sign with o's wallet: one owner behind two peer IDs.
func (f *fakeSigner) share(o *fakeSigner) {
	o.mu.Lock()
	priv, w := o.priv, o.wallet
	o.mu.Unlock()
	f.mu.Lock()
	f.priv, f.wallet = priv, w
	f.mu.Unlock()
}

func (f *fakeSigner) Wallet() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wallet
}

func (f *fakeSigner) SignDeal(t DealTerms) ([]byte, error) {
	b, err := canonical(t)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
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
	return startMarketEach(t, network, specs, func(_ int, c *Config) { *c = cfg })
}

// startMarketEach is startMarket with each node's config set by edit.
func startMarketEach(t testing.TB, network string, specs []nodeSpec, edit func(i int, c *Config)) []*tnode {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// The markets register their protocols before anyone dials.
	pns := p2ptest.Start(t, len(specs), testP2PConfig(network))
	nodes := make([]*tnode, len(specs))
	for i, s := range specs {
		var inv Inventory = cpuOnly{}
		var gpus *gpu.Manager
		if s.mock != "" {
			g, err := gpu.New(gpu.Config{Mock: s.mock, PollInterval: 100 * time.Millisecond, DiskPath: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			go g.Run(ctx)
			gpus, inv = g, g
		}
		var c Config
		edit(i, &c)
		c.Prices = map[string]map[string]string{}
		for class, p := range s.prices {
			c.Prices[class] = map[string]string{"native": p}
		}
		nodes[i] = newTnode(t, pns[i], inv, c)
		nodes[i].gpus = gpus
	}
	p2ptest.Bootstrap(t, pns)
	for _, n := range nodes {
		go n.m.Run(ctx)
	}
	return nodes
}

// waitProviders polls the DHT from n until want(found) holds.
func waitProviders(t testing.TB, n *tnode, class string, want func([]ProviderInfo) bool) []ProviderInfo {
	t.Helper()
	var found []ProviderInfo
	p2ptest.WaitFor(t, 30*time.Second, func() bool {
		var err error
		found, err = n.m.FindProviders(context.Background(), class, 50)
		return err == nil && want(found)
	}, "the providers of %s found are never what the test waits for", class)
	return found
}

func ids(ps []ProviderInfo) map[string]bool {
	out := map[string]bool{}
	for _, p := range ps {
		out[p.Advert.PeerID] = true
	}
	return out
}

const specHash = "5d41402abc4b2a76b9719d911017c592ae5d41402abc4b2a76b9719d911017c5"

// testP2PConfig is a quiet node that accepts adverts.
func testP2PConfig(network string) p2p.Config {
	pc := p2ptest.Config(network)
	pc.Records = []p2p.RecordValidator{AdvertRecord()}
	return pc
}

// newTnode puts a market with a fresh fake wallet on the p2p node pn.
func newTnode(t testing.TB, pn *p2p.Node, inv Inventory, cfg Config) *tnode {
	t.Helper()
	tn := &tnode{p2p: pn, signer: newFakeSigner()}
	m, err := New(pn, pn.Host.Peerstore().PrivKey(pn.Host.ID()), inv, tn.signer, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the node's own cleanup, it runs before it: the
	// market stops while its node is still up.
	t.Cleanup(func() {
		if err := m.Close(leakcheck.Wait); err != nil {
			t.Error(err)
		}
	})
	tn.m = m
	return tn
}
