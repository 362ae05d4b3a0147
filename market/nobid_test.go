package market

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Every provider asked directly that does not bid says why, signed, and
// the requester's error names each one: the price floor with the class,
// GPUs, CPU and memory with the numbers, the image, the token, the
// duration; a class nobody has is reported by the requester with the known
// classes listed.
func TestRefusalReasonsReachTheRequester(t *testing.T) {
	rn := newRefusalNet(t)
	p1, p2 := rn.p1, rn.p2
	for _, c := range []refusalCase{
		{"price", func(r *OfferRequest) { r.MaxPrice = "500" }, NoBidPrice, []string{
			p1 + ": price floor 2000 wei of native per GPU-hour for mock-h100-80gb > max price 500 wei of native",
			p2 + ": price floor 3000 wei of native per GPU-hour for mock-h100-80gb > max price 500 wei of native"}},
		{"gpus", func(r *OfferRequest) { r.Req.GPUs = 9 }, NoBidGPUs, []string{
			p1 + ": need 9 free healthy mock-h100-80gb GPUs, 8 free here (8 total, 8 healthy, 0 reserved or in use)"}},
		{"cpu", func(r *OfferRequest) { r.Req.CPUCores = 100000 }, NoBidCPU, []string{p1 + ": need 100000 CPU cores, "}},
		{"memory", func(r *OfferRequest) { r.Req.MemoryMiB = 1 << 40 }, NoBidMemory, []string{p2 + ": need 1099511627776 MiB of memory, "}},
		{"image", func(r *OfferRequest) { r.Image = "evil/miner" }, NoBidImage, []string{p1 + `: image "evil/miner" not accepted here (accepted: ok/*)`}},
		{"token", func(r *OfferRequest) { r.Token = "0x00000000000000000000000000000000000000aa" }, NoBidToken, []string{
			p2 + ": token 0x00000000000000000000000000000000000000aa not accepted for mock-h100-80gb (accepted: native)"}},
		{"duration", func(r *OfferRequest) { r.MaxDuration = 48 * time.Hour }, NoBidDuration, []string{p1 + ": jobs here run at most 24h0m0s"}},
		// Two dev chains share the chain ID and the contracts' addresses;
		// only the genesis tells them apart.
		{"chain", nil, NoBidChain, []string{p1 + ": the offer pays on chain " + otherChain + ", this provider is paid on chain " + ourChain}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.name != "price" {
				t.Skip("each case waits out a 5 s bid window; -short runs the price case")
			}
			rn.refused(t, c)
		})
	}
	t.Run("unknown class", rn.unknownClass)
	t.Run("from the adverts", rn.fromTheAdverts)
	t.Run("a provider that cannot be asked", rn.providerGone)
}

// The chains of TestRefusalReasonsReachTheRequester's providers, and
// another.
const ourChain, otherChain = "1337/0x1111111111111111111111111111111111111111111111111111111111111111", "1337/0x2222222222222222222222222222222222222222222222222222222222222222"

// refusalNet is the network of TestRefusalReasonsReachTheRequester: two
// H100 providers at 2000 and 3000 on ourChain, and a requester.
type refusalNet struct {
	nodes  []*tnode
	req    *tnode
	p1, p2 string // the providers' short IDs
}

func newRefusalNet(t *testing.T) *refusalNet {
	t.Helper()
	nodes := startMarket(t, "marketnobid", []nodeSpec{
		{"dgxh100", map[string]string{h100: "2000"}},
		{"dgxh100", map[string]string{h100: "3000"}},
		{"", nil}, // requester
	}, Config{BidWindow: 5 * time.Second, AcceptedImages: []string{"ok/*"},
		FormatAmount: func(tok, base string) string { return base + " wei of " + tok }})
	rn := &refusalNet{nodes: nodes, req: nodes[2],
		p1: short(nodes[0].p2p.Host.ID().String()), p2: short(nodes[1].p2p.Host.ID().String())}
	nodes[0].m.cfg.Chain, nodes[1].m.cfg.Chain = ourChain, ourChain
	waitProviders(t, rn.req, h100, func(f []ProviderInfo) bool { return len(f) == 2 })
	return rn
}

// refusalOffer is an offer both providers would bid on.
func refusalOffer() OfferRequest {
	return OfferRequest{Req: Requirements{GPUClass: h100, GPUs: 1}, Image: "ok/job", Token: "native",
		MaxPrice: "5000", MaxDuration: time.Hour, SpecHash: specHash}
}

// emptyCache empties the requester's advert cache, which would answer for
// some offers without asking: the providers are then asked. (Cases check
// the cache's answers at the end.)
func (rn *refusalNet) emptyCache() {
	m := rn.req.m
	m.mu.Lock()
	m.adverts = map[string]*ProviderAdvert{}
	// Marked fresh, so that no background refresh fills it midway.
	m.refreshed = map[string]time.Time{h100: time.Now(), AnyGPU: time.Now()}
	m.mu.Unlock()
}

// refusalCase is an offer the providers refuse: refusalOffer changed by
// mut (nil: offered on otherChain), the code of the refusals, and what
// the requester's error must say.
type refusalCase struct {
	name string
	mut  func(*OfferRequest)
	code string
	want []string
}

// refused checks that both providers refuse c's offer, asked directly,
// and the requester's error says why.
func (rn *refusalNet) refused(t *testing.T, c refusalCase) {
	rn.emptyCache()
	r := refusalOffer()
	if c.mut != nil {
		c.mut(&r)
	} else {
		rn.req.m.cfg.Chain = otherChain
		defer func() { rn.req.m.cfg.Chain = "" }()
	}
	st, err := rn.negotiateAsked(t, r)
	if !errors.Is(err, ErrNoDeal) {
		t.Fatalf("negotiate: %v, want no deal", err)
	}
	if !strings.Contains(err.Error(), "(2 found, 2 asked directly)") {
		t.Fatalf("error %q does not count the providers asked", err)
	}
	for _, w := range c.want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error\n%s\ndoes not say\n%s", err, w)
		}
	}
	if len(st.Refusals) != 2 {
		t.Fatalf("refusals %+v, want one from each provider", st.Refusals)
	}
	for _, rf := range st.Refusals {
		if rf.Code != c.code {
			t.Fatalf("refusal %+v, want code %s", rf, c.code)
		}
	}
}

// negotiateAsked negotiates r with the providers asked directly. The
// test checks what the refusals say, not how fast they come: a provider
// starved of CPU by the rest of the suite can miss a 5 s window (or its
// stream fail), and then the offer is made again (at most twice more)
// rather than the test failed.
func (rn *refusalNet) negotiateAsked(t *testing.T, r OfferRequest) (NegotiationStats, error) {
	for try := 1; ; try++ {
		_, st, err := rn.req.m.Negotiate(context.Background(), r)
		if try == 3 || err == nil || !strings.Contains(err.Error(), "no answer within the bid window") && !strings.Contains(err.Error(), "could not be asked") {
			return st, err
		}
		t.Logf("try %d: a provider missed the bid window (%v); asking again", try, err)
		rn.emptyCache()
	}
}

// unknownClass: a class nobody has is named by the requester, with the
// classes it knows.
func (rn *refusalNet) unknownClass(t *testing.T) {
	r := refusalOffer()
	r.Req.GPUClass = "h100"
	_, _, err := rn.req.m.Negotiate(context.Background(), r)
	if !errors.Is(err, ErrNoDeal) || !strings.Contains(err.Error(), `unknown GPU class "h100" (known: `) ||
		!strings.Contains(err.Error(), "nvidia-a100-40gb") || !strings.Contains(err.Error(), "did you mean nvidia-h100-80gb?") {
		t.Fatalf("negotiate for class h100: %v", err)
	}
}

// fromTheAdverts: with the adverts cached, a request they cannot serve is
// not sent, and the reason still comes, read from the adverts.
func (rn *refusalNet) fromTheAdverts(t *testing.T) {
	waitProviders(t, rn.req, h100, func(f []ProviderInfo) bool { return len(f) == 2 })
	r := refusalOffer()
	r.MaxPrice = "2500"
	_, st, err := rn.req.m.Negotiate(context.Background(), r)
	if err != nil {
		t.Fatalf("the 2000 provider should bid under 2500: %v", err)
	}
	if len(st.Refusals) != 1 || st.Refusals[0].Code != NoBidPrice ||
		st.Refusals[0].Reason != "price floor 3000 wei of native per GPU-hour for mock-h100-80gb > max price 2500 wei of native (from its advert)" {
		t.Fatalf("refusals %+v", st.Refusals)
	}
}

// providerGone: a provider gone since its advert fails the dial at once,
// and the reason says so instead of blaming the bid window.
func (rn *refusalNet) providerGone(t *testing.T) {
	waitProviders(t, rn.req, h100, func(f []ProviderInfo) bool { return len(f) == 2 })
	gone := rn.nodes[1]
	gone.p2p.Close()
	_, st, err := rn.req.m.Negotiate(context.Background(), refusalOffer()) // both within the price
	if err != nil {
		t.Fatalf("the open provider should still bid: %v", err)
	}
	var ref *Refusal
	for i, rf := range st.Refusals {
		if rf.Provider == gone.p2p.Host.ID().String() {
			ref = &st.Refusals[i]
		}
	}
	if ref == nil || !strings.HasPrefix(ref.Reason, "could not be asked: ") {
		t.Fatalf("refusals %+v, want the closed provider's saying it could not be asked", st.Refusals)
	}
}

// A no-bid that is forged, oversized, for another offer or with control
// characters in its detail is refused by the requester's decoder.
func TestNoBidDecoding(t *testing.T) {
	nodes := startMarket(t, "marketnobiddec", []nodeSpec{{"", nil}, {"", nil}}, Config{})
	a, b := nodes[0], nodes[1]
	aID, bID := a.p2p.Host.ID(), b.p2p.Host.ID()
	aKey := a.p2p.Host.Peerstore().PrivKey(aID)
	good, err := sealNoBid(specHash, aID, refuse(NoBidCPU, "need 4 CPU cores, 2 here"), aKey)
	if err != nil {
		t.Fatal(err)
	}
	if nb, err := decodeNoBid(good, specHash, aID); err != nil || nb.Detail != "need 4 CPU cores, 2 here" {
		t.Fatalf("a good no-bid: %+v, %v", nb, err)
	}
	seal := func(nb NoBid) []byte {
		raw, _, err := seal("nobid", &nb, aKey)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	ok := NoBid{Version: ProtocolVersion, OfferID: specHash, Provider: aID.String(), Code: NoBidCPU, Detail: "x"}
	mut := func(f func(*NoBid)) NoBid { n := ok; f(&n); return n }
	for name, c := range map[string]struct {
		raw  []byte
		from string
		want string
	}{
		"from another peer": {good, bID.String(), "sent by"},
		"another offer":     {seal(mut(func(n *NoBid) { n.OfferID = strings.Repeat("a", 64) })), "", "not " + short(specHash)},
		"control chars":     {seal(mut(func(n *NoBid) { n.Detail = "ok\x1b[2J" })), "", "character"},
		"long detail":       {seal(mut(func(n *NoBid) { n.Detail = strings.Repeat("x", 201) })), "", "over 200"},
		"unknown code":      {seal(mut(func(n *NoBid) { n.Code = "whatever" })), "", "code"},
		"price, no floor":   {seal(mut(func(n *NoBid) { n.Code = NoBidPrice })), "", "without a floor"},
		"oversized":         {make([]byte, MaxNoBidBytes+1), "", "over the"},
		"empty":             {nil, "", "envelope"},
		"a bid":             {sealBid(t, aKey, aID), "", `got a "bid", want a nobid`},
	} {
		t.Run(name, func(t *testing.T) {
			from := aID
			if c.from != "" {
				from = bID
			}
			if _, err := decodeNoBid(c.raw, specHash, from); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("decode: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func sealBid(t *testing.T, key crypto.PrivKey, id peer.ID) []byte {
	b := Bid{Version: ProtocolVersion, OfferID: specHash, Provider: id.String(), Wallet: "0x" + strings.Repeat("1", 40),
		Token: "native", Price: "1", GPUClass: h100, ReservedUntilMs: time.Now().Add(time.Minute).UnixMilli()}
	return sealWith(t, "bid", &b, key)
}
