package receipt

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// The provider signs, the requester countersigns; each step decodes to
// its kind, and the receipt's ID is the same whoever signed it.
func TestSignCountersign(t *testing.T) {
	prov, req, other := newParty(t), newParty(t), newParty(t)
	r := sample(prov, req, "deal", 0)
	one, err := r.Sign(prov.key)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := Decode(one)
	if err != nil || s1.Kind != ProviderOnly || !s1.SignedBy(prov.id) || s1.SignedBy(req.id) {
		t.Fatalf("provider-signed: %+v, %v", s1.Kind, err)
	}
	disagree := errors.New("paid 1250, I paid 1000")
	if _, err := Countersign(one, req.key, func(Receipt) error { return disagree }); !errors.Is(err, disagree) {
		t.Fatalf("countersigned what its check refused: %v", err)
	}
	if _, err := Countersign(one, other.key, func(Receipt) error { return nil }); err == nil || !strings.Contains(err.Error(), "neither side") {
		t.Fatalf("a third peer countersigned: %v", err)
	}
	if _, err := Countersign(one, prov.key, func(Receipt) error { return nil }); err == nil {
		t.Fatal("the provider countersigned its own receipt")
	}
	two, err := Countersign(one, req.key, func(Receipt) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Decode(two)
	if err != nil || s2.Kind != Both || !s2.SignedBy(req.id) || s2.SignedBy(other.id) {
		t.Fatalf("countersigned: %+v, %v", s2.Kind, err)
	}
	if s1.ID() != s2.ID() || s1.ID() == "" {
		t.Fatalf("IDs %s and %s", s1.ID(), s2.ID())
	}
	if _, err := Countersign(two, req.key, func(Receipt) error { return nil }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("countersigned twice: %v", err)
	}
	alone := signBy(t, with(r, func(r *Receipt) { r.Outcome = Failed }), req.key)
	if s, err := Decode(alone); err != nil || s.Kind != RequesterOnly {
		t.Fatalf("requester alone: %+v, %v", s.Kind, err)
	}
}

// Every field out of its bounds is refused, and the error names it.
func TestValidate(t *testing.T) {
	prov, req := newParty(t), newParty(t)
	base := sample(prov, req, "deal", 0)
	for _, c := range []struct {
		name string
		f    func(*Receipt)
		want string
	}{
		{"network", func(r *Receipt) { r.Network = "Bad Net" }, "network name"},
		{"deal", func(r *Receipt) { r.Deal = "abc" }, "deal ID"},
		{"provider", func(r *Receipt) { r.Provider = "nobody" }, "provider"},
		{"requester", func(r *Receipt) { r.Requester = "" }, "requester"},
		{"one peer both sides", func(r *Receipt) { r.Requester = r.Provider }, "one peer"},
		{"provider wallet", func(r *Receipt) { r.ProviderWallet = "0x12" }, "provider wallet"},
		{"requester wallet", func(r *Receipt) { r.RequesterWallet = "me" }, "requester wallet"},
		{"one wallet both sides", func(r *Receipt) { r.RequesterWallet = "0x" + strings.ToUpper(r.ProviderWallet[2:]) }, "share wallet"},
		{"negative run", func(r *Receipt) { r.RunMs = -1 }, "run time"},
		{"endless run", func(r *Receipt) { r.RunMs = MaxRun.Milliseconds() + 1 }, "run time"},
		{"token", func(r *Receipt) { r.Token = "usd" }, "token"},
		{"outcome", func(r *Receipt) { r.Outcome = "great" }, "outcome"},
		{"ended", func(r *Receipt) { r.EndedAt = 0 }, "ended at"},
		{"paid negative", func(r *Receipt) { r.Paid = "-1" }, "paid"},
		{"paid leading zero", func(r *Receipt) { r.Paid = "0125" }, "paid"},
		{"paid plus", func(r *Receipt) { r.Paid = "+1" }, "paid"},
		{"paid empty", func(r *Receipt) { r.Paid = "" }, "paid"},
		{"paid over a channel", func(r *Receipt) { r.Paid = "79228162514264337593543950336" }, "paid"},
		{"result", func(r *Receipt) { r.Result = "not-a-cid" }, "result"},
		{"result long", func(r *Receipt) { r.Result = strings.Repeat("b", 200) }, "result CID of 200"},
		{"result not canonical", func(r *Receipt) { r.Result = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n" + "x" }, "result"},
		{"proofs repeated", func(r *Receipt) { r.Proofs = []string{dealID("a"), dealID("a")} }, "repeated"},
		{"proof not an ID", func(r *Receipt) { r.Proofs = []string{"xyz"} }, "proof record ID"},
		{"too many proofs", func(r *Receipt) { r.Proofs = make([]string, MaxProofs+1) }, "proof records over"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := with(base, c.f).Sign(prov.key)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrInvalid naming %q", err, c.want)
			}
		})
	}
	unsorted := with(base, func(r *Receipt) { r.V, r.Proofs = Version, []string{dealID("x"), dealID("y")} })
	if unsorted.Proofs[0] < unsorted.Proofs[1] {
		unsorted.Proofs[0], unsorted.Proofs[1] = unsorted.Proofs[1], unsorted.Proofs[0]
	}
	raw := reenvelope(t, signBy(t, base, prov.key), func(e *envelope) {
		e.Body = mustEncode(t, unsorted)
		e.ProviderSig, _ = prov.key.Sign(sigInput(providerTag, e.Body))
	})
	if _, err := Decode(raw); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not sorted") {
		t.Fatalf("proofs unsorted, signed: %v", err)
	}
	ok := with(base, func(r *Receipt) { r.Result, r.Paid, r.Proofs = "", "0", []string{dealID("b"), dealID("a")} })
	if _, err := ok.Sign(prov.key); err != nil {
		t.Fatalf("a receipt without result, unpaid, with two proofs (Sign sorts them): %v", err)
	}
}

// From the attacker's side: receipts forged, tampered with, with one
// side's signature swapped or missing, oversized, or not canonical.
func TestDecodeHostile(t *testing.T) {
	prov, req, mallory := newParty(t), newParty(t), newParty(t)
	r := sample(prov, req, "deal", 0)
	good := both(t, r, prov, req)
	otherBody := mustEncode(t, with(r, func(r *Receipt) { r.V = Version; r.Paid = "999999" }))
	for _, c := range []struct {
		name string
		raw  []byte
		want error
		msg  string
	}{
		{"a bit flipped in the requester's signature", reenvelope(t, good, func(e *envelope) { e.RequesterSig[3] ^= 1 }), ErrForged, "requester signature does not verify"},
		{"the amount raised under both signatures", reenvelope(t, good, func(e *envelope) { e.Body = otherBody }), ErrForged, "does not verify"},
		{"signed by mallory as the requester", reenvelope(t, good, func(e *envelope) {
			e.RequesterKey, _, _ = pubKey(mallory.key)
			e.RequesterSig, _ = mallory.key.Sign(sigInput(requesterTag, e.Body))
		}), ErrForged, "requester signature made by " + mallory.id.String()},
		{"the provider's signature in the requester's place", reenvelope(t, good, func(e *envelope) {
			e.RequesterKey, e.RequesterSig = e.ProviderKey, e.ProviderSig
		}), ErrForged, "requester signature made by " + prov.id.String()},
		{"the provider signing for the requester under its key", reenvelope(t, good, func(e *envelope) {
			e.RequesterSig, _ = prov.key.Sign(sigInput(requesterTag, e.Body))
		}), ErrForged, "requester signature does not verify"},
		{"the sides' signatures swapped", reenvelope(t, good, func(e *envelope) {
			e.ProviderSig, e.RequesterSig = e.RequesterSig, e.ProviderSig
		}), ErrForged, "provider signature does not verify"},
		{"a key without its signature", reenvelope(t, good, func(e *envelope) { e.RequesterSig = nil }), ErrForged, "requester signature does not verify"},
		{"signed by neither side", reenvelope(t, good, func(e *envelope) {
			e.ProviderKey, e.ProviderSig, e.RequesterKey, e.RequesterSig = nil, nil, nil, nil
		}), ErrForged, "neither side"},
		{"not canonical", append(good[:len(good):len(good)], 0), ErrInvalid, "signed receipt"},
		{"oversized", reenvelope(t, good, func(e *envelope) { e.ProviderSig = make([]byte, MaxReceiptBytes) }), ErrInvalid, "over the"},
		{"garbage", []byte("receipt"), ErrInvalid, "signed receipt"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.raw)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v saying %q", err, c.want, c.msg)
			}
		})
	}
}

// Check refuses another network's receipt and one from the future.
func TestCheck(t *testing.T) {
	prov, req := newParty(t), newParty(t)
	for _, c := range []struct {
		name string
		r    Receipt
		want error
	}{
		{"this network, now", sample(prov, req, "a", 0), nil},
		{"within the skew", sample(prov, req, "b", -MaxSkew+time.Second), nil},
		{"another network", with(sample(prov, req, "c", 0), func(r *Receipt) { r.Network = "mainnet" }), ErrNetwork},
		{"from the future", sample(prov, req, "d", -MaxSkew-time.Second), ErrFuture},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Decode(both(t, c.r, prov, req))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Check(testNet, testNow); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// Any key type signs and verifies, not only those a peer ID inlines.
func TestRSAKeys(t *testing.T) {
	prov, req := newParty(t), newParty(t)
	key, _, err := crypto.GenerateKeyPair(crypto.RSA, 2048)
	if err != nil {
		t.Fatal(err)
	}
	req.key = key
	req.id = peerID(t, key)
	raw := both(t, sample(prov, req, "rsa", 0), prov, req)
	if s, err := Decode(raw); err != nil || s.Kind != Both || len(raw) > MaxReceiptBytes {
		t.Fatalf("RSA requester: %v (%d bytes)", err, len(raw))
	}
}
