package lease

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aixblock/aixblock/market"
	ethcrypto "github.com/ethereum/go-ethereum/crypto"
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
