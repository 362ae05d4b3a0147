package receipt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The shared test helpers: parties with keys and wallets, receipts
// between them, signed as a test needs, and stores.

const testNet = "receipttest"

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// party is one side of deals: a peer key, its ID and a wallet.
type party struct {
	key    crypto.PrivKey
	id     peer.ID
	wallet string
}

var partySeq int

func newParty(t testing.TB) party {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	partySeq++
	return party{key: key, id: id, wallet: fmt.Sprintf("0x%040x", partySeq)}
}

func parties(t testing.TB, n int) []party {
	out := make([]party, n)
	for i := range out {
		out[i] = newParty(t)
	}
	return out
}

// dealID is a deal ID from a name.
func dealID(name string) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:])
}

// sample is a completed deal of prov for req, ended age before testNow.
func sample(prov, req party, deal string, age time.Duration) Receipt {
	return Receipt{V: Version, Network: testNet, Deal: dealID(deal), Provider: prov.id.String(), Requester: req.id.String(),
		ProviderWallet: prov.wallet, RequesterWallet: req.wallet, RunMs: 90_000, Token: "native", Paid: "1250",
		Result: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", Outcome: None,
		EndedAt: testNow.Add(-age).UnixMilli()}
}

// with is r changed by f.
func with(r Receipt, f func(*Receipt)) Receipt {
	f(&r)
	return r
}

// signBy signs r by each of keys in turn: the first signs, the rest
// countersign.
func signBy(t testing.TB, r Receipt, keys ...crypto.PrivKey) []byte {
	t.Helper()
	raw, err := r.Sign(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys[1:] {
		if raw, err = Countersign(raw, k, func(Receipt) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return raw
}

// both is r signed by its provider, then its requester.
func both(t testing.TB, r Receipt, prov, req party) []byte {
	t.Helper()
	return signBy(t, r, prov.key, req.key)
}

// reenvelope is raw's envelope changed by f, encoded again.
func reenvelope(t testing.TB, raw []byte, f func(*envelope)) []byte {
	t.Helper()
	var env envelope
	if err := codec.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	f(&env)
	return mustEncode(t, env)
}

func mustEncode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newStore(t testing.TB, cfg StoreConfig) *Store {
	t.Helper()
	if cfg.Network == "" {
		cfg.Network = testNet
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s, err := OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustAdd(t testing.TB, s *Store, raw []byte) Signed {
	t.Helper()
	got, err := s.Add(raw, testNow)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// fakeChain is a PaidOnChain with fixed answers.
type fakeChain struct {
	payers int
	total  int64
	err    error
}

func (f fakeChain) PaidOnChain(context.Context, string) (int, *big.Int, error) {
	return f.payers, big.NewInt(f.total), f.err
}

func peerID(t testing.TB, key crypto.PrivKey) peer.ID {
	t.Helper()
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func peerOf(t testing.TB, s string) peer.ID {
	t.Helper()
	id, err := peer.Decode(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
