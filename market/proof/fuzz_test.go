package proof

import (
	"bytes"
	"errors"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// DecodeRecord, whatever the bytes: it never panics, refuses with
// ErrInvalid, and what it accepts is a valid record whose signature its
// verifier made and whose bytes are the one encoding of it.
func FuzzDecodeRecord(f *testing.F) {
	key, _ := newKey(f, crypto.Ed25519)
	_, prov := newKey(f, crypto.Ed25519)
	good := mustSign(f, sampleRecord(prov), key)
	f.Add(good)
	f.Add(mustSign(f, failed(sampleRecord(prov)), key))
	f.Add(good[:len(good)/2])
	f.Add([]byte{0xa0})
	f.Add([]byte("not cbor"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := DecodeRecord(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refused without ErrInvalid: %v", err)
			}
			return
		}
		if err := r.validate(); err != nil {
			t.Fatalf("accepted an invalid record: %v", err)
		}
		var s signed
		if err := codec.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		again, err := encode(signed{Body: mustEncode(t, r), Sig: s.Sig})
		if err != nil || !bytes.Equal(again, raw) {
			t.Fatalf("accepted bytes that are not the record's one encoding")
		}
	})
}

// The challenge protocol's request and reply, whatever the bytes: the
// decoders never panic and refuse with ErrInvalid.
func FuzzDecodeWire(f *testing.F) {
	for _, v := range []any{
		request{V: Version, Step: stepOpen, Seed: make([]byte, 32), Msg: []byte{1, 2}},
		request{V: Version, Step: stepChallenge, Msg: []byte{1}, GPUs: []string{"GPU-0"}},
		reply{V: Version, Openings: [][]byte{{1}, {2}}},
		reply{V: Version, Refused: "no", Code: codeRateLimit, RetryS: 60},
		recordsReply{V: Version, Records: [][]byte{{1}}},
	} {
		f.Add(mustEncode(f, v))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, e1 := decodeRequest(raw)
		_, e2 := decodeReply(raw, maxOpenBatchBytes)
		_, e3 := decodeRecordsReply(raw)
		for _, err := range []error{e1, e2, e3} {
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("refused without ErrInvalid: %v", err)
			}
		}
	})
}

func mustEncode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
