package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// The job relay's side of a gang (issue 28 N6): a relay carries circuits
// only between the peers of a live job network it serves. A provider
// that is itself a job relay serves its own ranks' networks; a member
// behind NAT asks the relays it holds reservations on to serve its job
// network, showing the gang's deals, which the relay checks as a member
// does (signed by both sides, one requester and spec, each rank funded
// on chain) before it lets their providers through, for the deals'
// duration.

// relayProof is what a member shows a job relay: the gang's group, its
// generation (an elastic gang's restarts each have a network of their
// own members) and every rank's deal.
type relayProof struct {
	Group      string        `json:"group"`
	Generation int           `json:"generation,omitempty"`
	Deals      []market.Deal `json:"deals"`
}

// maxGangDeals bounds the deals a relay proof may name.
const maxGangDeals = 256

// serveRelay lets a job network's members use the relays this node
// serves or holds reservations on, before they reach each other.
func (pv *Provider) serveRelay(ctx context.Context, id string, members []peer.ID, pr relayProof) {
	b := p2p.RelayBudget{Duration: gangDuration(pr.Deals)}
	if pv.p2p.IsJobRelay() {
		if err := pv.p2p.AllowRelay(id, members, b); err != nil {
			pv.log.Warn("job relay: serving the job network refused", "net", id, "err", err)
		}
	}
	relays := pv.p2p.ReservedRelays()
	if len(relays) == 0 {
		return
	}
	proof, err := json.Marshal(pr)
	if err != nil {
		return
	}
	granted := false
	for _, r := range relays {
		if _, err := pv.p2p.RequestRelay(ctx, r, proof); err != nil {
			pv.log.Warn("a relay refused to serve the job network; its members may not reach this rank through it", "relay", r, "net", id, "err", err)
			continue
		}
		granted = true
	}
	if sw, ok := pv.p2p.Host.Network().(*swarm.Swarm); ok && granted {
		// A dial to a member through the relay before the grant was
		// refused, and the swarm backs off from it: the grant changes
		// that, so the members are dialled afresh.
		for _, p := range members {
			sw.Backoff().Clear(p)
		}
	}
}

// verifyRelay is this node's RelayVerifier, as a job relay: the proof's
// deals must make one funded gang of one requester, signed by both sides,
// and the asking peer one of its providers.
func (pv *Provider) verifyRelay(ctx context.Context, from peer.ID, raw []byte) (string, []peer.ID, p2p.RelayBudget, error) {
	var pr relayProof
	if err := json.Unmarshal(raw, &pr); err != nil {
		return "", nil, p2p.RelayBudget{}, fmt.Errorf("relay proof: %w", err)
	}
	if len(pr.Deals) < 2 || len(pr.Deals) > maxGangDeals {
		return "", nil, p2p.RelayBudget{}, fmt.Errorf("relay proof: %d deals: a job network has 2 to %d ranks", len(pr.Deals), maxGangDeals)
	}
	if err := checkJobID(pr.Group); err != nil {
		return "", nil, p2p.RelayBudget{}, fmt.Errorf("relay proof: group: %w", err)
	}
	if pr.Generation < 0 {
		return "", nil, p2p.RelayBudget{}, fmt.Errorf("relay proof: generation %d", pr.Generation)
	}
	first := pr.Deals[0]
	members := make([]peer.ID, len(pr.Deals))
	for r, d := range pr.Deals {
		if d.Requester != first.Requester || d.RequesterWallet != first.RequesterWallet || d.SpecHash != first.SpecHash {
			return "", nil, p2p.RelayBudget{}, fmt.Errorf("relay proof: deals[%d] is another requester's or another spec's", r)
		}
		if err := pv.verifyDeal(d); err != nil {
			return "", nil, p2p.RelayBudget{}, fmt.Errorf("relay proof: deals[%d]: %w", r, err)
		}
		p, err := peer.Decode(d.Provider)
		if err != nil {
			return "", nil, p2p.RelayBudget{}, fmt.Errorf("relay proof: deals[%d]: provider: %w", r, err)
		}
		members[r] = p
	}
	if err := pv.gangFunded(ctx, &market.Deal{}, pr.Deals); err != nil {
		return "", nil, p2p.RelayBudget{}, err
	}
	if !slices.Contains(members, from) {
		return "", nil, p2p.RelayBudget{}, errors.New("relay proof: the asking peer provides none of its deals")
	}
	return generationNet(first.Requester, pr.Group, pr.Generation), members, p2p.RelayBudget{Duration: gangDuration(pr.Deals)}, nil
}

// gangDuration is the longest of a gang's deals: how long its network
// may use a relay.
func gangDuration(deals []market.Deal) time.Duration {
	var d time.Duration
	for _, x := range deals {
		d = max(d, time.Duration(x.MaxDurationS)*time.Second)
	}
	return d
}
