package lease

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"
)

// An elastic gang's members may be fewer than its nodes, down to
// min_nodes, never more than nodes; a gang that is not elastic has
// exactly its nodes.
func TestElasticMembers(t *testing.T) {
	req := newPeerID(t)
	provs := []peer.ID{newPeerID(t), newPeerID(t), newPeerID(t), newPeerID(t)}
	deal := func(i int) market.Deal {
		return market.Deal{DealTerms: market.DealTerms{ID: "deal-" + string(rune('a'+i)), Requester: req.String(), RequesterWallet: "0x01", Provider: provs[i].String(), SpecHash: "h"}}
	}
	pv := &Provider{verifyDealFn: func(market.Deal) error { return nil }}
	own := deal(0)
	for _, c := range []struct {
		name  string
		d     jobs.Distributed
		deals []market.Deal
		want  string
	}{
		{"shrunk to min_nodes", jobs.Distributed{Nodes: 3, MinNodes: 2}, []market.Deal{own, deal(1)}, ""},
		{"grown back", jobs.Distributed{Nodes: 3, MinNodes: 2}, []market.Deal{own, deal(1), deal(3)}, ""},
		{"below min_nodes", jobs.Distributed{Nodes: 3, MinNodes: 2}, []market.Deal{own}, "deals: 1 for 3 ranks (at least 2)"},
		{"beyond nodes", jobs.Distributed{Nodes: 3, MinNodes: 2}, []market.Deal{own, deal(1), deal(2), deal(3)}, "deals: 4 for 3"},
		{"not elastic, one short", jobs.Distributed{Nodes: 3}, []market.Deal{own, deal(1)}, "deals: 2 for 3 ranks (at least 3)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := pv.checkMembers(&own, &c.d, "0123456789abcdef", 0, c.deals)
			if c.want == "" {
				if err != nil || len(got) != len(c.deals) {
					t.Fatalf("members %v, %v", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
	if generationNet(req.String(), "0123456789abcdef", 0) != netID(req.String(), "0123456789abcdef") ||
		generationNet(req.String(), "0123456789abcdef", 1) == generationNet(req.String(), "0123456789abcdef", 2) {
		t.Fatal("generations do not get networks of their own")
	}
}

// A restart is refused unless it comes from the job's requester, for an
// elastic rank, and names only members the requester funded on chain.
func TestHostileRegroup(t *testing.T) {
	req, stranger, other := newPeerID(t), newPeerID(t), newPeerID(t)
	payer := common.HexToAddress("0x00000000000000000000000000000000000000d1")
	own := market.Deal{DealTerms: market.DealTerms{ID: "deal-own", Requester: req.String(), RequesterWallet: payer.Hex(), Provider: newPeerID(t).String(),
		ProviderWallet: common.HexToAddress("0xd2").Hex(), Token: fakeToken.Hex(), Price: "3600", MaxDurationS: 3600, SpecHash: "h"}}
	unfunded := own
	unfunded.ID, unfunded.Provider, unfunded.ProviderWallet = "deal-unfunded", other.String(), common.HexToAddress("0xd3").Hex()
	runner := newFakeRunner()
	pv := testProvider(t, Config{})
	pv.jobs, pv.chain, pv.verifyDealFn = runner, newFakeChannels(payer), func(market.Deal) error { return nil }
	elastic := jobs.Spec{Image: "x", Distributed: &jobs.Distributed{Nodes: 3, MinNodes: 2}}
	for id, spec := range map[string]jobs.Spec{"00000000000000e1": elastic, "00000000000000e2": {Image: "x", Distributed: &jobs.Distributed{Nodes: 2}}} {
		if _, err := runner.Submit(spec, jobs.SubmitOptions{ID: id}); err != nil {
			t.Fatal(err)
		}
		pv.provided[id] = own
	}
	restart := func(id string) []byte {
		b, _ := json.Marshal(regroupRequest{ID: id, Generation: 1, Group: "0123456789abcdef", Deals: []market.Deal{own, unfunded}})
		return b
	}
	for _, c := range []struct {
		name string
		from peer.ID
		id   string
		want string
	}{
		{"from a stranger", stranger, "00000000000000e1", "no job 00000000000000e1 of yours"},
		{"of a rank that is not elastic", req, "00000000000000e2", "no elastic rank"},
		{"naming a member nobody funded", req, "00000000000000e1", "a rank nobody funded is no member"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := pv.handleJobRegroup(t.Context(), c.from, restart(c.id)); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
	goReq, _ := json.Marshal(goRequest{ID: "00000000000000e2", Checkpoint: fakeCID("a checkpoint")})
	if _, err := pv.handleJobGo(t.Context(), req, goReq); err == nil || !strings.Contains(err.Error(), "no elastic rank") {
		t.Fatalf("a go with a checkpoint for a rank that is not elastic: %v", err)
	}
	runner.mu.Lock()
	defer runner.mu.Unlock()
	if len(runner.regroups) != 0 || len(runner.goes) != 0 {
		t.Fatalf("a refused restart reached the rank: %+v, %q", runner.regroups, runner.goes)
	}
}

// FuzzRegroupRequest: jobs/regroup/1's request, as handleJobRegroup
// decodes it and checks its members: whatever it holds, a rank's members
// come only from deals, as many as they are, this rank's own among them.
func FuzzRegroupRequest(f *testing.F) {
	own := market.Deal{DealTerms: market.DealTerms{ID: "deal-own", Requester: "req", Provider: "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"}}
	b, _ := json.Marshal(regroupRequest{ID: "0123456789abcdef", Generation: 1, Group: "0123456789abcdef", Deals: []market.Deal{own, own}, Env: []string{"RANK=0"}})
	f.Add(b)
	f.Add([]byte(`{"id":"0123456789abcdef","generation":-1,"group":"../x","node_rank":9223372036854775807,"deals":[]}`))
	pv := &Provider{verifyDealFn: func(market.Deal) error { return nil }}
	d := &jobs.Distributed{Nodes: 3, MinNodes: 2}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > wireRegroup.limits.MaxRequest {
			return
		}
		var rr regroupRequest
		if json.Unmarshal(b, &rr) != nil {
			return
		}
		members, err := pv.checkMembers(&own, d, rr.Group, rr.NodeRank, rr.Deals)
		if err != nil {
			return
		}
		if len(members) != len(rr.Deals) || len(members) < d.MinNodes || len(members) > d.Nodes || rr.Deals[rr.NodeRank].ID != own.ID {
			t.Fatalf("accepted %d members for %d deals at rank %d", len(members), len(rr.Deals), rr.NodeRank)
		}
		mustJobID(t, "group", rr.Group)
	})
}
