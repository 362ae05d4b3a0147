package market

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func fuzzKey(f *testing.F) (crypto.PrivKey, peer.ID) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(k)
	return k, id
}

// FuzzDecodeNoBid: whatever the bytes, the decoder never panics, and a
// no-bid it accepts is signed by the provider, within its limits, and
// printable.
func FuzzDecodeNoBid(f *testing.F) {
	k, id := fuzzKey(f)
	for _, r := range []*refusal{
		refuse(NoBidCPU, "need 4 CPU cores, 2 here"),
		{code: NoBidPrice, class: h100, floor: "2000000"},
		refuse(NoBidLimit, "you hold 4 unawarded reservations here"),
	} {
		raw, err := sealNoBid(specHash, id, r, k)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte{0xa0})
	f.Add([]byte("not cbor"))
	f.Fuzz(func(t *testing.T, b []byte) {
		nb, err := decodeNoBid(b, specHash, id)
		if err != nil {
			return
		}
		if len(b) > MaxNoBidBytes || nb.Provider != id.String() || nb.OfferID != specHash {
			t.Fatalf("accepted %+v from %d bytes", nb, len(b))
		}
		if printable(nb.Detail) != nb.Detail {
			t.Fatalf("accepted a detail with unprintable bytes: %q", nb.Detail)
		}
		if _, err := open("nobid", b, MaxNoBidBytes, &NoBid{}); err != nil {
			t.Fatalf("accepted but does not open: %v", err)
		}
	})
}

// FuzzDecodeOffer: whatever the bytes, the offer decoder never panics,
// and an offer it accepts is signed by its requester and valid.
func FuzzDecodeOffer(f *testing.F) {
	k, id := fuzzKey(f)
	now := time.Now()
	o := JobOffer{Version: ProtocolVersion, Requester: id.String(), Wallet: "0x" + "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12",
		Req: Requirements{GPUClass: h100, GPUs: 1}, Token: "native", MaxPrice: "5000", MaxDurationS: 3600,
		SpecHash: specHash, DeadlineMs: now.Add(time.Hour - time.Minute).UnixMilli(), Nonce: 1}
	raw, _, err := seal("offer", &o, k)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	o.Addrs = []string{"/ip4/127.0.0.1/tcp/1"}
	raw, _, _ = seal("offer", &o, k)
	f.Add(raw)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, oid, err := decodeOffer(b, now)
		if err != nil {
			return
		}
		if len(b) > MaxOfferBytes || len(oid) != 64 || got.validate(now) != nil {
			t.Fatalf("accepted %+v", got)
		}
	})
}
