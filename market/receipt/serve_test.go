package receipt

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// hostParty is h as a party to deals, signing with its host key.
func hostParty(h host.Host, wallet string) party {
	return party{key: h.Peerstore().PrivKey(h.ID()), id: h.ID(), wallet: wallet}
}

// serve starts a server of a store on h, on clock now.
func serve(t *testing.T, h host.Host, lim Limits, now func() time.Time) *Store {
	t.Helper()
	s := newStore(t, StoreConfig{Self: h.ID()})
	srv, err := NewServer(h, testNet, ServerConfig{Store: s, Limits: lim, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return s
}

func fetch(t *testing.T, h host.Host, from, about peer.ID) ([]Signed, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return Fetch(ctx, h, testNet, from, about, testNow)
}

func deals(rs []Signed) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Deal[:6]+"/"+string(r.Kind))
	}
	return strings.Join(out, ",")
}

// A provider serves the receipts it signed about itself; a requester
// those it signed about a provider; neither serves what it holds but
// did not sign.
func TestFetch(t *testing.T) {
	hs := p2ptest.MockHosts(t, 3)
	prov, req, sybil := hostParty(hs[0], "0x"+strings.Repeat("1", 40)), hostParty(hs[1], "0x"+strings.Repeat("2", 40)), newParty(t)
	ps := serve(t, hs[0], Limits{}, time.Now)
	rs := serve(t, hs[1], Limits{}, time.Now)
	mustAdd(t, ps, both(t, sample(prov, req, "both", time.Hour), prov, req))
	mustAdd(t, ps, signBy(t, sample(prov, sybil, "provider-alone", 0), prov.key))
	mustAdd(t, ps, signBy(t, with(sample(prov, req, "failed", 2*time.Hour), func(r *Receipt) { r.Outcome = Failed }), req.key))
	mustAdd(t, rs, ps.Served(prov.id)[1])
	mustAdd(t, rs, signBy(t, with(sample(prov, req, "failed", 2*time.Hour), func(r *Receipt) { r.Outcome = Failed }), req.key))
	mustAdd(t, rs, both(t, sample(prov, sybil, "sybil", 0), prov, sybil))

	got, err := fetch(t, hs[2], prov.id, prov.id)
	if err != nil || deals(got) != dealID("provider-alone")[:6]+"/provider-only,"+dealID("both")[:6]+"/both" {
		t.Fatalf("from the provider: %s, %v", deals(got), err)
	}
	got, err = fetch(t, hs[2], req.id, prov.id)
	if err != nil || deals(got) != dealID("both")[:6]+"/both,"+dealID("failed")[:6]+"/requester-only" {
		t.Fatalf("from the requester: %s, %v", deals(got), err)
	}
	if got, err := fetch(t, hs[2], req.id, sybil.id); err != nil || len(got) != 0 {
		t.Fatalf("about a provider it holds nothing of: %s, %v", deals(got), err)
	}
}

// From the attacker's side: a peer that serves receipts forged, of
// another network, about another provider, from the future, or that it
// did not sign: each is refused with its reason, the honest one kept.
func TestFetchHostile(t *testing.T) {
	hs := p2ptest.MockHosts(t, 2)
	prov, req, other := hostParty(hs[0], "0x"+strings.Repeat("1", 40)), newParty(t), newParty(t)
	good := both(t, sample(prov, req, "good", 0), prov, req)
	served := [][]byte{
		good,
		reenvelope(t, good, func(e *envelope) { e.RequesterSig[0] ^= 1 }),
		both(t, with(sample(prov, req, "net", 0), func(r *Receipt) { r.Network = "othernet" }), prov, req),
		both(t, sample(other, req, "other", 0), other, req),
		both(t, sample(prov, req, "future", -time.Hour), prov, req),
		signBy(t, sample(prov, req, "unsigned", 0), req.key),
	}
	p2p.Handle(hs[0], p2p.ProtocolID(testNet, protocolName), limits, nil, func(context.Context, peer.ID, []byte) ([]byte, error) {
		return encode(reply{V: Version, Receipts: served})
	})
	got, err := fetch(t, hs[1], prov.id, prov.id)
	if len(got) != 1 || got[0].Deal != dealID("good") {
		t.Fatalf("kept %s", deals(got))
	}
	for _, want := range []string{"5 of 6 refused", "requester signature does not verify", `network "othernet"`,
		"about " + other.id.String(), "ahead of", "which did not sign it"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want it to say %q", err, want)
		}
	}
}

// A flood of requests: each peer has its burst then its rate, all peers
// together theirs, and a refusal says when to ask again; a malformed
// request is refused outright.
func TestServeRateLimit(t *testing.T) {
	hs := p2ptest.MockHosts(t, 4)
	var mu sync.Mutex
	now := testNow
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	serve(t, hs[0], Limits{Burst: 2, PerMinute: 1, TotalBurst: 3, TotalPerMinute: 2}, clock)
	prov := hs[0].ID()
	for i, c := range []struct {
		from  int
		after time.Duration
		want  string
	}{
		{1, 0, ""}, {1, 0, ""}, {1, 0, "2 requests, then 1 a minute, per peer (retry in 61s)"},
		{2, 0, ""}, {3, 0, "3 requests, then 2 a minute, from all peers (retry in 31s)"},
		{3, 31 * time.Second, ""}, {1, 30 * time.Second, ""},
	} {
		mu.Lock()
		now = now.Add(c.after)
		mu.Unlock()
		_, err := fetch(t, hs[c.from], prov, prov)
		if c.want == "" && err != nil || c.want != "" && (!errors.Is(err, ErrRateLimited) || !strings.Contains(err.Error(), c.want)) {
			t.Fatalf("request %d from %d: %v, want %q", i, c.from, err, c.want)
		}
	}
	_, err := p2p.Request(context.Background(), hs[1], prov, p2p.ProtocolID(testNet, protocolName), []byte{0xa0}, limits)
	if err == nil || !strings.Contains(err.Error(), "invalid receipt: request") {
		t.Fatalf("a malformed request: %v", err)
	}
}

// A crowd of fresh peer IDs fills the buckets remembered; a new one is
// refused until old buckets are full again.
func TestLimiterPeers(t *testing.T) {
	ids := parties(t, 3)
	l := newLimiter(Limits{Peers: 2, Burst: 1, PerMinute: 1}, testNow)
	for i, c := range []struct {
		who   int
		after time.Duration
		want  string
	}{{0, 0, ""}, {1, 0, ""}, {2, 0, "2 peers asked lately"}, {2, time.Minute, ""}} {
		why, _ := l.Admit(ids[c.who].id, testNow.Add(c.after))
		if (why == "") != (c.want == "") || !strings.Contains(why, c.want) {
			t.Fatalf("ask %d: %q, want %q", i, why, c.want)
		}
	}
}
