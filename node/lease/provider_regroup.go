package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p/overlay"
	"github.com/libp2p/go-libp2p/core/peer"
)

// elasticHold is how long an elastic rank whose container failed waits
// for its requester's restart: longer than the requester's grace for a
// vanished provider (five voucher intervals, at least 10 s), so that a
// rank lost that way is noticed first.
const elasticHold = 3 * time.Minute

// regroupRequest restarts an elastic rank as a new generation of its
// gang: the members are the new generation's deals, by rank.
type regroupRequest struct {
	ID         string        `json:"id"` // the rank's job ID here
	Generation int           `json:"generation"`
	Group      string        `json:"group"`     // rank 0's job ID at the first start
	NodeRank   int           `json:"node_rank"` // this rank's in the new generation
	Deals      []market.Deal `json:"deals"`
	Env        []string      `json:"env"`
	Checkpoint string        `json:"checkpoint,omitempty"`
}

// generationNet is the job network of generation gen of a gang: the
// first start's, then one per restart, each only its members'.
func generationNet(requester, group string, gen int) string {
	if gen == 0 {
		return netID(requester, group)
	}
	return netID(requester, group+"/"+strconv.Itoa(gen))
}

// handleJobRegroup checks a restart as a prepare is checked and runs it:
// from the job's requester, of an elastic spec, every member's deal the
// requester's for this spec, signed by both sides and funded on chain,
// this rank's deal among them at its rank.
func (pv *Provider) handleJobRegroup(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	var rr regroupRequest
	if err := json.Unmarshal(req, &rr); err != nil {
		return nil, fmt.Errorf("restart request: %w", err)
	}
	idReq, _ := json.Marshal(jobIDRequest{ID: rr.ID})
	j, _, err := pv.providedJob(from, idReq)
	if err != nil {
		return nil, err
	}
	pv.mu.Lock()
	deal := pv.provided[rr.ID]
	pv.mu.Unlock()
	if !j.Spec.Distributed.Elastic() || j.Spec.Distributed.HostNetwork() {
		return nil, fmt.Errorf("restart request: job %s is no elastic rank (distributed.min_nodes)", rr.ID)
	}
	members, err := pv.checkMembers(&deal, j.Spec.Distributed, rr.Group, rr.NodeRank, rr.Deals)
	if err != nil {
		return nil, fmt.Errorf("restart request: %w", err)
	}
	if err := pv.gangFunded(ctx, &deal, rr.Deals); err != nil {
		return nil, err
	}
	if pv.jobNet == nil {
		return nil, errors.New("this provider has no job network (no libp2p host)")
	}
	id, rank := generationNet(deal.Requester, rr.Group, rr.Generation), rr.NodeRank
	pv.serveRelay(ctx, id, members, relayProof{Group: rr.Group, Generation: rr.Generation, Deals: rr.Deals})
	join := func(ctx context.Context, nsPath string) (io.Closer, error) {
		return pv.jobNet.Join(id, members, rank, nsPath)
	}
	if err := pv.jobs.Regroup(rr.ID, jobs.Regroup{Generation: rr.Generation, JoinNetwork: join, Env: rr.Env, Checkpoint: rr.Checkpoint}); err != nil {
		return nil, err
	}
	pv.mu.Lock()
	last := pv.netOf[rr.ID]
	pv.netOf[rr.ID] = netRank{id, rank}
	pv.mu.Unlock()
	if last.id != "" && last.id != id && pv.p2p != nil {
		pv.p2p.DisallowRelay(last.id) // the last generation's network is over
	}
	pv.saveNet(rr.ID, members, netRecord{Net: id, Rank: rank, Group: rr.Group, Generation: rr.Generation, Deals: rr.Deals})
	pv.log.Info("rank restarting with its gang", "job_id", rr.ID, "generation", rr.Generation, "rank", rank, "ranks", len(members), "addr", overlay.RankAddr(rank))
	return []byte("ok"), nil
}

// checkMembers checks a gang's member deals: as many as the spec's nodes
// (an elastic spec: from min_nodes), this rank's deal at rank, each the
// same requester's for the same spec and signed by both sides. It
// returns each rank's provider.
func (pv *Provider) checkMembers(deal *market.Deal, d *jobs.Distributed, group string, rank int, deals []market.Deal) ([]peer.ID, error) {
	least := d.Nodes
	if d.Elastic() {
		least = d.MinNodes
	}
	switch {
	case group == "":
		return nil, errors.New("group: missing (rank 0's job ID)")
	case len(deals) < least || len(deals) > d.Nodes:
		return nil, fmt.Errorf("deals: %d for %d ranks (at least %d)", len(deals), d.Nodes, least)
	case rank < 0 || rank >= len(deals):
		return nil, fmt.Errorf("node_rank %d of %d", rank, len(deals))
	case deals[rank].ID != deal.ID:
		return nil, fmt.Errorf("deals[%d] is not deal %s", rank, short(deal.ID))
	}
	if err := checkJobID(group); err != nil {
		return nil, fmt.Errorf("group: %w", err)
	}
	members := make([]peer.ID, len(deals))
	for r, o := range deals {
		if o.Requester != deal.Requester || o.RequesterWallet != deal.RequesterWallet || o.SpecHash != deal.SpecHash {
			return nil, fmt.Errorf("deals[%d] (%s) is another requester's or another spec's", r, short(o.ID))
		}
		if err := pv.verifyDeal(o); err != nil {
			return nil, fmt.Errorf("deals[%d]: %w", r, err)
		}
		p, err := peer.Decode(o.Provider)
		if err != nil {
			return nil, fmt.Errorf("deals[%d]: provider %q: %w", r, o.Provider, err)
		}
		members[r] = p
	}
	return members, nil
}
