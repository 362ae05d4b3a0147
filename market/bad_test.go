package market

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Unsigned, expired, oversized and malformed offers, bids and awards are
// refused with a reason and change nothing.
func TestBadMessagesChangeNothing(t *testing.T) {
	nodes := startMarket(t, "marketbad", []nodeSpec{
		{"dgxh100", map[string]string{h100: "1000"}},
		{"", nil},
	}, Config{})
	prov, req := nodes[0], nodes[1]
	reqID := req.p2p.Host.ID()
	ctx := context.Background()
	bad, goodRaw := badOffers(t, prov, req)
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := prov.m.handleOffer(ctx, reqID, tc.raw)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("handleOffer: %v, want an error containing %q", err, tc.want)
			}
			msg := &pubsub.Message{Message: &pb.Message{Data: tc.raw, From: []byte(reqID)}}
			if r := prov.m.validateGossipOffer(ctx, reqID, msg); r != pubsub.ValidationReject {
				t.Fatalf("gossip validator: %v, want reject", r)
			}
		})
	}
	// A valid offer relayed under someone else's name is rejected too.
	msg := &pubsub.Message{Message: &pb.Message{Data: goodRaw, From: []byte(prov.p2p.Host.ID())}}
	if r := prov.m.validateGossipOffer(ctx, reqID, msg); r != pubsub.ValidationReject {
		t.Fatalf("offer relayed as another's: %v", r)
	}
	if _, err := prov.m.handleOffer(ctx, prov.p2p.Host.ID(), goodRaw); err == nil || !strings.Contains(err.Error(), "sent by") {
		t.Fatalf("offer sent by someone other than its requester: %v", err)
	}
	refusesBidsAndAwardsForNothing(t, prov, req)

	prov.m.mu.Lock()
	held, bids, seen, deals := len(prov.m.held), len(prov.m.bids), prov.m.seen.len(), len(prov.m.deals)
	prov.m.mu.Unlock()
	req.m.mu.Lock()
	pending := len(req.m.pending)
	req.m.mu.Unlock()
	if held+bids+seen+deals+pending != 0 {
		t.Fatalf("state changed: held %d, bids %d, seen %d, deals %d, pending %d", held, bids, seen, deals, pending)
	}
}

// badOffer is a sealed offer that must be refused, and what the refusal
// says.
type badOffer struct {
	name string
	raw  []byte
	want string
}

// badOffers are offers of req's to prov that are bad in one way each,
// and a good one.
func badOffers(t *testing.T, prov, req *tnode) ([]badOffer, []byte) {
	t.Helper()
	reqID := req.p2p.Host.ID()
	reqKey := req.p2p.Host.Peerstore().PrivKey(reqID)
	offer := func(mut func(*JobOffer)) JobOffer {
		o := JobOffer{Version: ProtocolVersion, Requester: reqID.String(), Wallet: req.signer.Wallet(),
			Req: Requirements{GPUClass: h100, GPUs: 1}, Token: "native", MaxPrice: "5000", MaxDurationS: 3600,
			SpecHash: specHash, DeadlineMs: time.Now().Add(time.Minute).UnixMilli(), Nonce: 1}
		if mut != nil {
			mut(&o)
		}
		return o
	}
	good := offer(nil)
	goodRaw := sealWith(t, "offer", &good, reqKey)
	flipped := bytes.Clone(goodRaw)
	flipped[len(flipped)-5] ^= 0xff // inside the signature
	otherKey, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	expired := offer(func(o *JobOffer) { o.DeadlineMs = time.Now().Add(-time.Second).UnixMilli() })
	oldVersion := offer(func(o *JobOffer) { o.Version = 99 })
	noGPUs := offer(func(o *JobOffer) { o.Req.GPUs, o.Req.GPUClass = 0, "" })
	badPrice := offer(func(o *JobOffer) { o.MaxPrice = "-5" })
	huge := make([]byte, MaxOfferBytes+1)
	rand.Read(huge)
	advertRaw := sealWith(t, "advert", prov.m.buildAdvert(time.Now()), prov.p2p.Host.Peerstore().PrivKey(prov.p2p.Host.ID()))
	return []badOffer{
		{"bad signature", flipped, "signature does not verify"},
		{"signed by another key", sealWith(t, "offer", &good, otherKey), "signature does not verify"},
		{"expired", sealWith(t, "offer", &expired, reqKey), "expired"},
		{"other version", sealWith(t, "offer", &oldVersion, reqKey), "version 99"},
		{"no resources", sealWith(t, "offer", &noGPUs, reqKey), "needs gpus or cpu_cores"},
		{"bad price", sealWith(t, "offer", &badPrice, reqKey), "max_price"},
		{"oversized", huge, "over the"},
		{"malformed", []byte("not cbor at all"), "envelope"},
		{"an advert, not an offer", advertRaw, `want a offer`},
	}, goodRaw
}

// refusesBidsAndAwardsForNothing checks that req refuses bids, and prov
// awards, for no open offer or bid.
func refusesBidsAndAwardsForNothing(t *testing.T, prov, req *tnode) {
	t.Helper()
	ctx := context.Background()
	reqID := req.p2p.Host.ID()
	otherKey, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	b := Bid{Version: ProtocolVersion, OfferID: specHash, Provider: prov.p2p.Host.ID().String(), Wallet: prov.signer.Wallet(),
		Token: "native", Price: "1", GPUs: []string{"GPU-1"}, GPUClass: h100, ReservedUntilMs: time.Now().Add(time.Minute).UnixMilli()}
	provKey := prov.p2p.Host.Peerstore().PrivKey(prov.p2p.Host.ID())
	for _, raw := range [][]byte{
		sealWith(t, "bid", &b, provKey),  // no such open offer
		sealWith(t, "bid", &b, otherKey), // not signed by the provider it names
		[]byte{0xa0},                     // an empty map: no envelope
	} {
		if _, err := req.m.handleBid(ctx, prov.p2p.Host.ID(), raw); err == nil {
			t.Fatalf("bid %x accepted", raw[:8])
		}
	}
	d := Deal{DealTerms: DealTerms{Version: ProtocolVersion, OfferID: specHash, Requester: reqID.String(), Provider: prov.p2p.Host.ID().String()}}
	draw, _ := canonical(d)
	if _, err := prov.m.handleAward(ctx, reqID, draw); err == nil || !strings.Contains(err.Error(), "no bid of ours") {
		t.Fatalf("award for no bid: %v", err)
	}
	if _, err := prov.m.handleAward(ctx, peer.ID("someone"), draw); err == nil {
		t.Fatal("award from a stranger accepted")
	}
}

// sealWith seals v as a message of kind signed with k.
func sealWith(t testing.TB, kind string, v any, k crypto.PrivKey) []byte {
	t.Helper()
	raw, _, err := seal(kind, v, k)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
