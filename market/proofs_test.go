package market

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// fakeProof is a ProofHook whose standings the test sets, and whose Vet
// gives each provider vetted the verdict the test planned for it.
type fakeProof struct {
	mu       sync.Mutex
	carried  [][]byte
	standing map[string]ProofStanding
	verdict  map[string]ProofStanding // what Vet turns a provider into
	vetted   []string
	seen     []*ProviderAdvert
}

func newFakeProof() *fakeProof {
	return &fakeProof{standing: map[string]ProofStanding{}, verdict: map[string]ProofStanding{}}
}

func (f *fakeProof) Carried() [][]byte { return f.carried }

func (f *fakeProof) Seen(a *ProviderAdvert) {
	f.mu.Lock()
	f.seen = append(f.seen, a)
	f.mu.Unlock()
}

func (f *fakeProof) Standing(provider, _ string) ProofStanding {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.standing[provider]; ok {
		return s
	}
	return ProofStanding{State: ProofUnverified, Text: ProofUnverified}
}

func (f *fakeProof) Vet(_ context.Context, adverts []*ProviderAdvert, _ string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range adverts {
		f.vetted = append(f.vetted, a.PeerID)
		if v, ok := f.verdict[a.PeerID]; ok {
			f.standing[a.PeerID] = v
		}
	}
}

func (f *fakeProof) set(provider string, s ProofStanding) {
	f.mu.Lock()
	f.standing[provider] = s
	f.mu.Unlock()
}

// proofNet: a cheap and a dear H100 provider, each carrying a record in
// its advert, and a requester whose proof standings the test sets.
type proofNet struct {
	cheap, dear, req *tnode
	hook             *fakeProof
}

func newProofNet(t *testing.T) proofNet {
	t.Helper()
	hook := newFakeProof()
	provHook := newFakeProof()
	provHook.carried = [][]byte{[]byte("a signed record")}
	specs := []nodeSpec{{mock: "dgxh100", prices: map[string]string{h100: "2000"}}, {mock: "dgxh100", prices: map[string]string{h100: "3000"}}, {}}
	nodes := startMarketEach(t, "prooftest", specs, func(i int, c *Config) {
		c.BidWindow = 2 * time.Second
		c.Proof = provHook
		if i == 2 {
			c.Proof = hook
		}
	})
	pn := proofNet{cheap: nodes[0], dear: nodes[1], req: nodes[2], hook: hook}
	waitProviders(t, pn.req, h100, func(f []ProviderInfo) bool { return len(f) == 2 })
	// Ranking needs both bids: the requester holds a connection to each.
	for _, p := range []*tnode{pn.cheap, pn.dear} {
		ai := peer.AddrInfo{ID: p.p2p.Host.ID(), Addrs: p.p2p.Host.Addrs()}
		if err := pn.req.p2p.Host.Connect(context.Background(), ai); err != nil {
			t.Fatal(err)
		}
	}
	return pn
}

func (pn proofNet) id(n *tnode) string { return n.p2p.Host.ID().String() }

func (pn proofNet) offer(verified bool) OfferRequest {
	return OfferRequest{Req: Requirements{GPUClass: h100, GPUs: 1}, Token: "native", MaxPrice: "5000",
		MaxDuration: time.Hour, SpecHash: specHash, RequireVerified: verified}
}

// Proof of GPU in the market: adverts carry records and free GPUs'
// UUIDs; a provider that failed ranks last whatever its price; an offer
// that requires verified providers vets them first and refuses the
// others, naming their standing.
func TestProofInTheMarket(t *testing.T) {
	pn := newProofNet(t)
	t.Run("adverts carry records and UUIDs", pn.advertsCarry)
	t.Run("a failed provider ranks last", pn.failedRanksLast)
	t.Run("verified only: vetted, then refused", pn.verifiedOnly)
	t.Run("verified only: no verified provider", pn.noneVerified)
}

func (pn proofNet) advertsCarry(t *testing.T) {
	pn.hook.mu.Lock()
	defer pn.hook.mu.Unlock()
	if len(pn.hook.seen) == 0 {
		t.Fatal("the requester's hook saw no advert")
	}
	a := pn.hook.seen[len(pn.hook.seen)-1]
	if len(a.Proofs) != 1 || string(a.Proofs[0]) != "a signed record" {
		t.Fatalf("advert carries %q", a.Proofs)
	}
	if g := a.GPUs[0]; len(g.UUIDs) != g.Free || g.Free == 0 || !strings.HasPrefix(g.UUIDs[0], "GPU-") {
		t.Fatalf("advert group %+v: want the free GPUs' UUIDs", g)
	}
}

func (pn proofNet) failedRanksLast(t *testing.T) {
	pn.hook.set(pn.id(pn.cheap), ProofStanding{State: ProofFailed, Text: "failed: answered outside the envelope"})
	defer pn.hook.set(pn.id(pn.cheap), ProofStanding{State: ProofUnverified, Text: ProofUnverified})
	d, _, err := pn.req.m.Negotiate(context.Background(), pn.offer(false))
	if err != nil {
		t.Fatal(err)
	}
	if d.Provider != pn.id(pn.dear) {
		t.Fatalf("deal with %s: the cheap provider failed its challenge and must rank last", d.Provider)
	}
}

func (pn proofNet) verifiedOnly(t *testing.T) {
	pn.hook.verdict[pn.id(pn.cheap)] = ProofStanding{State: ProofFailed, Text: "failed: refused the challenge"}
	pn.hook.verdict[pn.id(pn.dear)] = ProofStanding{State: ProofVerified, Text: "verified by 1"}
	d, st, err := pn.req.m.Negotiate(context.Background(), pn.offer(true))
	if err != nil {
		t.Fatal(err)
	}
	if d.Provider != pn.id(pn.dear) {
		t.Fatalf("deal with %s, want the verified one", d.Provider)
	}
	pn.hook.mu.Lock()
	vetted := slices.Clone(pn.hook.vetted)
	pn.hook.mu.Unlock()
	if !slices.Contains(vetted, pn.id(pn.cheap)) || !slices.Contains(vetted, pn.id(pn.dear)) {
		t.Fatalf("vetted %v: want both providers challenged before the offer", vetted)
	}
	if !slices.ContainsFunc(st.Refusals, func(r Refusal) bool {
		return r.Provider == pn.id(pn.cheap) && r.Code == CodeUnverified && strings.Contains(r.Reason, "failed: refused the challenge")
	}) {
		t.Fatalf("refusals %+v: want the cheap provider refused with its standing", st.Refusals)
	}
}

func (pn proofNet) noneVerified(t *testing.T) {
	pn.hook.set(pn.id(pn.dear), ProofStanding{State: ProofUnverified, Text: ProofUnverified})
	delete(pn.hook.verdict, pn.id(pn.dear))
	_, _, err := pn.req.m.Negotiate(context.Background(), pn.offer(true))
	if !errors.Is(err, ErrNoDeal) || !strings.Contains(err.Error(), "not a verified provider (unverified)") ||
		!strings.Contains(err.Error(), "not a verified provider (failed: refused the challenge)") {
		t.Fatalf("offer for verified providers only, none verified: %v", err)
	}
	req := pn.offer(true)
	req.Req = Requirements{CPUCores: 1}
	if _, _, err := pn.req.m.Negotiate(context.Background(), req); err == nil || !strings.Contains(err.Error(), "asks for none") {
		t.Fatalf("a CPU job that requires verified providers: %v", err)
	}
}

// GPUs lent to a challenge stay free in the advert and to bids; a bid
// that takes one preempts the challenge; a GPU lent twice is refused.
func TestLendToAChallenge(t *testing.T) {
	nodes := startMarket(t, "lendtest", []nodeSpec{{mock: "dgxh100", prices: map[string]string{h100: "2000"}}, {}}, Config{})
	m := nodes[0].m
	inv := nodes[0].gpus.Inventory()
	uuids := []string{inv.GPUs[0].UUID, inv.GPUs[1].UUID}
	preempted := make(chan struct{}, 2)
	release, err := m.Lend(uuids, func() { preempted <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if g := m.buildAdvert(time.Now()).GPUs[0]; g.Free != 8 {
		t.Fatalf("advert while lent: %+v", g)
	}
	if _, err := m.Lend(uuids[1:], func() {}); err == nil || !strings.Contains(err.Error(), uuids[1]) {
		t.Fatalf("a GPU lent twice: %v", err)
	}
	waitProviders(t, nodes[1], h100, func(f []ProviderInfo) bool { return len(f) == 1 })
	offer := func(gpus int) *Deal {
		d, _, err := nodes[1].m.Negotiate(context.Background(), OfferRequest{Req: Requirements{GPUClass: h100, GPUs: gpus},
			Token: "native", MaxPrice: "5000", MaxDuration: time.Hour, SpecHash: specHash})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// A bid takes free GPUs that are not lent first.
	if d := offer(6); slices.ContainsFunc(d.GPUs, func(u string) bool { return slices.Contains(uuids, u) }) {
		t.Fatalf("a deal for 6 of 8 GPUs took a lent one: %v", d.GPUs)
	}
	if len(preempted) != 0 {
		t.Fatal("a deal that needed no lent GPU preempted the challenge")
	}
	offer(2) // only the lent ones are left
	select {
	case <-preempted:
	case <-time.After(10 * time.Second):
		t.Fatal("a deal took the lent GPUs and the challenge was not preempted")
	}
	if len(preempted) != 0 {
		t.Fatal("preempted twice")
	}
}
