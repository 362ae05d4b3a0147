package market

import (
	"context"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeFunds is the chain at the Funds boundary: wallets' balances.
type fakeFunds struct {
	mu      sync.Mutex
	balance map[string]*big.Int
	calls   int
}

func (f *fakeFunds) fund(wallet string, amount int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.balance == nil {
		f.balance = map[string]*big.Int{}
	}
	f.balance[wallet] = big.NewInt(amount)
}

func (f *fakeFunds) CanPay(_ context.Context, wallet, _ string, amount *big.Int) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	b := f.balance[wallet]
	return b != nil && b.Cmp(amount) >= 0, nil
}

// Four fresh identities in a row (new peer IDs, new wallets) each ask for
// every GPU and would never award: none gets a reservation, and an honest
// requester whose wallet can pay gets its bid each time.
func TestFreshIdentitiesReserveNothing(t *testing.T) {
	funds := &fakeFunds{}
	clk := &testClock{t: time.Now()}
	specs := []nodeSpec{{"dgxh100", map[string]string{h100: "1000"}}}
	for range 5 {
		specs = append(specs, nodeSpec{"", nil})
	}
	nodes := startMarket(t, "marketfresh", specs, Config{ReserveFor: 10 * time.Second, Funds: funds, Now: clk.Now})
	prov, honest := nodes[0], nodes[5]
	funds.fund(honest.signer.Wallet(), 1_000_000)
	eight := func(o *JobOffer) { o.Req.GPUs = 8 }
	for i, evil := range nodes[1:5] {
		now := clk.Now().Add(time.Duration(i))
		if b, nb := hostileOffer(t, evil, prov, now, eight); b != nil {
			t.Fatalf("fresh identity %d: reserved %d GPUs", i, len(b.GPUs))
		} else if nb.Code != NoBidFunds || !strings.Contains(nb.Detail, "insufficient funds") {
			t.Fatalf("fresh identity %d: %+v", i, nb)
		}
		if f := freeH100(prov, now); f != 8 {
			t.Fatalf("after fresh identity %d: %d of 8 GPUs free", i, f)
		}
		b, nb := hostileOffer(t, honest, prov, now, eight)
		if b == nil {
			t.Fatalf("honest requester after fresh identity %d: %+v", i, nb)
		}
		// It lost (say): the requester releases it.
		if _, err := honest.m.request(context.Background(), prov.p2p.Host.ID(), protoFree, []byte(b.OfferID), bidLimits); err != nil {
			t.Fatalf("release: %v", err)
		}
	}
}

// An offer that names someone else's funded wallet (the attacker cannot
// sign for it) reserves nothing, and is not counted against that wallet.
func TestOfferCannotBorrowAWallet(t *testing.T) {
	funds := &fakeFunds{}
	nodes := startMarket(t, "marketborrow", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil}, // the attacker
		{"", nil}, // the wallet's owner
	}, Config{ReserveFor: 10 * time.Second, MaxReservations: 1, Funds: funds})
	prov, evil, owner := nodes[0], nodes[1], nodes[2]
	funds.fund(owner.signer.Wallet(), 1_000_000)
	borrow := func(o *JobOffer) { o.Wallet = owner.signer.Wallet(); o.Req.GPUs = 8 }
	if b, nb := hostileOffer(t, evil, prov, time.Now(), borrow); b != nil {
		t.Fatalf("an offer naming another's wallet reserved %d GPUs", len(b.GPUs))
	} else if nb.Code != NoBidFunds {
		t.Fatalf("borrowed wallet: %+v", nb)
	}
	unsigned := func(o *JobOffer) { o.Wallet = owner.signer.Wallet(); o.WalletSig = []byte{} }
	if b, nb := hostileOffer(t, evil, prov, time.Now().Add(1), unsigned); b != nil || nb.Code != NoBidFunds {
		t.Fatalf("an offer with no wallet signature: bid %v, %+v", b, nb)
	}
	if b, nb := hostileOffer(t, owner, prov, time.Now(), nil); b == nil {
		t.Fatalf("the wallet's owner: %+v", nb)
	}
}

// One funded wallet behind many peer IDs: the reservation limits follow
// the wallet, so fresh peer IDs do not reset them.
func TestRotatingPeerIDsShareTheirWalletsLimits(t *testing.T) {
	funds := &fakeFunds{}
	clk := &testClock{t: time.Now()}
	nodes := startMarket(t, "marketrotate", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil}, {"", nil}, {"", nil},
	}, Config{ReserveFor: 10 * time.Second, MaxReservations: 2, MaxLapses: 2, LapseWindow: time.Hour, Funds: funds, Now: clk.Now})
	prov := nodes[0]
	w := nodes[1].signer
	for _, n := range nodes[2:] {
		n.signer = w // one wallet, three peer IDs
	}
	funds.fund(w.Wallet(), 1_000_000)
	for i := range 2 {
		if b, nb := hostileOffer(t, nodes[1], prov, clk.Now().Add(time.Duration(i)), nil); b == nil {
			t.Fatalf("offer %d: %+v", i, nb)
		}
	}
	_, nb := hostileOffer(t, nodes[2], prov, clk.Now().Add(2), nil)
	if nb == nil || nb.Code != NoBidLimit || !strings.Contains(nb.Detail, "wallet") {
		t.Fatalf("a new peer ID with the same wallet: %+v", nb)
	}
	// Both lapse: the wallet, under any peer ID, is refused for the window.
	clk.Add(11 * time.Second)
	prov.m.sweep(clk.Now())
	_, nb = hostileOffer(t, nodes[3], prov, clk.Now(), nil)
	if nb == nil || nb.Code != NoBidLimit || !strings.Contains(nb.Detail, "lapsed") {
		t.Fatalf("a third peer ID after the wallet's reservations lapsed: %+v", nb)
	}
}

// However many funded wallets ask, the provider holds at most its budget
// of unawarded reservations at once.
func TestReservationBudgetPerProvider(t *testing.T) {
	funds := &fakeFunds{}
	specs := []nodeSpec{{"dgxh100", map[string]string{h100: "1000"}}}
	for range 4 {
		specs = append(specs, nodeSpec{"", nil})
	}
	nodes := startMarket(t, "marketbudget", specs, Config{ReserveFor: 10 * time.Second, ReserveBudget: 3, Funds: funds})
	prov := nodes[0]
	for _, n := range nodes[1:] {
		funds.fund(n.signer.Wallet(), 1_000_000)
	}
	for i, n := range nodes[1:4] {
		if b, nb := hostileOffer(t, n, prov, time.Now(), nil); b == nil {
			t.Fatalf("requester %d: %+v", i, nb)
		}
	}
	_, nb := hostileOffer(t, nodes[4], prov, time.Now(), nil)
	if nb == nil || nb.Code != NoBidLimit || !strings.Contains(nb.Detail, "3 unawarded reservations") {
		t.Fatalf("a fourth funded requester over a budget of 3: %+v", nb)
	}
	if f := freeH100(prov, time.Now()); f != 5 {
		t.Fatalf("%d GPUs free with 3 reserved", f)
	}
}
