package receipt

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// From the attacker's side: what a store refuses, each with its reason,
// and what it takes again without harm.
func TestStoreAddHostile(t *testing.T) {
	prov, req := newParty(t), newParty(t)
	r := sample(prov, req, "deal", time.Hour)
	good := both(t, r, prov, req)
	for _, c := range []struct {
		name string
		raw  []byte
		want error
		msg  string
	}{
		{"forged signature", reenvelope(t, good, func(e *envelope) { e.ProviderSig[0] ^= 1 }), ErrForged, "provider signature does not verify"},
		{"the same deal, differing", both(t, with(r, func(r *Receipt) { r.Paid = "1" }), prov, req), ErrReplay, "differs from the one held"},
		{"the same deal, failed by the requester alone", signBy(t, with(r, func(r *Receipt) { r.Outcome = Failed }), req.key), ErrReplay, "differs"},
		{"another network", both(t, with(r, func(r *Receipt) { r.Network = "othernet"; r.Deal = dealID("n") }), prov, req), ErrNetwork, `network "othernet"`},
		{"from the future", both(t, sample(prov, req, "future", -time.Hour), prov, req), ErrFuture, "ahead of"},
		{"oversized", make([]byte, MaxReceiptBytes+1), ErrInvalid, "over the 4096 limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t, StoreConfig{})
			mustAdd(t, s, good)
			_, err := s.Add(c.raw, testNow)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v saying %q", err, c.want, c.msg)
			}
			if got, _ := s.Get(r.Deal); s.Len() != 1 || got.ID() != r.ID() {
				t.Fatalf("the store holds %d receipts, deal's %s", s.Len(), got.ID())
			}
			if again := mustAdd(t, s, good); again.Kind != Both {
				t.Fatalf("the same receipt again: %v", again.Kind)
			}
		})
	}
}

// One side's signature and the other's of the same receipt join into
// one signed by both.
func TestStoreJoins(t *testing.T) {
	prov, req := newParty(t), newParty(t)
	r := sample(prov, req, "deal", 0)
	s := newStore(t, StoreConfig{Self: prov.id})
	mustAdd(t, s, signBy(t, r, prov.key))
	if got := mustAdd(t, s, signBy(t, r, req.key)); got.Kind != Both {
		t.Fatalf("joined: %s", got.Kind)
	}
	if got, _ := s.Get(r.Deal); got.Kind != Both || s.Len() != 1 {
		t.Fatalf("held: %s of %d", got.Kind, s.Len())
	}
}

// A stranger who learnt a deal's ID cannot shut out the receipt that
// counts: a stronger receipt (this node's, a trusted requester's)
// replaces a weaker one, never the other way round.
func TestStoreReplayStrength(t *testing.T) {
	prov, req, self, sybil := newParty(t), newParty(t), newParty(t), newParty(t)
	trusted := func(p peer.ID) bool { return p == req.id }
	fake := both(t, sample(prov, sybil, "deal", 0), prov, sybil)
	real := both(t, sample(prov, req, "deal", 0), prov, req)
	mine := signBy(t, with(sample(prov, self, "deal", 0), func(r *Receipt) { r.Outcome = Failed }), self.key)
	s := newStore(t, StoreConfig{Self: self.id, Trusted: trusted})
	mustAdd(t, s, fake)
	if got := mustAdd(t, s, real); got.Requester != req.id.String() {
		t.Fatalf("the trusted requester's receipt did not replace the stranger's")
	}
	if _, err := s.Add(fake, testNow); !errors.Is(err, ErrReplay) {
		t.Fatalf("the stranger's receipt came back: %v", err)
	}
	if got := mustAdd(t, s, mine); got.Requester != self.id.String() {
		t.Fatal("this node's own receipt did not replace a dealt peer's")
	}
	if _, err := s.Add(real, testNow); !errors.Is(err, ErrReplay) {
		t.Fatalf("a dealt peer's receipt replaced this node's own: %v", err)
	}
}

// The store comes back from its file as it was; a receipt in the file
// that no longer passes is dropped, the others kept; a file that cannot
// be read is an error.
func TestStorePersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "receipts.json")
	prov, req := newParty(t), newParty(t)
	s := newStore(t, StoreConfig{Path: path, Self: prov.id})
	mustAdd(t, s, both(t, sample(prov, req, "a", time.Hour), prov, req))
	mustAdd(t, s, signBy(t, sample(prov, req, "b", 0), prov.key))
	again := newStore(t, StoreConfig{Path: path, Self: prov.id})
	if got := again.Receipts(prov.id); len(got) != 2 || got[0].Deal != dealID("b") || got[1].Kind != Both {
		t.Fatalf("reopened: %+v", got)
	}
	if other := newStore(t, StoreConfig{Path: path, Network: "othernet"}); other.Len() != 0 {
		t.Fatalf("another network's store kept %d receipts", other.Len())
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(StoreConfig{Path: path, Network: testNet}); err == nil {
		t.Fatal("a file that cannot be read opened empty")
	}
}

// A flood of receipts from Sybil requesters, about one provider and
// about many: the store stays within its bounds, and keeps this node's
// own and its trusted peers' receipts over the flood's.
func TestStoreFlood(t *testing.T) {
	self, dealt, prov := newParty(t), newParty(t), newParty(t)
	s := newStore(t, StoreConfig{Self: self.id, Trusted: func(p peer.ID) bool { return p == dealt.id }, MaxPerProvider: 20, MaxReceipts: 50})
	mustAdd(t, s, both(t, sample(prov, self, "own", 48*time.Hour), prov, self))
	mustAdd(t, s, both(t, sample(prov, dealt, "dealt", 48*time.Hour), prov, dealt))
	sybils := parties(t, 10)
	var raws [][]byte
	for i := range 200 {
		p, q := prov, sybils[i%len(sybils)]
		if i%2 == 1 {
			p = sybils[(i+1)%len(sybils)] // receipts about Sybil providers too
		}
		raws = append(raws, both(t, sample(p, q, "flood"+strconv.Itoa(i), time.Duration(i)*time.Second), p, q))
	}
	kept, err := s.AddAll(raws, testNow)
	if err != nil || len(kept) != len(raws) {
		t.Fatalf("the flood: %d kept, %v", len(kept), err)
	}
	if n := len(s.Receipts(prov.id)); s.Len() > 50 || n > 20 {
		t.Fatalf("the store holds %d receipts, %d about the provider: over its bounds", s.Len(), n)
	}
	for _, d := range []string{"own", "dealt"} {
		if _, ok := s.Get(dealID(d)); !ok {
			t.Fatalf("the flood evicted the %s receipt", d)
		}
	}
}

// The peers this node dealt with are the other sides of the receipts it
// signed, the latest first; a receipt it did not sign names no one, and
// a peer whose receipts are all evicted is no longer dealt with.
func TestStoreDealt(t *testing.T) {
	self, a, b, prov, req := newParty(t), newParty(t), newParty(t), newParty(t), newParty(t)
	s := newStore(t, StoreConfig{Self: self.id, MaxPerProvider: 1})
	mustAdd(t, s, both(t, sample(a, self, "bought", 2*time.Hour), a, self))
	mustAdd(t, s, signBy(t, sample(self, b, "sold", time.Hour), self.key))
	mustAdd(t, s, both(t, sample(prov, req, "others", 0), prov, req))
	if got := s.Dealt(); len(got) != 2 || got[0] != b.id || got[1] != a.id {
		t.Fatalf("dealt %v, want %s then %s", got, b.id, a.id)
	}
	dealt := s.DealtWith()
	if !dealt(a.id) || !dealt(b.id) || dealt(prov.id) || dealt(req.id) || dealt(self.id) {
		t.Fatal("dealt with the wrong peers")
	}
	mustAdd(t, s, both(t, sample(a, self, "bought-again", time.Minute), a, self)) // evicts "bought"
	mustAdd(t, s, both(t, sample(a, req, "a-sold", 0), a, req))                   // a's one slot: ours stays
	if !s.DealtWith()(a.id) {
		t.Fatal("a peer with a receipt held no longer dealt with")
	}
}
