package lease

import (
	"errors"
	"strings"
	"testing"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func newPeerID(t *testing.T) peer.ID {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A hostile requester's prepare names the job network's members: each
// must be the provider of a deal of this requester, for this spec, signed
// by both; anything else is refused before the rank exists.
func TestHostileGangMembers(t *testing.T) {
	req, other := newPeerID(t), newPeerID(t)
	provs := []peer.ID{newPeerID(t), newPeerID(t)}
	deal := func(i int, requester peer.ID, spec string) market.Deal {
		return market.Deal{DealTerms: market.DealTerms{ID: "deal-" + string(rune('a'+i)), Requester: requester.String(),
			RequesterWallet: "0x01", Provider: provs[i].String(), SpecHash: spec}}
	}
	forged := errors.New("bad signature")
	m := &Provider{verifyDealFn: func(d market.Deal) error {
		if strings.HasSuffix(d.ID, "-forged") {
			return forged
		}
		return nil
	}}
	spec := jobs.Spec{Image: "x", Distributed: &jobs.Distributed{Nodes: 2}}
	own := deal(1, req, "h")
	for _, c := range []struct {
		name  string
		pr    prepareRequest
		want  string
		ranks []peer.ID
	}{
		{"as made", prepareRequest{NodeRank: 1, Group: "0123456789abcdef", Deals: []market.Deal{deal(0, req, "h"), own}}, "", provs},
		{"no group", prepareRequest{NodeRank: 1, Deals: []market.Deal{deal(0, req, "h"), own}}, "group", nil},
		{"one deal short", prepareRequest{NodeRank: 1, Group: "0123456789abcdef", Deals: []market.Deal{own}}, "deals: 1 for 2", nil},
		{"this deal at another rank", prepareRequest{NodeRank: 0, Group: "0123456789abcdef", Deals: []market.Deal{deal(0, req, "h"), own}}, "deals[0] is not deal", nil},
		{"another requester's deal", prepareRequest{NodeRank: 1, Group: "0123456789abcdef", Deals: []market.Deal{deal(0, other, "h"), own}}, "another requester's", nil},
		{"another spec's deal", prepareRequest{NodeRank: 1, Group: "0123456789abcdef", Deals: []market.Deal{deal(0, req, "h2"), own}}, "another spec's", nil},
		{"an unsigned deal", prepareRequest{NodeRank: 1, Group: "0123456789abcdef", Deals: func() []market.Deal {
			d := deal(0, req, "h")
			d.ID += "-forged"
			return []market.Deal{d, own}
		}()}, "bad signature", nil},
		{"a group that is a path", prepareRequest{NodeRank: 1, Group: "../../etc", Deals: []market.Deal{deal(0, req, "h"), own}}, "group", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.pr.Spec = spec
			got, err := m.checkGang(&own, c.pr)
			if c.want == "" {
				if err != nil || len(got) != 2 || got[0] != c.ranks[0] || got[1] != c.ranks[1] {
					t.Fatalf("members %v, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
	// Two requesters naming the same group get two networks.
	if netID(req.String(), "0123456789abcdef") == netID(other.String(), "0123456789abcdef") {
		t.Fatal("one network ID for two requesters' jobs")
	}
}
