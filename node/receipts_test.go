package node

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/aixblock/aixblock/market/receipt"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

const receiptTestNet = "nodereceipts"

// signer is one side of test deals.
type signer struct {
	key    crypto.PrivKey
	id     peer.ID
	wallet string
}

func hostSigner(h host.Host, n int) signer {
	return signer{key: h.Peerstore().PrivKey(h.ID()), id: h.ID(), wallet: fmt.Sprintf("0x%040x", n)}
}

func newSigner(t *testing.T, n int) signer {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return signer{key: key, id: id, wallet: fmt.Sprintf("0x%040x", n)}
}

// signedDeal is a receipt of a completed, agreed deal between prov and
// req, signed by both.
func signedDeal(t *testing.T, prov, req signer, name string) []byte {
	t.Helper()
	h := sha256.Sum256([]byte(name))
	r := receipt.Receipt{Network: receiptTestNet, Deal: hex.EncodeToString(h[:]), Provider: prov.id.String(), Requester: req.id.String(),
		ProviderWallet: prov.wallet, RequesterWallet: req.wallet, RunMs: 60_000, Token: "native", Paid: "100",
		Outcome: receipt.Agreed, EndedAt: time.Now().Add(-time.Hour).UnixMilli()}
	raw, err := r.Sign(prov.key)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err = receipt.Countersign(raw, req.key, func(receipt.Receipt) error { return nil }); err != nil {
		t.Fatal(err)
	}
	return raw
}

// serveReceipts gives h a store with raws, served.
func serveReceipts(t *testing.T, h host.Host, raws ...[]byte) *receipt.Store {
	t.Helper()
	s, err := receipt.OpenStore(receipt.StoreConfig{Network: receiptTestNet, Self: h.ID(), MaxPerProvider: 1024, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddAll(raws, time.Now()); err != nil {
		t.Fatal(err)
	}
	srv, err := receipt.NewServer(h, receiptTestNet, receipt.ServerConfig{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return s
}

// A requester gathers about two providers: one with a deal a peer it
// dealt with vouches for, one with a flood of receipts signed by fresh
// peer IDs (a Sybil's own requesters) and one by a stranger. The dealt
// peer's receipt counts; the flood and the stranger's count for
// nothing, so that the flooded provider scores as one with no receipts
// at all, and bid ranking (which breaks ties by Score) does not move.
func TestReceiptsDealtCountSybilsDoNot(t *testing.T) {
	hs := p2ptest.MockHosts(t, 5)
	self, good, sybil, dealt, stranger := hostSigner(hs[0], 1), hostSigner(hs[1], 2), hostSigner(hs[2], 3), hostSigner(hs[3], 4), hostSigner(hs[4], 5)
	var flood [][]byte
	for i := range 200 {
		flood = append(flood, signedDeal(t, sybil, newSigner(t, 100+i), fmt.Sprint("flood", i)))
	}
	serveReceipts(t, hs[1])
	serveReceipts(t, hs[2], flood...)
	serveReceipts(t, hs[3], signedDeal(t, good, dealt, "vouched"))
	serveReceipts(t, hs[4], signedDeal(t, sybil, stranger, "stranger"))
	mine := serveReceipts(t, hs[0], signedDeal(t, dealt, self, "bought from the dealt peer"))
	n := &Node{p2p: &p2p.Node{Host: hs[0]}, receipts: mine}
	var err error
	if n.gatherer, err = receipt.NewGatherer(receipt.GatherConfig{Host: hs[0], Store: mine, Peers: n.receiptPeers}); err != nil {
		t.Fatal(err)
	}
	defer n.gatherer.Close()
	for _, p := range []peer.ID{good.id, sybil.id} {
		if err := n.gatherer.Gather(t.Context(), p); err != nil {
			t.Fatalf("gather about %s: %v", p, err)
		}
	}
	hook := receiptHook{n}
	if v := n.receiptView(t.Context(), good.id, ""); v.Completed != 1 || v.Evidence.Dealt != 1 || hook.Score(good.id.String()) <= 0 {
		t.Fatalf("the vouched provider: %+v, score %g", v, hook.Score(good.id.String()))
	}
	// The stranger's receipt, handed in directly, counts no more.
	if _, err := mine.Add(signedDeal(t, sybil, stranger, "stranger"), time.Now()); err != nil {
		t.Fatal(err)
	}
	v := n.receiptView(t.Context(), sybil.id, "")
	if v.Completed != 0 || v.Evidence.Stranger != receipt.MaxServed+1 || hook.Score(sybil.id.String()) != hook.Score(newSigner(t, 9).id.String()) {
		t.Fatalf("the flooded provider: %+v, score %g", v, hook.Score(sybil.id.String()))
	}
}
