package lease

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p"
	"github.com/ethereum/go-ethereum/common"
	ethcrypto "github.com/ethereum/go-ethereum/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Issue 28 N6: a job relay carried circuits for any two strangers. A
// member now asks a relay to serve its job network with the gang's deals,
// and the relay checks them as a member would: signed, one requester and
// spec, every rank funded on chain, the asker one of the providers.
func TestHostileRelayProof(t *testing.T) {
	h := newHostile(t)
	h.prov.verifyDealFn = func(market.Deal) error { return nil } // signatures: TestHostileGangMembers
	a, b := newPeerID(t), newPeerID(t)
	rank := func(id string, prov string) market.Deal {
		d := h.deal
		d.ID, d.Provider, d.MaxDurationS = id, prov, 300
		return d
	}
	funded := []market.Deal{rank("deal-0", a.String()), rank("deal-1", b.String())} // both paid from the channel newHostile funded
	proof := func(group string, deals []market.Deal) []byte {
		raw, _ := json.Marshal(relayProof{Group: group, Deals: deals})
		return raw
	}
	id, members, budget, err := h.prov.verifyRelay(t.Context(), a, proof("0123456789abcdef", funded))
	if err != nil || id != netID(h.deal.Requester, "0123456789abcdef") || len(members) != 2 || budget.Duration.Seconds() != 300 {
		t.Fatalf("a funded gang's member: id %q, members %v, budget %+v, %v", id, members, budget, err)
	}
	// A restarted elastic gang's network is its generation's.
	raw, _ := json.Marshal(relayProof{Group: "0123456789abcdef", Generation: 2, Deals: funded})
	if id, _, _, err := h.prov.verifyRelay(t.Context(), b, raw); err != nil || id != generationNet(h.deal.Requester, "0123456789abcdef", 2) {
		t.Fatalf("generation 2's member: id %q, %v", id, err)
	}
	key, _ := ethcrypto.GenerateKey()
	invented := rank("deal-x", newPeerID(t).String())
	invented.ProviderWallet = ethcrypto.PubkeyToAddress(key.PublicKey).Hex()
	other := h.deal
	other.ID, other.Requester = "deal-o", newPeerID(t).String()
	for _, c := range []struct {
		name  string
		from  string
		proof []byte
		want  string
	}{
		{"a stranger asks", "stranger", proof("0123456789abcdef", funded), "provides none"},
		{"an invented, unfunded member", "a", proof("0123456789abcdef", append(funded, invented)), "nobody funded"},
		{"another requester's deal", "a", proof("0123456789abcdef", append(funded, other)), "another requester's"},
		{"one deal", "a", proof("0123456789abcdef", funded[:1]), "1 deals"},
		{"a group that is a path", "a", proof("../x", funded), "group"},
		{"not JSON", "a", []byte("{"), "relay proof"},
		{"a generation below 0", "a", []byte(`{"group":"0123456789abcdef","generation":-1,"deals":[{},{}]}`), "generation -1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			from := a
			if c.from == "stranger" {
				from = newPeerID(t)
			}
			_, _, _, err := h.prov.verifyRelay(t.Context(), from, c.proof)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
}

// FuzzRelayProof: a relay grant's proof, as a job relay decodes and
// checks it: whatever it holds, a grant names the asker among the deals'
// providers and a network of the deals' requester and group.
func FuzzRelayProof(f *testing.F) {
	payer := common.HexToAddress("0x00000000000000000000000000000000000000d1")
	asker := "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"
	rank := market.Deal{DealTerms: market.DealTerms{ID: "deal-0", Requester: "req", RequesterWallet: payer.Hex(), Provider: asker,
		ProviderWallet: common.HexToAddress("0xd2").Hex(), Token: fakeToken.Hex(), Price: "3600", MaxDurationS: 60}}
	other := rank
	other.ID = "deal-1"
	b, _ := json.Marshal(relayProof{Group: "0123456789abcdef", Generation: 1, Deals: []market.Deal{rank, other}})
	f.Add(b)
	f.Add([]byte(`{"group":"../x","generation":-1,"deals":[{},{}]}`))
	pv := testProvider(f, Config{})
	pv.chain, pv.verifyDealFn = newFakeChannels(payer), func(market.Deal) error { return nil }
	from, _ := peer.Decode(asker)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > p2p.MaxRelayProof {
			return
		}
		id, members, _, err := pv.verifyRelay(t.Context(), from, b)
		if err != nil {
			return
		}
		var pr relayProof
		if json.Unmarshal(b, &pr) != nil || pr.Generation < 0 || !slices.Contains(members, from) ||
			id != generationNet(pr.Deals[0].Requester, pr.Group, pr.Generation) {
			t.Fatalf("granted %q to %v for %s", id, members, b)
		}
		mustJobID(t, "group", pr.Group)
	})
}
