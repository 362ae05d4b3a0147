package lease

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/libp2p/go-libp2p/core/peer"
)

// submitGang runs a distributed spec: a deal per node rank, every rank
// funded and prepared before any starts, then the contract to all. Rank 0
// is the job id (queued until now); progress hears why no deal was made
// yet.
func (rq *Requester) submitGang(ctx context.Context, spec *jobs.Spec, id string, progress func(string)) (*api.Job, error) {
	var placed api.Placement
	deals, err := rq.gangDeals(ctx, spec, &placed, progress)
	if err != nil {
		return nil, err
	}
	g := newGangStart(spec, id, deals)
	g.placement = placed
	release, err := rq.fundGang(ctx, deals)
	if err != nil {
		return nil, err
	}
	defer release()
	progress(fmt.Sprintf("%d deals made; preparing every rank", g.nodes))
	began := time.Now()
	if err := rq.prepareGang(ctx, g); err != nil {
		return nil, err
	}
	paths, err := rq.checkGangPaths(ctx, g)
	if err != nil {
		return nil, err
	}
	if err := g.contract(); err != nil {
		return nil, err
	}
	rq.recordGang(g)
	if err := rq.goGang(ctx, g); err != nil {
		return nil, err
	}
	took := time.Since(began)
	rq.log.Info("distributed job started", "ranks", g.nodes, "master", g.workers[0], "job_ids", g.ids, "paths", paths, "gang_start", took)
	return rq.gangStarted(g, took), nil
}

// gangStart is a distributed job on its way to starting: its ranks' deals,
// providers and prepare replies, the job IDs, and the contract each rank
// gets.
type gangStart struct {
	spec       *jobs.Spec
	nodes      int
	overlayNet bool // the ranks meet on the job's private network
	ranks      []gangRank
	// ids are the ranks' job IDs here (ids[0] the job's); remoteIDs the
	// ones a provider chose itself, else "".
	ids, remoteIDs []string
	// The contract: rank 0's address and every rank's.
	masterHost string
	masterPort int
	workers    []string
	// placement is how the providers were chosen (place.go).
	placement api.Placement
}

type gangRank struct {
	deal market.Deal
	prov peer.ID
	rep  prepareReply
}

func newGangStart(spec *jobs.Spec, id string, deals []*market.Deal) *gangStart {
	nodes := spec.Distributed.Nodes
	g := &gangStart{spec: spec, nodes: nodes, overlayNet: !spec.Distributed.HostNetwork(), ranks: make([]gangRank, nodes),
		ids: make([]string, nodes), remoteIDs: make([]string, nodes), workers: make([]string, nodes)}
	for r := range g.ids {
		g.ids[r] = newJobID()
		g.ranks[r].deal = *deals[r]
		g.ranks[r].prov, _ = peer.Decode(deals[r].Provider)
	}
	g.ids[0] = id // rank 0's is the job's
	return g
}

// gangDeals makes a deal for every rank. One offer for every rank: the
// ranks go to different providers in one bid window when the market has
// them (one machine's failure then takes one rank); a provider with room
// takes the rest.
func (rq *Requester) gangDeals(ctx context.Context, spec *jobs.Spec, placed *api.Placement, progress func(string)) ([]*market.Deal, error) {
	nodes := spec.Distributed.Nodes
	place := rq.placer(spec.Distributed.Relay == "deny", placed)
	deals, err := rq.dealsWithin(ctx, spec, dealAsk{queue: -1, count: nodes, place: place}, progress)
	if err != nil {
		return nil, fmt.Errorf("no deal for any of the %d ranks: %w", nodes, err)
	}
	var used []string
	for _, d := range deals {
		used = append(used, d.Provider)
	}
	for len(deals) < nodes {
		more, err := rq.dealsWithin(ctx, spec, dealAsk{exclude: avoidPeers(used...), count: nodes - len(deals)}, progress)
		if err != nil {
			more, err = rq.dealsWithin(ctx, spec, dealAsk{queue: -1, count: 1}, progress)
		}
		if err != nil {
			return nil, fmt.Errorf("rank %d: %w", len(deals), err)
		}
		deals = append(deals, more...)
	}
	return deals[:nodes], nil
}

// fundGang funds each channel for all of this job's ranks on it: the
// earlier ranks' deals are not running yet, so committedRunning does not
// count them. On a failure no rank starts and every deal is released.
// release ends the fundings' turns.
func (rq *Requester) fundGang(ctx context.Context, deals []*market.Deal) (release func(), err error) {
	var releases []func()
	release = func() {
		for _, f := range releases {
			f()
		}
	}
	var funded []market.Deal
	for r, d := range deals {
		rel, err := rq.fundChannel(ctx, *d, funded...)
		if err != nil {
			release()
			for _, d := range deals { // funded or not, no rank starts
				rq.releaseDeal(ctx, *d)
			}
			return nil, fmt.Errorf("rank %d: %w", r, err)
		}
		releases = append(releases, rel)
		funded = append(funded, *d)
	}
	return release, nil
}

// prepareGang prepares every rank in parallel; any failure stops the
// others. Each rank keeps the ID given here.
func (rq *Requester) prepareGang(ctx context.Context, g *gangStart) error {
	var dealList []market.Deal
	for _, rk := range g.ranks {
		dealList = append(dealList, rk.deal)
	}
	var wg sync.WaitGroup
	errs := make([]error, g.nodes)
	for r := range g.ranks {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			pr := prepareRequest{startRequest: startRequest{DealID: g.ranks[r].deal.ID, Spec: *g.spec, JobID: g.ids[r]}, NodeRank: r}
			if g.overlayNet {
				pr.Group, pr.Deals = g.ids[0], dealList
			}
			req, _ := json.Marshal(pr)
			resp, err := rq.request(ctx, g.ranks[r].prov, wirePrepare, req)
			if err == nil {
				err = json.Unmarshal(resp, &g.ranks[r].rep)
			}
			errs[r] = err
		}(r)
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			for q := range g.ranks {
				if errs[q] == nil {
					rq.cancelOn(ctx, g.ranks[q].prov, g.ranks[q].rep.Job.ID)
				}
			}
			if strings.Contains(err.Error(), fundsRefusal) {
				err = fmt.Errorf("%w: %v", errStartFunds, err)
			}
			return fmt.Errorf("rank %d on provider %s did not prepare: %w", r, g.ranks[r].deal.Provider, err)
		}
	}
	return nil
}

// checkGangPaths collects how each rank's provider reaches the others and
// stops every rank when one is relayed and the spec denies relays.
func (rq *Requester) checkGangPaths(ctx context.Context, g *gangStart) (map[string]string, error) {
	paths := map[string]string{}
	for r := range g.ranks {
		for q, path := range g.ranks[r].rep.Paths {
			paths[fmt.Sprintf("%d-%d", r, q)] = path
			if path != "direct" && g.overlayNet && g.spec.Distributed.Relay == "deny" {
				for k := range g.ranks {
					rq.cancelOn(ctx, g.ranks[k].prov, g.ranks[k].rep.Job.ID)
				}
				return nil, fmt.Errorf("rank %d's provider reaches rank %d's only through a relay, and distributed.relay is deny: allow it, or try again for other providers", r, q)
			}
		}
	}
	return paths, nil
}

// contract sets rank 0's address and every rank's, and the job IDs the
// providers chose themselves.
func (g *gangStart) contract() error {
	g.masterHost, g.masterPort = g.ranks[0].rep.Host, g.ranks[0].rep.Port
	if g.overlayNet {
		g.masterHost, g.masterPort, g.workers = overlayContract(g.spec, g.nodes)
	}
	for r := range g.ranks {
		if !g.overlayNet {
			g.workers[r] = net.JoinHostPort(g.ranks[r].rep.Host, strconv.Itoa(g.ranks[r].rep.Port))
		}
		if got := g.ranks[r].rep.Job.ID; got != g.ids[r] {
			if err := checkJobID(got); err != nil {
				return fmt.Errorf("rank %d on provider %s: %w", r, g.ranks[r].deal.Provider, err)
			}
			g.remoteIDs[r] = got // a provider that chose its own
		}
	}
	return nil
}

// recordGang records every rank, rank 0 replacing the queued record.
func (rq *Requester) recordGang(g *gangStart) {
	for r := range g.ranks {
		g.ranks[r].rep.Job.Provider = g.ranks[r].deal.Provider
		g.ranks[r].rep.Job.ProviderWallet = g.ranks[r].deal.ProviderWallet
		g.ranks[r].rep.Job.ID = g.ids[r]
		rj := &Record{ID: g.ids[r], Remote: g.remoteIDs[r], Provider: g.ranks[r].deal.Provider, Deal: g.ranks[r].deal,
			Vouched: "0", Spec: *g.spec, Group: g.ids, Rank: r}
		if r == 0 && g.spec.Distributed.Elastic() {
			rj.Elastic = &elasticState{}
		}
		if r == 0 && g.placement.Note != "" {
			rj.Placement = &g.placement
			g.ranks[r].rep.Job.Placement = rj.Placement
		}
		rj.see(&g.ranks[r].rep.Job, time.Now())
		rq.mu.Lock()
		if old := rq.records[rj.ID]; old != nil {
			rj.Rated = old.Rated
		}
		rq.records[rj.ID] = rj
		rq.mu.Unlock()
		if err := rq.saveRemote(rj); err != nil {
			rq.log.Error("record of a started rank not saved", "job_id", rj.ID, "err", err)
		}
	}
}

// goGang gives every rank the contract; a rank that does not start fails
// the whole group.
func (rq *Requester) goGang(ctx context.Context, g *gangStart) error {
	for r := range g.ranks {
		rid := g.ids[r]
		if g.remoteIDs[r] != "" {
			rid = g.remoteIDs[r]
		}
		req, _ := json.Marshal(goRequest{ID: rid, Env: rankEnv(g.spec, g.nodes, r, g.masterHost, g.masterPort, g.workers)})
		if _, err := rq.request(ctx, g.ranks[r].prov, wireGo, req); err != nil {
			rq.failGroup(ctx, g.ids, fmt.Sprintf("rank %d on provider %s did not start: %v", r, g.ranks[r].deal.Provider, err))
			return fmt.Errorf("rank %d on provider %s did not start: %w", r, g.ranks[r].deal.Provider, err)
		}
	}
	return nil
}

// gangStarted notes how long the gang start took and returns rank 0.
func (rq *Requester) gangStarted(g *gangStart, took time.Duration) *api.Job {
	rq.mu.Lock()
	if rj := rq.records[g.ids[0]]; rj != nil {
		rj.GangStartMs = took.Milliseconds()
	}
	rq.mu.Unlock()
	j := g.ranks[0].rep.Job
	j.GangStartMs = took.Milliseconds()
	return &j
}

// cancelOn asks a provider to stop one job; with a reason it fails it.
func (rq *Requester) cancelOn(ctx context.Context, prov peer.ID, id string, reason ...string) {
	req, _ := json.Marshal(jobIDRequest{ID: id, Reason: strings.Join(reason, "")})
	rq.request(ctx, prov, wireCancel, req)
}

// failGroup stops every rank of a distributed job still running.
func (rq *Requester) failGroup(ctx context.Context, group []string, reason string) {
	for _, id := range group {
		rq.mu.Lock()
		rj := rq.records[id]
		rq.mu.Unlock()
		if rj == nil || (rj.Last != nil && rj.Last.State.Terminal()) {
			continue
		}
		prov, _ := peer.Decode(rj.Provider)
		rq.cancelOn(ctx, prov, rj.remoteID(), "another rank failed: "+reason)
		rq.log.Warn("stopping a rank: another failed", "job_id", id, "reason", reason)
	}
}
