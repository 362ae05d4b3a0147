package proof

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/gpu/challenge"
	"github.com/aixblock/aixblock/p2p"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// newKey is a fresh peer key of type typ and its peer ID.
func newKey(t testing.TB, typ int) (crypto.PrivKey, peer.ID) {
	t.Helper()
	key, _, err := crypto.GenerateKeyPair(typ, 2048)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return key, id
}

// sampleRecord is a pass of provider at testNow.
func sampleRecord(provider peer.ID) Record {
	seed := sha256.Sum256([]byte("seed"))
	return Record{Network: testNet, Provider: provider.String(), GPUs: []string{"GPU-0", "GPU-1"}, Class: mockClass,
		N: challenge.TestnetN, Precision: challenge.FP16, Rows: challenge.DefaultRows, SeedHash: seed[:],
		At: testNow.UnixMilli(), ElapsedUs: 1500, RTTUs: 100, Outcome: Pass}
}

func mustSign(t testing.TB, r Record, key crypto.PrivKey) []byte {
	t.Helper()
	raw, err := r.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// resign is raw's record changed by f, signed as change says: with the
// original signature kept (tampered), or by key with the body as f left
// it (Verifier and Key included).
func resign(t testing.TB, raw []byte, f func(*Record), key crypto.PrivKey) []byte {
	t.Helper()
	var s signed
	if err := codec.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	var r Record
	if err := codec.Unmarshal(s.Body, &r); err != nil {
		t.Fatal(err)
	}
	f(&r)
	body, err := encode(r)
	if err != nil {
		t.Fatal(err)
	}
	s.Body = body
	if key != nil {
		if s.Sig, err = key.Sign(sigInput(body)); err != nil {
			t.Fatal(err)
		}
	}
	out, err := encode(s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Signed records round-trip for every key type a peer may have.
func TestRecordRoundTrip(t *testing.T) {
	_, prov := newKey(t, crypto.Ed25519)
	for _, typ := range []int{crypto.Ed25519, crypto.ECDSA, crypto.Secp256k1, crypto.RSA} {
		key, id := newKey(t, typ)
		raw := mustSign(t, sampleRecord(prov), key)
		got, err := DecodeRecord(raw)
		if err != nil {
			t.Fatalf("key type %d: %v", typ, err)
		}
		if got.Verifier != id.String() || got.Check(testNet, prov, testNow) != nil || got.ID() == "" {
			t.Fatalf("key type %d: record %+v", typ, got)
		}
	}
}

// A forged, tampered or replayed record is refused with the reason.
func TestForgedRecordsRefused(t *testing.T) {
	key, _ := newKey(t, crypto.Ed25519)
	other, otherID := newKey(t, crypto.Ed25519)
	_, prov := newKey(t, crypto.Ed25519)
	_, elsewhere := newKey(t, crypto.Ed25519)
	good := mustSign(t, sampleRecord(prov), key)
	otherPub, _ := crypto.MarshalPublicKey(other.GetPublic())
	for _, c := range []struct {
		name string
		raw  []byte
		for_ peer.ID // the provider it comes with; zero: prov
		want string
	}{
		{"bad signature", resign(t, good, func(*Record) {}, other), "", "signature does not verify"},
		{"signer is not the verifier named", resign(t, good, func(r *Record) { r.Key = otherPub }, other), "", "not by the verifier it names"},
		{"signed by another as the verifier named", resign(t, good, func(r *Record) { r.Verifier = otherID.String(); r.Key = otherPub }, key), "", "signature does not verify"},
		{"tampered outcome", resign(t, mustSign(t, failed(sampleRecord(prov)), key), func(r *Record) { r.Outcome, r.Reason, r.Detail = Pass, "", "" }, nil), "", "signature does not verify"},
		{"tampered GPUs", resign(t, good, func(r *Record) { r.GPUs = append(r.GPUs, "GPU-2") }, nil), "", "signature does not verify"},
		{"replayed for another provider", good, elsewhere, "replayed for another provider"},
		{"another network", resign(t, good, func(r *Record) { r.Network = "mainnet" }, key), "", `of network "mainnet"`},
		{"from the future", resign(t, good, func(r *Record) { r.At = testNow.Add(time.Hour).UnixMilli() }, key), "", "ahead of"},
		{"another version", resign(t, good, func(r *Record) { r.V = 2 }, key), "", "version 2"},
		{"a pass with a reason", resign(t, good, func(r *Record) { r.Reason = ReasonWrongRow }, key), "", "outcome"},
		{"an unknown reason", resign(t, good, func(r *Record) { r.Outcome, r.Reason = Fail, "bad luck" }, key), "", "outcome"},
		{"no GPUs", resign(t, good, func(r *Record) { r.GPUs = nil }, key), "", "0 GPUs"},
		{"a GPU twice", resign(t, good, func(r *Record) { r.GPUs = []string{"GPU-0", "GPU-0"} }, key), "", "twice"},
		{"trailing bytes", append(bytes.Clone(good), 0), "", "invalid"},
		{"too large", make([]byte, MaxRecordBytes+1), "", "over the"},
	} {
		t.Run(c.name, func(t *testing.T) {
			provider := prov
			if c.for_ != "" {
				provider = c.for_
			}
			r, err := DecodeRecord(c.raw)
			if err == nil {
				err = r.Check(testNet, provider, testNow)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrInvalid with %q", err, c.want)
			}
			s := newStore(t, StoreConfig{})
			if _, err := s.Add(c.raw, testNow); err == nil && c.for_ == "" {
				t.Fatalf("the store kept it")
			}
		})
	}
}

func failed(r Record) Record {
	r.Outcome, r.Reason, r.Detail = Fail, ReasonWrongRow, "row 3"
	return r
}

// Records travel: a provider keeps the record of its challenge and
// serves it; a third node fetches it, checks it and counts it when it
// trusts the verifier.
func TestRecordsFetchedFromProviderVerify(t *testing.T) {
	w := newWorld(t, 2, CPU{}, Limits{})
	rec, err := verify(t, w.verifier(t, 1), w.provider(), mockClaim())
	if err != nil {
		t.Fatal(err)
	}
	requester := w.hosts[2]
	got, err := FetchRecords(context.Background(), requester, testNet, w.provider(), w.clock.peek())
	if err != nil || len(got) != 1 || got[0].ID() != rec.ID() {
		t.Fatalf("fetched %d records (%v), want the one made", len(got), err)
	}
	mine := newStore(t, StoreConfig{Self: requester.ID()})
	if _, err := mine.Add(got[0].Raw, w.clock.peek()); err != nil {
		t.Fatal(err)
	}
	verifier := w.hosts[1].ID()
	st := mine.Status(w.provider(), Trust(requester.ID(), func(p peer.ID) bool { return p == verifier }), w.clock.peek())
	if st.State != Verified || st.VerifiedBy != 1 || !strings.HasPrefix(st.String(), "verified by 1, last at 2030-01-02T") {
		t.Fatalf("status %q (%+v), want verified by 1", st, st)
	}
	if st := mine.Status(w.provider(), Trust(requester.ID(), nil), w.clock.peek()); st.State != Unverified {
		t.Fatalf("a stranger's record counted: %q", st)
	}
}

// A provider that serves records about another, or tampered ones, has
// them refused, each with its reason.
func TestLyingProviderRecordsRefused(t *testing.T) {
	hs := p2ptest.MockHosts(t, 3)
	liar, victim, requester := hs[0], hs[1], hs[2]
	key, _ := newKey(t, crypto.Ed25519)
	about := mustSign(t, sampleRecord(victim.ID()), key)
	ours := mustSign(t, failed(sampleRecord(liar.ID())), key)
	tampered := resign(t, ours, func(r *Record) { r.Outcome, r.Reason, r.Detail = Pass, "", "" }, nil)
	honest := mustSign(t, sampleRecord(liar.ID()), key)
	p2p.Handle(liar, p2p.ProtocolID(testNet, wireRecords.name), wireRecords.limits, nil, func(context.Context, peer.ID, []byte) ([]byte, error) {
		return encode(recordsReply{V: Version, Records: [][]byte{about, tampered, honest}})
	})
	got, err := FetchRecords(context.Background(), requester, testNet, liar.ID(), testNow)
	if len(got) != 1 || !bytes.Equal(got[0].Raw, honest) {
		t.Fatalf("kept %d records, want the honest one", len(got))
	}
	for _, want := range []string{"2 of 3 refused", "record 0: " + ErrInvalid.Error() + ": record about " + victim.ID().String(), "record 1: " + ErrInvalid.Error() + ": record signature does not verify"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}
