package market

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/p2p"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	mh "github.com/multiformats/go-multihash"
)

// AdvertNamespace is the DHT namespace of provider adverts:
// /aixblock-provider/<peer-id>.
const AdvertNamespace = "aixblock-provider"

// Keys a provider announces besides its GPU classes.
const (
	AnyGPU = "any-gpu"
	CPU    = "cpu"
)

// AdvertRecord is the DHT validator for adverts: size first, then the
// envelope, the signature by the peer the key names, version and expiry.
// The newest valid advert wins.
func AdvertRecord() p2p.RecordValidator {
	return p2p.RecordValidator{
		Namespace: AdvertNamespace,
		MaxSize:   MaxAdvertBytes,
		Check: func(key string, value []byte) error {
			_, err := decodeAdvert(key, value, time.Now())
			return err
		},
		Pick: func(key string, values [][]byte) (int, error) {
			best, bestAt := -1, int64(-1)
			for i, v := range values {
				a, err := decodeAdvert(key, v, time.Now())
				if err == nil && a.IssuedAtMs > bestAt {
					best, bestAt = i, a.IssuedAtMs
				}
			}
			if best < 0 {
				return 0, fmt.Errorf("%w: no valid advert for %s", ErrInvalid, key)
			}
			return best, nil
		},
	}
}

func advertKey(p peer.ID) string { return "/" + AdvertNamespace + "/" + p.String() }

func decodeAdvert(key string, raw []byte, now time.Time) (*ProviderAdvert, error) {
	var a ProviderAdvert
	if _, err := open("advert", raw, MaxAdvertBytes, &a); err != nil {
		return nil, err
	}
	if key != "" && key != "/"+AdvertNamespace+"/"+a.PeerID {
		return nil, bad("advert of %s stored under %s", a.PeerID, key)
	}
	if err := a.validate(now); err != nil {
		return nil, err
	}
	return &a, nil
}

// classCID is the DHT key providers of a GPU class (or any-gpu, cpu)
// announce themselves under, on this network.
func classCID(network, class string) cid.Cid {
	h, _ := mh.Sum([]byte("/aixblock/"+network+"/gpu-class/"+class), mh.SHA2_256, -1)
	return cid.NewCidV1(cid.Raw, h)
}

// ClassCID is the DHT key the providers of class (a GPU class key,
// any-gpu or cpu) announce themselves under on network: what a
// simulation or a tool looks up to find them as the market does.
func ClassCID(network, class string) cid.Cid { return classCID(network, class) }

// buildAdvert describes the free healthy GPUs now.
func (m *Market) buildAdvert(now time.Time) *ProviderAdvert {
	inv := m.inv.Inventory()
	use := m.inUse()
	a := &ProviderAdvert{
		Version: ProtocolVersion, PeerID: m.self.String(), Wallet: m.signer.Wallet(),
		CPUCores: inv.Host.CPUCores, MemoryMiB: inv.Host.MemoryMiB, DiskMiB: inv.Host.DiskFreeMiB,
		MaxDurationS: int64(m.cfg.MaxDuration / time.Second),
		IssuedAtMs:   now.UnixMilli(), ExpiresAtMs: now.Add(m.cfg.AdvertTTL).UnixMilli(),
	}
	groups := map[string]*GPUGroup{}
	m.mu.Lock()
	for _, g := range inv.GPUs {
		switch g.Health {
		case gpu.Healthy:
			a.Healthy++
		case gpu.Degraded:
			a.Degraded++
		default:
			a.Unhealthy++
		}
		gg := groups[g.Class]
		if gg == nil {
			gg = &GPUGroup{Class: g.Class, MemoryMiB: g.MemoryMiB, ComputeCapability: g.ComputeCapability}
			groups[g.Class] = gg
		}
		gg.Total++
		if g.Health == gpu.Healthy && !m.taken(g.UUID, use) {
			gg.Free++
			gg.UUIDs = append(gg.UUIDs, g.UUID)
		}
	}
	m.mu.Unlock()
	for _, g := range groups {
		a.GPUs = append(a.GPUs, *g)
	}
	sort.Slice(a.GPUs, func(i, j int) bool { return a.GPUs[i].Class < a.GPUs[j].Class })
	seen := map[string]bool{}
	classes := []string{CPU}
	for _, g := range a.GPUs {
		classes = append(classes, g.Class)
	}
	for _, c := range append(classes, "*") {
		for tok, p := range m.cfg.Prices[c] {
			if !seen[tok] && (c == "*" || c == CPU || groups[c] != nil) {
				seen[tok] = true
				a.Prices = append(a.Prices, Price{Token: tok, PerGPUHour: p})
			}
		}
	}
	sort.Slice(a.Prices, func(i, j int) bool { return a.Prices[i].Token < a.Prices[j].Token })
	a.Proofs = m.carried()
	return a
}

// publish puts a fresh advert in the DHT and announces the classes it
// has, when announce is set or they changed (the provider records of an
// unchanged class stand until the periodic republish); it reports whether
// the DHT took the advert. A node with no prices is not a provider and
// publishes nothing.
func (m *Market) publish(ctx context.Context, announce bool) bool {
	if len(m.cfg.Prices) == 0 && len(m.cfg.PricingCommand) == 0 {
		return true
	}
	a := m.buildAdvert(time.Now())
	if len(a.Prices) == 0 {
		m.log.Warn("no price for any class here; not advertising", "classes", len(a.GPUs))
		return true
	}
	raw, _, err := seal("advert", a, m.key)
	if err != nil {
		m.log.Error("sign advert", "err", err)
		return false
	}
	m.mu.Lock()
	m.advert = a
	m.mu.Unlock()
	pctx, cancel := context.WithTimeout(LookupContext(ctx), 30*time.Second)
	defer cancel()
	if err := m.n.DHT.PutValue(pctx, advertKey(m.self), raw); err != nil {
		m.log.Debug("advert not stored in the DHT yet; will retry", "err", err)
		return false
	}
	keys := []string{CPU}
	if len(a.GPUs) > 0 {
		keys = append(keys, AnyGPU)
	}
	for _, g := range a.GPUs {
		keys = append(keys, g.Class)
	}
	if !announce && slices.Equal(keys, m.announced) {
		return true
	}
	m.announced = keys
	for _, k := range keys {
		if err := m.n.DHT.Provide(pctx, classCID(m.n.Network(), k), true); err != nil {
			m.log.Debug("announce class", "class", k, "err", err)
		}
	}
	m.log.Debug("advert published", "gpus", a.GPUs, "healthy", a.Healthy, "unhealthy", a.Unhealthy)
	return true
}

// Advert is this node's last published advert, if any.
func (m *Market) Advert() *ProviderAdvert {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.advert
}

// ProviderInfo is a provider as a requester sees it.
type ProviderInfo struct {
	Advert     *ProviderAdvert `json:"advert"`
	Reputation ProviderRecord  `json:"reputation"`
	// Proof is its proof-of-GPU standing for the class asked (any).
	Proof ProofStanding `json:"proof"`
}

// FindProviders looks up providers of class (a GPU class key, any-gpu,
// cpu; empty means any-gpu) in the DHT and fetches their adverts,
// dropping expired and invalid ones. At most limit are returned.
func (m *Market) FindProviders(ctx context.Context, class string, limit int) ([]ProviderInfo, error) {
	if class == "" {
		class = AnyGPU
	}
	class = strings.ToLower(class)
	if !classRE.MatchString(class) {
		return nil, fmt.Errorf("gpu class %q: want a class key such as nvidia-h100-80gb, %s or %s", class, AnyGPU, CPU)
	}
	if limit <= 0 {
		limit = 20
	}
	return m.findProviders(ctx, class, limit)
}

// findProviders is FindProviders of a valid class; opts go to each
// advert's value search.
func (m *Market) findProviders(ctx context.Context, class string, limit int, opts ...routing.Option) ([]ProviderInfo, error) {
	ctx, cancel := context.WithTimeout(LookupContext(ctx), 10*time.Second)
	defer cancel()
	var (
		mu  sync.Mutex
		out []ProviderInfo
		wg  sync.WaitGroup
	)
	for ai := range m.n.DHT.FindProvidersAsync(ctx, classCID(m.n.Network(), class), limit) {
		if ai.ID == m.self {
			continue
		}
		wg.Add(1)
		go func(p peer.ID) {
			defer wg.Done()
			a, err := m.fetchAdvert(ctx, p, opts...)
			if err != nil {
				m.log.Debug("advert", "peer_id", p, "err", err)
				return
			}
			if class != AnyGPU && class != CPU && !a.hasClass(class) {
				return // a stale provider record: the class is gone
			}
			if m.cfg.Proof != nil {
				m.cfg.Proof.Seen(a)
			}
			m.receiptsSeen(p)
			info := ProviderInfo{Advert: a, Reputation: m.rep.Get(p.String()), Proof: m.standing(p.String(), classOf(class))}
			mu.Lock()
			out = append(out, info)
			mu.Unlock()
			m.cacheAdvert(a)
		}(ai.ID)
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Advert.PeerID < out[j].Advert.PeerID })
	return out, nil
}

// classOf is the GPU class a standing is asked for: none for any-gpu
// and cpu.
func classOf(class string) string {
	if class == AnyGPU || class == CPU {
		return ""
	}
	return class
}

func (a *ProviderAdvert) hasClass(class string) bool {
	for _, g := range a.GPUs {
		if g.Class == class {
			return true
		}
	}
	return false
}

// fetchAdvert reads a provider's newest advert from the DHT: the search
// yields better values as more peers answer; the last one is the newest.
// With a quorum in opts, it ends when that many peers answered.
func (m *Market) fetchAdvert(ctx context.Context, p peer.ID, opts ...routing.Option) (*ProviderAdvert, error) {
	ctx, cancel := context.WithTimeout(LookupContext(ctx), 5*time.Second)
	defer cancel()
	ch, err := m.n.DHT.SearchValue(ctx, advertKey(p), opts...)
	if err != nil {
		return nil, err
	}
	var best []byte
	for v := range ch {
		best = v
	}
	if best == nil {
		return nil, fmt.Errorf("no advert for %s", p)
	}
	return decodeAdvert(advertKey(p), best, time.Now())
}

// cacheAdvert keeps adverts this node has fetched, until they expire, so
// that offers skip providers that cannot serve them.
func (m *Market) cacheAdvert(a *ProviderAdvert) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.adverts[a.PeerID]; old == nil || old.IssuedAtMs < a.IssuedAtMs {
		m.adverts[a.PeerID] = a
	}
}

func (m *Market) cachedAdvert(p peer.ID) *ProviderAdvert {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.adverts[p.String()]
	if a == nil || time.Now().UnixMilli() > a.ExpiresAtMs {
		return nil
	}
	return a
}

// LookupAdvert is p's advert: the cached one, else fetched from the DHT.
func (m *Market) LookupAdvert(ctx context.Context, p peer.ID) (*ProviderAdvert, error) {
	if a := m.cachedAdvert(p); a != nil {
		return a, nil
	}
	a, err := m.fetchAdvert(ctx, p)
	if err != nil {
		return nil, err
	}
	m.cacheAdvert(a)
	return a, nil
}

// republishDelay is how long an allocation change waits for others
// before the advert is republished.
const republishDelay = 2 * time.Second

// debounce is a timer that runs once per burst of starts: the first
// start arms it, the starts until it fires join it.
type debounce struct {
	t     *time.Timer
	delay time.Duration
	armed bool
}

func newDebounce(delay time.Duration) *debounce {
	t := time.NewTimer(delay)
	t.Stop()
	return &debounce{t: t, delay: delay}
}

func (d *debounce) start() {
	if !d.armed {
		d.armed = true
		d.t.Reset(d.delay)
	}
}

// C fires once per burst; call fired when it did.
func (d *debounce) C() <-chan time.Time { return d.t.C }
func (d *debounce) fired()              { d.armed = false }
func (d *debounce) stop()               { d.t.Stop() }
