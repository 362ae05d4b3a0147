package receipt

import (
	"bytes"
	"errors"
	"testing"
)

// Decode, whatever the bytes: it never panics, refuses with ErrInvalid
// or ErrForged, and what it accepts is a valid receipt that a side
// signed, in the one encoding of it.
func FuzzDecode(f *testing.F) {
	prov, req := newParty(f), newParty(f)
	r := sample(prov, req, "fuzz", 0)
	good := both(f, r, prov, req)
	f.Add(good)
	f.Add(signBy(f, outcome(r, Failed), req.key))
	f.Add(signBy(f, with(r, func(r *Receipt) { r.Proofs = []string{dealID("p")} }), prov.key))
	f.Add(good[:len(good)/2])
	f.Add([]byte{0xa0})
	f.Add([]byte("not cbor"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := Decode(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrForged) {
				t.Fatalf("refused without ErrInvalid or ErrForged: %v", err)
			}
			return
		}
		if err := s.validate(); err != nil {
			t.Fatalf("accepted an invalid receipt: %v", err)
		}
		if !s.SignedBy(peerOf(t, s.Provider)) && !s.SignedBy(peerOf(t, s.Requester)) {
			t.Fatal("accepted a receipt neither side signed")
		}
		var env envelope
		if err := codec.Unmarshal(raw, &env); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mustEncode(t, s.Receipt), env.Body) || !bytes.Equal(mustEncode(t, env), raw) {
			t.Fatal("accepted bytes that are not the receipt's one encoding")
		}
	})
}

// The receipts protocol's request and reply, whatever the bytes: the
// decoders never panic and refuse with ErrInvalid.
func FuzzDecodeWire(f *testing.F) {
	for _, v := range []any{
		request{V: Version, Provider: "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"},
		reply{V: Version, Receipts: [][]byte{{1}, {2}}},
		reply{V: Version, Refused: "rate limited", RetryS: 60},
	} {
		f.Add(mustEncode(f, v))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, e1 := decodeRequest(raw)
		rep, e2 := decodeReply(raw)
		for _, err := range []error{e1, e2} {
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("refused without ErrInvalid: %v", err)
			}
		}
		if e2 == nil && (len(rep.Receipts) > MaxServed || len(rep.Refused) > maxReasonBytes) {
			t.Fatalf("accepted a reply out of bounds")
		}
	})
}
