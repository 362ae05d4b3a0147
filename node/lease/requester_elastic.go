package lease

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p/overlay"
	"github.com/libp2p/go-libp2p/core/peer"
)

// An elastic distributed job (distributed.min_nodes) does not fail with
// one rank, as torchrun's elastic agent does not inside one cluster: the
// requester restarts the ranks left as a new generation of the gang
// (jobs/regroup/1, each rank renumbered, the launcher contract anew, the
// latest checkpoint pinned here in /checkpoints), looks for a
// replacement in the market at once and grows the gang back to
// distributed.nodes with it at the next restart. The job keeps its ID:
// its head record is always rank 0 of the current generation (a new rank
// 0 takes the ID over when the old one is lost). A lost rank's deal ends
// as any ended deal does: it is paid the run time this node saw.

// elasticState is an elastic job's membership story, on its head record.
type elasticState struct {
	// Generation counts the gang's restarts, losses and growths alike.
	Generation int `json:"generation"`
	// Restarts counts those a rank's loss or failure caused (bounded by
	// distributed.max_restarts); a growth is no failure.
	Restarts int `json:"restarts"`
	// Former are the ranks that left, by their IDs here.
	Former []string       `json:"former,omitempty"`
	Events []api.JobEvent `json:"events,omitempty"`
	// Started are the checkpoints the gang's generations restarted from:
	// a rank that saved nothing since reports one back, late, and it is
	// no newer for that.
	Started []string `json:"started,omitempty"`
	// Over: the job goes on with its ranks as they are (ended, or failed
	// for want of ranks); no more restarts.
	Over bool `json:"over,omitempty"`
}

// gangIDs are a gang's ranks, current and former (a head's), by ID.
func (rj *Record) gangIDs() []string {
	ids := append([]string(nil), rj.Group...)
	if rj.Elastic != nil {
		ids = append(ids, rj.Elastic.Former...)
	}
	return ids
}

// memberState is how the requester sees one rank of an elastic gang.
type memberState int

const (
	memberRunning memberState = iota
	memberUnknown             // its provider is not answering, within its grace
	memberHeld                // its container failed: it waits for the restart
	memberLost                // its provider gone past the grace, or the rank failed
	memberDone                // completed
	memberStopped             // canceled or timed out: the job ends
)

// member is one rank as the requester last saw it; why says how a lost
// or held one came to be.
type member struct {
	id, provider, why string
	state             memberState
}

// classify reads a rank's record (rq.mu held).
func classify(rj *Record) member {
	m := member{id: rj.ID, provider: rj.Provider}
	j := rj.Last
	switch {
	case rj.Unreachable:
		m.state, m.why = memberLost, fmt.Sprintf("provider %s.. unreachable", short(rj.Provider))
	case j == nil:
	case j.State == api.JobUnknown:
		m.state = memberUnknown
	case j.State == jobs.Completed:
		m.state = memberDone
	case j.State == jobs.Failed:
		m.state, m.why = memberLost, "failed: "+j.Reason
	case j.State.Terminal():
		m.state, m.why = memberStopped, fmt.Sprintf("%s: %s", j.State, j.Reason)
	case j.Regroup != "" && j.Generation >= rj.ProviderGen:
		m.state, m.why = memberHeld, j.Regroup
	}
	return m
}

// elasticAct is what an elastic gang's round decides.
type elasticAct int

const (
	actNone    elasticAct = iota
	actWait               // a rank's provider is silent: its grace decides
	actRestart            // a new generation: keep (and the spare, when grow)
	actGiveUp             // fewer than min_nodes, or no restarts left: it fails
	actEnd                // a rank was stopped: the job ends with it
	actFinish             // a rank completed: the ranks end together
)

type elasticPlan struct {
	act  elasticAct
	keep []int // the ranks that go on, by their old rank, in order
	lost []int
	held []int
	grow bool // the spare joins as the last rank
	// why is the event's account of the change, before its outcome.
	why string
}

// decide is an elastic gang's round: members by their current rank,
// spare whether a replacement is funded and waiting to join.
func decide(d *jobs.Distributed, el *elasticState, ms []member, spare bool) elasticPlan {
	var p elasticPlan
	var whys []string
	unknown, done := 0, 0
	for r, m := range ms {
		switch m.state {
		case memberStopped:
			return elasticPlan{act: actEnd, why: fmt.Sprintf("rank %d %s", r, m.why)}
		case memberDone:
			done++
		case memberUnknown:
			unknown++
		case memberLost:
			p.lost = append(p.lost, r)
			whys = append(whys, fmt.Sprintf("rank %d lost (%s)", r, m.why))
			continue
		case memberHeld:
			p.held = append(p.held, r)
			whys = append(whys, fmt.Sprintf("rank %d %s", r, m.why))
		}
		p.keep = append(p.keep, r)
	}
	switch {
	case done > 0:
		return elasticPlan{act: actFinish}
	case len(p.lost) == 0 && len(p.held) == 0 && !spare:
		return elasticPlan{act: actNone}
	case unknown > 0:
		return elasticPlan{act: actWait}
	}
	p.why = strings.Join(whys, ", ")
	failed := len(p.lost) > 0 || len(p.held) > 0
	have := len(p.keep)
	if spare && have < d.Nodes {
		have++ // the spare joins the restart
	}
	switch {
	case have < d.MinNodes:
		p.act = actGiveUp
		p.why += fmt.Sprintf(": %d of %d ranks remain, fewer than min_nodes %d: the job fails", len(p.keep), d.Nodes, d.MinNodes)
	case failed && el.Restarts >= d.RestartLimit():
		p.act = actGiveUp
		p.why += fmt.Sprintf(": max_restarts %d reached: the job fails", d.RestartLimit())
	default:
		p.act, p.grow = actRestart, spare && len(p.keep) < d.Nodes
		if !failed && !p.grow {
			p.act = actNone
		}
	}
	return p
}

// overlayContract is the launcher contract's addresses on a job network
// of n ranks: rank 0's address and port, and every rank's HOST:PORT.
func overlayContract(spec *jobs.Spec, n int) (host string, port int, workers []string) {
	host, port = overlay.RankAddr(0).String(), spec.Distributed.MasterPort
	if port == 0 {
		port = defaultMasterPort
	}
	for r := range n {
		workers = append(workers, net.JoinHostPort(overlay.RankAddr(r).String(), strconv.Itoa(port)))
	}
	return host, port, workers
}

// rankEnv is rank r's launcher contract among n ranks.
func rankEnv(spec *jobs.Spec, n, r int, host string, port int, workers []string) []string {
	return jobs.Rendezvous{Nodes: n, ProcsPerNode: spec.Distributed.ProcsPerNode, NodeRank: r,
		MasterAddr: host, MasterPort: port, Workers: workers, Framework: spec.Distributed.Framework}.Env()
}

// spare is a replacement's deal, funded and waiting to join its gang;
// release ends its funding's count as being started.
type spare struct {
	deal    market.Deal
	release func()
}

// elasticLock is the lock one elastic job's rounds take turns on.
func (rq *Requester) elasticLock(id string) *sync.Mutex {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	l := rq.elastic[id]
	if l == nil {
		l = &sync.Mutex{}
		rq.elastic[id] = l
	}
	return l
}

// followElastic starts a round for each elastic job that is not in one.
func (rq *Requester) followElastic() {
	rq.mu.Lock()
	var heads []string
	for id, rj := range rq.records {
		if rj.Elastic != nil && !rj.Elastic.Over && !rj.Former {
			heads = append(heads, id)
		}
	}
	rq.mu.Unlock()
	for _, id := range heads {
		l := rq.elasticLock(id)
		if !l.TryLock() {
			continue
		}
		rq.spawn(func(ctx context.Context) {
			defer l.Unlock()
			rq.elasticRound(ctx, id)
		})
	}
}

// elasticRound decides on an elastic job's membership and acts on it
// (the job's lock held).
func (rq *Requester) elasticRound(ctx context.Context, id string) {
	rq.mu.Lock()
	head := rq.records[id]
	if head == nil || head.Elastic == nil || head.Elastic.Over {
		rq.mu.Unlock()
		return
	}
	var ms []member
	var ranks []*Record
	for _, gid := range head.Group {
		if o := rq.records[gid]; o != nil {
			ms, ranks = append(ms, classify(o)), append(ranks, o)
		}
	}
	sp := rq.spares[id]
	spec, el, members := head.Spec, *head.Elastic, len(head.Group)
	rq.mu.Unlock()
	if len(ranks) != members {
		return // a record went missing: nothing to decide on
	}
	p := decide(spec.Distributed, &el, ms, sp != nil)
	switch p.act {
	case actRestart:
		rq.restartGang(ctx, id, ranks, p, sp)
	case actGiveUp, actEnd:
		rq.endElastic(ctx, id, p.why)
	case actFinish:
		rq.mu.Lock()
		head.Elastic.Over = true
		rq.mu.Unlock()
		rq.dropSpare(ctx, id)
		return
	}
	rq.ensureSpare(id)
}

// endElastic ends an elastic job's restarts: the ranks still running
// stop with the reason (failed: the job fails for want of ranks).
func (rq *Requester) endElastic(ctx context.Context, id, why string) {
	rq.mu.Lock()
	head := rq.records[id]
	head.Elastic.Over = true
	group := append([]string(nil), head.Group...)
	rq.mu.Unlock()
	rq.event(id, -1, 0, why)
	rq.failGroup(ctx, group, why)
	rq.dropSpare(ctx, id)
}

// event notes a membership change in the job's record and the log: of
// generation gen (-1: the current one), going on with ranks.
func (rq *Requester) event(id string, gen, ranks int, text string) {
	rq.mu.Lock()
	head := rq.records[id]
	if head == nil || head.Elastic == nil {
		rq.mu.Unlock()
		return
	}
	if gen < 0 {
		gen = head.Elastic.Generation
	}
	e := api.JobEvent{At: time.Now().UTC(), Generation: gen, Ranks: ranks, Text: text}
	head.Elastic.Events = append(head.Elastic.Events, e)
	rq.mu.Unlock()
	if err := rq.saveRemote(head); err != nil {
		rq.log.Warn("remote job record not saved", "job_id", id, "err", err)
	}
	rq.log.Info("[job] "+text, "job_id", id, "generation", e.Generation)
}

// generation is the gang a restart makes: its ranks' records (the
// spare's last, once prepared), deals, checkpoint and number.
type generation struct {
	head       string
	gen        int
	spec       *jobs.Spec
	ranks      []*Record
	deals      []market.Deal
	checkpoint string
	// prepared is the checkpoint the spare was prepared with; the gang
	// may have saved a newer one by the time the spare is ready.
	prepared string
}

// restartGang restarts an elastic job as a new generation: the spare
// prepared first (the gang goes on without it if it does not), then
// every rank kept told to restart, the spare to go.
func (rq *Requester) restartGang(ctx context.Context, id string, old []*Record, p elasticPlan, sp *spare) {
	g := rq.newGeneration(id, old, p)
	var whys []string
	if p.why != "" {
		whys = append(whys, p.why)
	}
	if p.grow {
		rep, err := rq.prepareSpare(ctx, g, sp)
		if err != nil {
			rq.event(id, -1, len(g.ranks), fmt.Sprintf("the replacement on provider %s.. did not join: %v", short(sp.deal.Provider), err))
			if len(g.ranks) < g.spec.Distributed.MinNodes {
				rq.endElastic(ctx, id, fmt.Sprintf("%s: %d ranks remain, fewer than min_nodes %d: the job fails", p.why, len(g.ranks), g.spec.Distributed.MinNodes))
				return
			}
			if len(whys) == 0 {
				return
			}
		} else {
			g.ranks = append(g.ranks, rep)
			whys = append(whys, fmt.Sprintf("rank %d joins (provider %s.., a replacement from the market)", len(p.keep), short(sp.deal.Provider)))
		}
	}
	g.deals = g.deals[:len(g.ranks)]
	rq.catchUp(ctx, g.ranks[:len(p.keep)])
	rq.refreshCheckpoint(g)
	from := "the start"
	if g.checkpoint != "" {
		from = "checkpoint " + g.checkpoint
	}
	rq.event(id, g.gen, len(g.ranks), fmt.Sprintf("%s: restarting %d ranks from %s", strings.Join(whys, ", "), len(g.ranks), from))
	rq.sendGeneration(ctx, g, len(p.keep))
	rq.renumber(g, old, p)
}

// newGeneration is the restart's gang before the spare joins.
func (rq *Requester) newGeneration(id string, old []*Record, p elasticPlan) *generation {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	head := rq.records[id]
	g := &generation{head: id, gen: head.Elastic.Generation + 1, spec: &head.Spec}
	for _, r := range p.keep {
		g.ranks = append(g.ranks, old[r])
		g.deals = append(g.deals, old[r].Deal)
	}
	if sp := rq.spares[id]; p.grow && sp != nil {
		g.deals = append(g.deals, sp.deal)
	}
	rq.restoreLocked(g, head)
	g.prepared = g.checkpoint
	return g
}

// restoreLocked makes the job's newest pinned checkpoint the one every
// rank of the generation restarts from.
func (rq *Requester) restoreLocked(g *generation, head *Record) {
	if head.Spec.Checkpoint == nil {
		return
	}
	g.checkpoint, _ = rq.latestCheckpointLocked(head)
	for _, rj := range g.ranks {
		rj.Restored = g.checkpoint
	}
}

// refreshCheckpoint takes the newest checkpoint again just before the
// restart: the kept ranks trained on while the spare was prepared (an
// image and inputs can take minutes), and a restart from the checkpoint
// taken before would throw that training away.
func (rq *Requester) refreshCheckpoint(g *generation) {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	if head := rq.records[g.head]; head != nil {
		rq.restoreLocked(g, head)
	}
}

// prepareSpare prepares the replacement as the generation's last rank
// and records it; its deal is released when it does not prepare.
func (rq *Requester) prepareSpare(ctx context.Context, g *generation, sp *spare) (*Record, error) {
	rq.mu.Lock()
	delete(rq.spares, g.head)
	rq.mu.Unlock()
	defer sp.release()
	rank, ours := len(g.deals)-1, newJobID()
	pr := prepareRequest{startRequest: startRequest{DealID: sp.deal.ID, Spec: *g.spec, JobID: ours}, NodeRank: rank,
		Group: g.head, Deals: g.deals, Generation: g.gen, Checkpoint: g.checkpoint}
	req, _ := json.Marshal(pr)
	prov, _ := peer.Decode(sp.deal.Provider)
	var rep prepareReply
	resp, err := rq.request(ctx, prov, wirePrepare, req)
	if err == nil {
		err = json.Unmarshal(resp, &rep)
	}
	if err != nil {
		rq.releaseDeal(ctx, sp.deal)
		return nil, err
	}
	remote, err := providerJobID(ours, rep.Job.ID)
	if err == nil && g.spec.Distributed.Relay == "deny" {
		for q, path := range rep.Paths {
			if path != "direct" {
				err = fmt.Errorf("it reaches rank %d only through a relay, and distributed.relay is deny", q)
			}
		}
	}
	if err != nil {
		rq.cancelOn(ctx, prov, rep.Job.ID, err.Error())
		return nil, err
	}
	rj := &Record{ID: ours, Remote: remote, Provider: sp.deal.Provider, Deal: sp.deal, Vouched: "0", Spec: *g.spec,
		Restored: g.checkpoint}
	rep.Job.ID, rep.Job.Provider, rep.Job.ProviderWallet = ours, sp.deal.Provider, sp.deal.ProviderWallet
	rq.mu.Lock()
	rj.see(&rep.Job, time.Now())
	rq.records[ours] = rj
	rq.mu.Unlock()
	return rj, nil
}

// sendGeneration tells every rank of the generation its contract: a
// restart to the first kept, go to the spare. A rank that does not take
// it is failed, so that the next round counts it lost.
func (rq *Requester) sendGeneration(ctx context.Context, g *generation, kept int) {
	host, port, workers := overlayContract(g.spec, len(g.ranks))
	var wg sync.WaitGroup
	for r, rj := range g.ranks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rq.mu.Lock()
			prov, remote := rj.Provider, rj.remoteID()
			rq.mu.Unlock()
			w, msg := g.request(r, kept, remote, rankEnv(g.spec, len(g.ranks), r, host, port, workers))
			req, _ := json.Marshal(msg)
			p, _ := peer.Decode(prov)
			if _, err := rq.request(ctx, p, w, req); err != nil {
				rq.log.Warn("[job] a rank did not take its gang's restart", "job_id", g.head, "rank", r, "provider", prov, "err", err)
				rq.cancelOn(ctx, p, remote, fmt.Sprintf("it did not take its gang's generation %d: %v", g.gen, err))
			}
		}()
	}
	wg.Wait()
}

// request is what rank r of the generation is sent: a restart to the
// first kept ranks, go to the spare (with the newer checkpoint, when
// the gang saved one while the spare prepared).
func (g *generation) request(r, kept int, remote string, env []string) (wire, any) {
	if r < kept {
		return wireRegroup, regroupRequest{ID: remote, Generation: g.gen, Group: g.head, NodeRank: r,
			Deals: g.deals, Env: env, Checkpoint: g.checkpoint}
	}
	gr := goRequest{ID: remote, Env: env}
	if g.checkpoint != g.prepared {
		gr.Checkpoint = g.checkpoint
	}
	return wireGo, gr
}

// renumber records the new generation: each rank's new rank and group,
// the lost ones former, and the job's ID on the new rank 0 (a lost rank
// 0's record takes a new ID, its provider's ID for it kept).
func (rq *Requester) renumber(g *generation, old []*Record, p elasticPlan) {
	rq.mu.Lock()
	head := rq.records[g.head]
	el := head.Elastic
	head.Elastic = nil
	moved := map[string]string{} // old ID → new, for the files
	if next := g.ranks[0]; next != head {
		x := newJobID()
		moved[head.ID], moved[next.ID] = x, head.ID
		rq.renameLocked(head, x)
		rq.renameLocked(next, g.head)
		next.Placement, next.GangStartMs, head.Placement, head.GangStartMs = head.Placement, head.GangStartMs, nil, 0
	}
	el.Generation = g.gen
	if g.checkpoint != "" && !slices.Contains(el.Started, g.checkpoint) {
		el.Started = append(el.Started, g.checkpoint)
	}
	if len(p.lost) > 0 || len(p.held) > 0 {
		el.Restarts++
	}
	ids := make([]string, len(g.ranks))
	for r, rj := range g.ranks {
		ids[r] = rj.ID
	}
	for _, r := range p.lost {
		o := old[r]
		o.Former, o.Group = true, ids
		el.Former = append(el.Former, o.ID)
	}
	for r, rj := range g.ranks {
		rj.Group, rj.Rank, rj.ProviderGen = ids, r, g.gen
	}
	if len(g.ranks) > len(p.keep) {
		g.ranks[len(g.ranks)-1].ProviderGen = 0 // a new job there: its own first generation
	}
	g.ranks[0].Elastic = el
	rq.mu.Unlock()
	rq.saveGeneration(g, old, moved)
}

// renameLocked gives a record a new ID here, keeping its provider's.
func (rq *Requester) renameLocked(rj *Record, id string) {
	remote := rj.remoteID()
	delete(rq.records, rj.ID)
	if rq.edges[rj.ID] {
		delete(rq.edges, rj.ID)
		rq.edges[id] = true
	}
	if rq.pinning[rj.ID] {
		delete(rq.pinning, rj.ID)
		rq.pinning[id] = true
	}
	rj.ID, rj.Remote = id, ""
	if remote != id {
		rj.Remote = remote
	}
	rq.records[id] = rj
}

// saveGeneration writes every record the restart changed, then removes
// the files of IDs no record holds any more.
func (rq *Requester) saveGeneration(g *generation, old []*Record, moved map[string]string) {
	seen := map[*Record]bool{}
	for _, rj := range append(append([]*Record(nil), g.ranks...), old...) {
		if seen[rj] {
			continue
		}
		seen[rj] = true
		if err := rq.saveRemote(rj); err != nil {
			rq.log.Error("record of a restarted rank not saved", "job_id", rj.ID, "err", err)
		}
	}
	for from := range moved {
		rq.mu.Lock()
		_, held := rq.records[from]
		rq.mu.Unlock()
		if held {
			continue
		}
		if err := os.Remove(filepath.Join(rq.remoteDir(), from+".json")); err != nil && !os.IsNotExist(err) {
			rq.log.Warn("record of a renamed rank not removed", "file", from+".json", "err", err)
		}
	}
}

// ensureSpare looks for a replacement while an elastic job has fewer
// ranks than distributed.nodes and none is funded or being sought: a
// deal with a provider the job never ran on, funded, kept for the next
// round, which grows the gang with it.
func (rq *Requester) ensureSpare(id string) {
	rq.mu.Lock()
	head := rq.records[id]
	if head == nil || head.Elastic == nil || head.Elastic.Over || len(head.Group) >= head.Spec.Distributed.Nodes ||
		rq.spares[id] != nil || rq.seeking[id] {
		rq.mu.Unlock()
		return
	}
	rq.seeking[id] = true
	spec := head.Spec
	var used []string
	for _, gid := range head.gangIDs() {
		if o := rq.records[gid]; o != nil {
			used = append(used, o.Provider)
		}
	}
	rq.mu.Unlock()
	rq.spawn(func(ctx context.Context) {
		defer func() {
			rq.mu.Lock()
			delete(rq.seeking, id)
			rq.mu.Unlock()
		}()
		sp, err := rq.findSpare(ctx, &spec, used)
		if err != nil {
			rq.event(id, -1, 0, "no replacement from the market yet: "+err.Error())
			pause(ctx, time.Minute) // before the next round asks again
			return
		}
		rq.mu.Lock()
		rq.spares[id] = sp
		rq.mu.Unlock()
		l := rq.elasticLock(id)
		l.Lock()
		defer l.Unlock()
		rq.elasticRound(ctx, id)
	})
}

// findSpare makes and funds one deal for the spec, avoiding used.
func (rq *Requester) findSpare(ctx context.Context, spec *jobs.Spec, used []string) (*spare, error) {
	deals, err := rq.dealsWithin(ctx, spec, dealAsk{exclude: avoidPeers(used...), queue: -1, count: 1}, func(string) {})
	if err != nil {
		return nil, err
	}
	release, err := rq.fundChannel(ctx, *deals[0])
	if err != nil {
		rq.releaseDeal(ctx, *deals[0])
		return nil, err
	}
	return &spare{deal: *deals[0], release: release}, nil
}

// dropSpare releases an ended job's replacement, if one waits.
func (rq *Requester) dropSpare(ctx context.Context, id string) {
	rq.mu.Lock()
	sp := rq.spares[id]
	delete(rq.spares, id)
	rq.mu.Unlock()
	if sp != nil {
		sp.release()
		rq.releaseDeal(ctx, sp.deal)
	}
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// elasticGoing: rj is a rank of an elastic job whose restarts go on, so
// its end is for the job's round to judge, not the end of the job.
func (rq *Requester) elasticGoing(rj *Record) bool {
	if len(rj.Group) == 0 {
		return false
	}
	rq.mu.Lock()
	defer rq.mu.Unlock()
	head := rq.records[rj.Group[0]]
	return head != nil && head.Elastic != nil && !head.Elastic.Over
}
