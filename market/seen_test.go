package market

import (
	"testing"
	"time"
)

// A peer at its reservation limit floods the provider with fresh offers:
// each is refused, and none is remembered (each used to be kept for an
// hour before the limit was checked). Offers that pass the limit and are
// then declined are remembered, so a copy is not judged twice, but in a
// store that never passes its bound.
func TestRefusedOffersAreNotRemembered(t *testing.T) {
	clk := &testClock{t: time.Now()}
	nodes := startMarket(t, "marketseen", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil},
		{"", nil},
	}, Config{ReserveFor: 10 * time.Second, MaxReservations: 1, Now: clk.Now})
	prov, evil, other := nodes[0], nodes[1], nodes[2]
	if b, nb := hostileOffer(t, evil, prov, clk.Now(), nil); b == nil {
		t.Fatalf("first offer: %+v", nb)
	}
	const flood = 200
	for i := 1; i <= flood; i++ {
		_, nb := hostileOffer(t, evil, prov, clk.Now().Add(time.Duration(i)), nil)
		if nb == nil || nb.Code != NoBidLimit {
			t.Fatalf("offer %d over the limit: %+v", i, nb)
		}
	}
	if n := prov.m.seenCount(); n > 1 {
		t.Fatalf("%d offer IDs remembered after %d offers refused at the limit (want only the one bid on)", n, flood)
	}

	// Admitted, then declined on price: remembered, within the bound.
	prov.m.mu.Lock()
	prov.m.seen.max = 16
	prov.m.mu.Unlock()
	cheap := func(o *JobOffer) { o.MaxPrice = "1" }
	var last time.Time
	for i := 0; i < 40; i++ {
		last = clk.Now().Add(time.Duration(1000 + i))
		if _, nb := hostileOffer(t, other, prov, last, cheap); nb == nil || nb.Code != NoBidPrice {
			t.Fatalf("cheap offer %d: %+v", i, nb)
		}
	}
	if n := prov.m.seenCount(); n > 16 {
		t.Fatalf("%d offer IDs remembered, over the store's bound of 16", n)
	}
	// The newest declined offer, sent again, is still known.
	if _, nb := hostileOffer(t, other, prov, last, cheap); nb == nil || nb.Code != NoBidDeclined {
		t.Fatalf("a declined offer sent again: %+v", nb)
	}
}

func (m *Market) seenCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seen.len()
}
