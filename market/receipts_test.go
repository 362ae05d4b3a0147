package market

import (
	"sync"
	"testing"
)

// fakeReceipts is a ReceiptHook whose scores the test sets.
type fakeReceipts struct {
	mu    sync.Mutex
	score map[string]float64
	seen  []string
}

func (f *fakeReceipts) Seen(p string) { f.mu.Lock(); f.seen = append(f.seen, p); f.mu.Unlock() }
func (f *fakeReceipts) Score(p string) float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.score[p]
}

// Bids rank by price, then proof of GPU, then receipts, then this
// node's own reputation record: receipts break a tie of price and proof
// and never beat either.
func TestRankBidsByReceipts(t *testing.T) {
	proof := newFakeProof()
	proof.set("verified", ProofStanding{State: ProofVerified})
	proof.set("verified-cheaper", ProofStanding{State: ProofVerified})
	rcpt := &fakeReceipts{score: map[string]float64{"good-receipts": 9, "bad-receipts": -4, "verified": 1, "cheap": -20}}
	rep, err := OpenReputation("")
	if err != nil {
		t.Fatal(err)
	}
	rep.Completed("good-record")
	m := &Market{cfg: Config{Proof: proof, Receipts: rcpt}, rep: rep}
	got := map[string]receivedBid{}
	for p, price := range map[string]string{"cheap": "90", "verified": "100", "verified-cheaper": "95", "good-receipts": "100",
		"bad-receipts": "100", "good-record": "100", "none": "100"} {
		got[p] = receivedBid{bid: Bid{Provider: p, Price: price}}
	}
	var order []string
	for _, b := range m.rankBids(got, nil) {
		order = append(order, b.bid.Provider)
	}
	want := []string{"cheap", "verified-cheaper", "verified", "good-receipts", "good-record", "none", "bad-receipts"}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("ranked %v, want %v", order, want)
		}
	}
	m.cfg.Receipts = nil
	if m.receiptScore("good-receipts") != 0 {
		t.Fatal("a score with no hook")
	}
}
