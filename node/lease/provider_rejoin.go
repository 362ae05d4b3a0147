package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/aixblock/aixblock/internal/atomicfile"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/libp2p/go-libp2p/core/peer"
)

// A distributed rank outlives its provider daemon's restart (issue 32):
// the rank's device stays in its holder's namespace, jobs reattaches to
// the rank, and the provider, as it starts, rejoins the rank's job network
// from what it kept of it (netRecord) and serves the network's relays
// again. The other members' senders reach this daemon again once it is
// back, as the same peer, on new connections.

// netRecord is a rank's place on its job network, kept with its deal
// (provided-nets/ID.json) so that a restarted daemon can rejoin it.
type netRecord struct {
	Net     string   `json:"net"`
	Rank    int      `json:"rank"`
	Members []string `json:"members"`
	Group   string   `json:"group"`
	// Generation of an elastic gang: its relays serve that network.
	Generation int           `json:"generation,omitempty"`
	Deals      []market.Deal `json:"deals"`
}

func (pv *Provider) netsDir() string { return filepath.Join(pv.cfg.Dir, "provided-nets") }

// saveNet keeps job id's place on its job network; a rank whose record
// cannot be written still runs, but would not outlive a restart.
func (pv *Provider) saveNet(id string, members []peer.ID, rec netRecord) {
	for _, p := range members {
		rec.Members = append(rec.Members, p.String())
	}
	b, err := json.Marshal(rec)
	if err == nil {
		err = os.MkdirAll(pv.netsDir(), 0o700)
	}
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(pv.netsDir(), id+".json"), b, 0o600)
	}
	if err != nil {
		pv.log.Warn("the rank's job network record was not kept; the rank will not outlive a restart of this daemon", "job_id", id, "err", err)
	}
}

// dropNet forgets job id's job network record.
func (pv *Provider) dropNet(id string) {
	if err := os.Remove(filepath.Join(pv.netsDir(), id+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		pv.log.Warn("remove the rank's job network record", "job_id", id, "err", err)
	}
}

// loadNet reads job id's job network record and its members.
func (pv *Provider) loadNet(id string) (netRecord, []peer.ID, error) {
	var rec netRecord
	b, err := os.ReadFile(filepath.Join(pv.netsDir(), id+".json"))
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		return rec, nil, fmt.Errorf("job network record: %w", err)
	}
	members := make([]peer.ID, len(rec.Members))
	for i, s := range rec.Members {
		if members[i], err = peer.Decode(s); err != nil {
			return rec, nil, fmt.Errorf("job network record: member %d: %w", i, err)
		}
	}
	return rec, members, nil
}

// rejoinRanks puts the ranks that outlived this daemon's restart back on
// their job networks (each in the background: a member may take a while
// to answer).
func (pv *Provider) rejoinRanks() {
	if pv.jobs == nil || pv.jobNet == nil {
		return
	}
	pv.mu.Lock()
	var ids []string
	for id := range pv.provided {
		ids = append(ids, id)
	}
	pv.mu.Unlock()
	for _, id := range ids {
		j, err := pv.jobs.Get(id)
		if err != nil || j.State.Terminal() || j.NetHolder == "" {
			continue
		}
		pv.spawn(func(ctx context.Context) { pv.rejoinRank(ctx, j) })
	}
}

// rejoinRank rejoins rank j's job network: its relays asked again, its
// device attached to, its members reached.
func (pv *Provider) rejoinRank(ctx context.Context, j *jobs.Job) {
	rec, members, err := pv.loadNet(j.ID)
	if err != nil {
		pv.jobs.Fail(j.ID, "the daemon restarted: "+err.Error())
		return
	}
	pv.serveRelay(ctx, rec.Net, members, relayProof{Group: rec.Group, Generation: rec.Generation, Deals: rec.Deals})
	join := func(ctx context.Context, nsPath string) (io.Closer, error) {
		return pv.jobNet.Rejoin(rec.Net, members, rec.Rank, nsPath)
	}
	rj := jobs.Rejoin{JoinNetwork: join}
	if j.Spec.Distributed != nil && j.Spec.Distributed.Elastic() {
		rj.Elastic = elasticHold
	}
	if err := pv.jobs.RejoinNetwork(ctx, j.ID, rj); err != nil {
		pv.log.Warn("the rank did not rejoin its job network after the restart", "job_id", j.ID, "err", err)
		return
	}
	pv.mu.Lock()
	pv.netOf[j.ID] = netRank{rec.Net, rec.Rank}
	pv.mu.Unlock()
	paths, err := pv.jobNet.Reach(ctx, members, pv.reach, reachWait)
	pv.log.Info("rank rejoined its job network after a restart", "job_id", j.ID, "rank", rec.Rank, "net", rec.Net, "paths", paths, "err", err)
}
