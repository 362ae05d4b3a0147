package receipt

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// viewOf is the view of prov's receipts raws, by self, trusting dealt.
func viewOf(t *testing.T, prov party, self party, dealt []party, raws [][]byte, chain PaidOnChain) Summary {
	t.Helper()
	var rs []Signed
	for _, raw := range raws {
		s, err := Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, s)
	}
	cfg := ViewConfig{Self: self.id, Chain: chain, Wallet: prov.wallet, Dealt: func(p peer.ID) bool {
		for _, d := range dealt {
			if d.id == p {
				return true
			}
		}
		return false
	}}
	return View(context.Background(), prov.id, rs, cfg, testNow)
}

// outcome is r with outcome o.
func outcome(r Receipt, o string) Receipt { return with(r, func(r *Receipt) { r.Outcome = o }) }

// A requester's view: its own receipts and dealt peers' count, each
// outcome in its place; strangers' and the provider's own word do not;
// the evidence says how much stands behind it.
func TestView(t *testing.T) {
	prov, self, dealt, stranger := newParty(t), newParty(t), newParty(t), newParty(t)
	raws := [][]byte{
		both(t, outcome(sample(prov, self, "own-ok", time.Hour), Agreed), prov, self),
		signBy(t, outcome(sample(prov, self, "own-failed", 2*time.Hour), Failed), self.key),
		both(t, sample(prov, dealt, "dealt-ok", 3*time.Hour), prov, dealt),
		both(t, outcome(sample(prov, dealt, "dealt-outvoted", 4*time.Hour), SampledMismatch), prov, dealt),
		both(t, outcome(sample(prov, stranger, "stranger", 0), Agreed), prov, stranger),
		signBy(t, outcome(sample(prov, dealt, "provider-says", 0), SampledOK), prov.key),
		both(t, sample(prov, self, "ancient", MaxAge+time.Hour), prov, self),
	}
	got := viewOf(t, prov, self, []party{dealt}, raws, fakeChain{payers: 3, total: 7000})
	want := Summary{Completed: 2, Verified: 1, Failed: 1, Outvoted: 1, Payers: 2,
		Evidence: Evidence{Own: 2, Dealt: 2, Beyond: 1, Stranger: 1, ProviderOnly: 1, OneSided: 1}}
	if got.Completed != want.Completed || got.Verified != want.Verified || got.Failed != want.Failed ||
		got.Outvoted != want.Outvoted || got.Payers != want.Payers || got.Evidence != want.Evidence {
		t.Fatalf("view %+v, want %+v", got, want)
	}
	if len(got.Paid) != 1 || got.Paid[0] != (Amount{Token: "native", Amount: "5000"}) {
		t.Fatalf("paid %+v, want 4 × 1250 native", got.Paid)
	}
	if got.OnChain == nil || got.OnChain.Payers != 3 || got.OnChain.Total != "7000" || !got.LastAt.Equal(testNow.Add(-time.Hour)) {
		t.Fatalf("on chain %+v, last at %v", got.OnChain, got.LastAt)
	}
	if want := "2 completed (1 verified), 1 failed, 1 outvoted; 2 payers; evidence: 2 own, 2 from peers dealt with, 3 untrusted; on chain 7000 paid by 3 payers"; got.String() != want {
		t.Fatalf("%q\nwant %q", got.String(), want)
	}
	// Own failure (-2×8) and the dealt mismatch (-4) outweigh the rest
	// (2×8 + 1).
	if got.Score >= 0 {
		t.Fatalf("score %g, want below zero", got.Score)
	}
	if bad := viewOf(t, prov, self, nil, nil, fakeChain{err: errors.New("rpc down")}); bad.OnChain.Error != "rpc down" {
		t.Fatalf("on chain %+v", bad.OnChain)
	}
}

// From the attacker's side: a provider inflates its record with
// receipts its Sybil requesters signed, many and all verified, and one
// dealt peer colludes; the viewer's one own failure still decides, and
// the Sybils' receipts show only as untrusted evidence.
func TestViewSybilInflation(t *testing.T) {
	prov, self, colluder := newParty(t), newParty(t), newParty(t)
	raws := [][]byte{both(t, outcome(sample(prov, self, "mine", 24*time.Hour), Outvoted), prov, self)}
	for i, s := range parties(t, 100) {
		raws = append(raws, both(t, outcome(sample(prov, s, "sybil"+strconv.Itoa(i), 0), Agreed), prov, s))
	}
	for i := range 3 * MaxPerRequester {
		raws = append(raws, both(t, outcome(sample(prov, colluder, "collude"+strconv.Itoa(i), 0), Agreed), prov, colluder))
	}
	got := viewOf(t, prov, self, []party{colluder}, raws, nil)
	ev := got.Evidence
	if ev.Stranger != 100 || ev.Dealt != MaxPerRequester || ev.Beyond != 2*MaxPerRequester || ev.Own != 1 {
		t.Fatalf("evidence %+v", ev)
	}
	if got.Completed != MaxPerRequester || got.Outvoted != 1 || got.Payers != 2 {
		t.Fatalf("view %+v: the Sybils counted", got)
	}
	// One own outvote (-4 × 8 halved a little) outweighs the colluder's
	// capped praise (+2 × 8).
	if got.Score >= 0 {
		t.Fatalf("score %g: the inflation outweighed the viewer's own outvote", got.Score)
	}
}

// PaidOnChain's fake is a PaidOnChain.
var _ PaidOnChain = fakeChain{}
