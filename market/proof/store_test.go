package proof

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// signer is a verifier's key and ID in the store's tests.
type signer struct {
	key crypto.PrivKey
	id  peer.ID
}

func signers(t *testing.T, n int) []signer {
	out := make([]signer, n)
	for i := range out {
		out[i].key, out[i].id = newKey(t, crypto.Ed25519)
	}
	return out
}

// at is a record about provider by s, age before testNow, passed or not.
func (s signer) at(t *testing.T, provider peer.ID, age time.Duration, pass bool) []byte {
	r := sampleRecord(provider)
	r.At = testNow.Add(-age).UnixMilli()
	if !pass {
		r = failed(r)
	}
	return mustSign(t, r, s.key)
}

// The store comes back from its file as it was; a record in the file
// that no longer verifies is dropped, the others kept.
func TestStorePersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "records.cbor")
	ss := signers(t, 2)
	_, prov := newKey(t, crypto.Ed25519)
	s := newStore(t, StoreConfig{Path: path})
	for i, sg := range ss {
		if _, err := s.Add(sg.at(t, prov, time.Duration(i)*time.Hour, true), testNow); err != nil {
			t.Fatal(err)
		}
	}
	again := newStore(t, StoreConfig{Path: path})
	if got, want := ids(again.Records(prov)), ids(s.Records(prov)); strings.Join(got, ",") != strings.Join(want, ",") || len(got) != 2 {
		t.Fatalf("reopened: %v, want %v", got, want)
	}
	// Another network's store drops them all, with a warning.
	other, err := OpenStore(StoreConfig{Path: path, Network: "other"})
	if err != nil || len(other.Records(prov)) != 0 {
		t.Fatalf("another network's store: %d records (%v)", len(other.Records(prov)), err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(StoreConfig{Path: path, Network: testNet}); err == nil {
		t.Fatal("a file that cannot be read opened empty")
	}
}

func ids(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID())
	}
	return out
}

// The store stays within its bounds, evicting others' oldest records
// before this node's own; a record added twice is kept once.
func TestStoreBounds(t *testing.T) {
	ss := signers(t, 4)
	self := ss[0]
	_, p1 := newKey(t, crypto.Ed25519)
	_, p2 := newKey(t, crypto.Ed25519)
	s := newStore(t, StoreConfig{Self: self.id, MaxPerProvider: 2, MaxRecords: 3})
	add := func(raw []byte) {
		t.Helper()
		if _, err := s.Add(raw, testNow); err != nil {
			t.Fatal(err)
		}
	}
	own := self.at(t, p1, 3*time.Hour, true) // the oldest, and our own
	add(own)
	add(own)
	add(ss[1].at(t, p1, 2*time.Hour, true))
	add(ss[2].at(t, p1, time.Hour, true)) // evicts ss[1]'s, not our older one
	got := s.Records(p1)
	if len(got) != 2 || got[0].Verifier != ss[2].id.String() || got[1].Verifier != self.id.String() {
		t.Fatalf("records about p1: %v, want ss[2]'s then our own", verifiers(got))
	}
	add(ss[3].at(t, p2, 4*time.Hour, true))
	add(ss[1].at(t, p2, 0, true)) // four in all: evicts the oldest of others', ss[3]'s
	if got := append(s.Records(p1), s.Records(p2)...); len(got) != 3 || len(s.Records(p2)) != 1 || s.Records(p2)[0].Verifier != ss[1].id.String() {
		t.Fatalf("records: %v, want three with ss[1]'s about p2", verifiers(got))
	}
	if got := s.Providers(); len(got) != 2 {
		t.Fatalf("providers %v", got)
	}
}

func verifiers(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Verifier[len(r.Verifier)-6:])
	}
	return out
}

// Status weighs each trusted signer's newest record by its weight and
// age.
func TestStatus(t *testing.T) {
	ss := signers(t, 4)
	self, peers := ss[0], ss[1:]
	_, prov := newKey(t, crypto.Ed25519)
	dealt := func(p peer.ID) bool { return p != peers[2].id }
	type rec struct {
		by   signer
		age  time.Duration
		pass bool
	}
	for _, c := range []struct {
		name string
		recs []rec
		want string
	}{
		{"nothing", nil, "unverified"},
		{"a stranger's pass", []rec{{peers[2], 0, true}}, "unverified"},
		{"our own pass", []rec{{self, time.Hour, true}}, "verified by 1, last at 2030-01-02T02:04:05Z"},
		{"two peers' passes", []rec{{peers[0], time.Hour, true}, {peers[1], 2 * time.Hour, true}}, "verified by 2, last at 2030-01-02T02:04:05Z"},
		{"our own failure outweighs two peers' passes", []rec{{self, time.Hour, false}, {peers[0], 0, true}, {peers[1], 0, true}}, "failed: row 3"},
		{"a peer's newest record counts, not its older", []rec{{peers[0], 2 * time.Hour, false}, {peers[0], time.Hour, true}}, "verified by 1, last at 2030-01-02T02:04:05Z"},
		{"an old own failure weighs less than fresh passes", []rec{{self, 28 * 24 * time.Hour, false}, {peers[0], 0, true}}, "verified by 1, last at 2030-01-02T03:04:05Z"},
		{"records beyond MaxAge count for nothing", []rec{{self, MaxAge + time.Hour, true}}, "unverified"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t, StoreConfig{Self: self.id})
			for _, r := range c.recs {
				if _, err := s.Add(r.by.at(t, prov, r.age, r.pass), testNow); err != nil {
					t.Fatal(err)
				}
			}
			st := s.Status(prov, Trust(self.id, dealt), testNow)
			if st.String() != c.want {
				t.Fatalf("status %q (%+v), want %q", st, st, c.want)
			}
		})
	}
}
