package lease

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/p2p/overlay"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Distributed jobs: one deal per node rank, a gang start (every rank funded
// and prepared before any starts), the launcher contract handed to every
// rank, and any rank failing fails all.

const (
	gangStartWindow = 2 * time.Minute
)

type prepareRequest struct {
	startRequest
	NodeRank int `json:"node_rank"`
	// Group is rank 0's job ID and Deals every rank's deal, by rank: the
	// providers of those deals, and only they, make up the job's network.
	// Absent for ranks on their hosts' networks.
	Group string        `json:"group,omitempty"`
	Deals []market.Deal `json:"deals,omitempty"`
}

type prepareReply struct {
	Job jobs.Job `json:"job"`
	// Host and Port are where a rank on its host's network listens.
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
	// Paths is how this provider reaches each other rank's (by rank):
	// direct or relayed; on the job's network only.
	Paths map[int]string `json:"paths,omitempty"`
}

// netRank is a provided rank's job network and rank.
type netRank struct {
	id   string
	rank int
}

// defaultMasterPort is where rank 0 listens on a job network (its own
// namespace: no port of the provider's is taken).
const defaultMasterPort = 29500

// reachWait is how long the prepare gives hole punching to turn a relayed
// path into a direct one.
const reachWait = 5 * time.Second

// netID names a job's network on its providers: the requester's peer ID
// and rank 0's job ID, hashed, so no requester can name another's.
func netID(requester, group string) string {
	h := sha256.Sum256([]byte("aixblock-jobnet/1\x00" + requester + "\x00" + group))
	return hex.EncodeToString(h[:16])
}

// checkGang checks the deals a prepare names for the job's network: one
// per rank, this rank's the deal being started, all of them signed by
// both sides, with the same requester and spec. It returns the members:
// each rank's provider.
func (m *Manager) checkGang(deal *market.Deal, pr prepareRequest) ([]peer.ID, error) {
	nodes := pr.Spec.Distributed.Nodes
	switch {
	case pr.Group == "":
		return nil, errors.New("prepare request: group: missing (rank 0's job ID)")
	case len(pr.Deals) != nodes:
		return nil, fmt.Errorf("prepare request: deals: %d for %d ranks", len(pr.Deals), nodes)
	case pr.NodeRank < 0 || pr.NodeRank >= nodes:
		return nil, fmt.Errorf("prepare request: node_rank %d of %d", pr.NodeRank, nodes)
	case pr.Deals[pr.NodeRank].ID != deal.ID:
		return nil, fmt.Errorf("prepare request: deals[%d] is not deal %s", pr.NodeRank, short(deal.ID))
	}
	if err := checkJobID(pr.Group); err != nil {
		return nil, fmt.Errorf("prepare request: group: %w", err)
	}
	members := make([]peer.ID, nodes)
	for r, d := range pr.Deals {
		if d.Requester != deal.Requester || d.RequesterWallet != deal.RequesterWallet || d.SpecHash != deal.SpecHash {
			return nil, fmt.Errorf("prepare request: deals[%d] (%s) is another requester's or another spec's", r, short(d.ID))
		}
		if err := m.verifyDeal(d); err != nil {
			return nil, fmt.Errorf("prepare request: deals[%d]: %w", r, err)
		}
		p, err := peer.Decode(d.Provider)
		if err != nil {
			return nil, fmt.Errorf("prepare request: deals[%d]: provider %q: %w", r, d.Provider, err)
		}
		members[r] = p
	}
	return members, nil
}

// gangFunded checks, on chain, that the requester funded every other
// rank's deal: the channel to that rank's provider wallet holds its
// maximum cost. Signatures alone cost nothing: a requester could invent
// members with throwaway keys, and each member is a peer this provider's
// job network opens a queue to. A member now costs its deal's deposit,
// locked for the challenge period, as a real rank does.
func (m *Manager) gangFunded(ctx context.Context, own *market.Deal, deals []market.Deal) error {
	need := map[common.Address]*big.Int{} // several ranks may share one provider's channel
	for r, d := range deals {
		if d.ID == own.ID {
			continue
		}
		// A deal that costs nothing would need no deposit: a member
		// invented at price 0 or for no time is none.
		if dealCost(d, time.Duration(d.MaxDurationS)*time.Second).Sign() <= 0 {
			return fmt.Errorf("prepare request: deals[%d] (%s) costs nothing (price %q for %d s): no rank of a market job", r, short(d.ID), d.Price, d.MaxDurationS)
		}
		w := common.HexToAddress(d.ProviderWallet)
		if need[w] == nil {
			need[w] = new(big.Int)
		}
		need[w].Add(need[w], dealCost(d, time.Duration(d.MaxDurationS)*time.Second))
	}
	for r, d := range deals {
		w := common.HexToAddress(d.ProviderWallet)
		n := need[w]
		if n == nil {
			continue
		}
		delete(need, w)
		ch, err := m.chain.ConfirmedChannel(ctx, common.HexToAddress(d.RequesterWallet), w, dealToken(d))
		if err != nil {
			return fmt.Errorf("prepare request: deals[%d]: reading its channel on chain (try again shortly): %w", r, err)
		}
		if ch.Available.Big().Cmp(n) < 0 {
			return fmt.Errorf("prepare request: deals[%d] (%s): the requester's channel to its provider's wallet %s holds %s, its ranks' deals need %s: a rank nobody funded is no member of this job",
				r, short(d.ID), w, ch.Available, n)
		}
	}
	return nil
}

// verifyDeal checks another rank's deal's signatures (the market's check;
// tests replace it).
func (m *Manager) verifyDeal(d market.Deal) error {
	if m.verifyDealFn != nil {
		return m.verifyDealFn(d)
	}
	if m.market == nil {
		return errors.New("no market here to check deals with")
	}
	return m.market.VerifyDeal(d)
}

func (m *Manager) hostNetworkFor(p peer.ID) bool {
	for _, s := range m.cfg.HostNetworkFor {
		if s == p.String() {
			return true
		}
	}
	return false
}

type goRequest struct {
	ID  string   `json:"id"`
	Env []string `json:"env"`
}

// hostAddr is the address other ranks reach this node at: its first
// public IPv4 listen address, else a private one, else loopback (a testnet
// on one machine).
func (m *Manager) hostAddr() string {
	best, rank := "127.0.0.1", 0
	for _, a := range m.p2p.Host.Addrs() {
		ip, err := manet.ToIP(a)
		if err != nil || ip.To4() == nil {
			continue
		}
		r := 1
		switch {
		case ip.IsLoopback():
			r = 1
		case ip.IsPrivate():
			r = 2
		default:
			r = 3
		}
		if r > rank {
			best, rank = ip.String(), r
		}
	}
	return best
}

// freePort finds a port in the configured range that nothing listens on.
func (m *Manager) freePort() (int, error) {
	lo, hi := 29500, 29999
	if r := m.cfg.Ports; r != "" {
		a, b, ok := strings.Cut(r, "-")
		x, err1 := strconv.Atoi(a)
		y, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || x < 1 || y > 65535 || x > y {
			return 0, fmt.Errorf("market.ports %q: want LOW-HIGH", r)
		}
		lo, hi = x, y
	}
	m.remote.mu.Lock()
	defer m.remote.mu.Unlock()
	for p := lo; p <= hi; p++ {
		if m.remote.ports[p] {
			continue
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		m.remote.ports[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d for a distributed rank", lo, hi)
}

// handleJobPrepare is the provider's first phase of a gang start: the same
// checks as a single job, then the job prepares and waits.
func (m *Manager) handleJobPrepare(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	var pr prepareRequest
	if err := json.Unmarshal(req, &pr); err != nil {
		return nil, fmt.Errorf("prepare request: %w", err)
	}
	if pr.Spec.Distributed == nil {
		return nil, errors.New("prepare request: the spec is not distributed")
	}
	if pr.Spec.Distributed.HostNetwork() && !m.hostNetworkFor(from) {
		return nil, errors.New("distributed.network: host: this provider gives its network only to the requesters in its market.host_network_for; leave distributed.network out to run on the job's private network")
	}
	deal, err := m.checkStart(ctx, from, pr.startRequest)
	if err != nil {
		return nil, err
	}
	defer m.doneStarting(deal.ID)
	if !pr.Spec.Distributed.HostNetwork() {
		return m.prepareOnJobNet(ctx, deal, pr)
	}
	port, err := m.freePort()
	if err != nil {
		return nil, err
	}
	// The port is the job's once it runs (watchProvided frees it when the
	// job ends); a prepare that fails before gives it back here.
	owned := false
	defer func() {
		if !owned {
			m.remote.mu.Lock()
			delete(m.remote.ports, port)
			m.remote.mu.Unlock()
		}
	}()
	j, err := m.submitProvided(deal, pr.Spec, jobs.SubmitOptions{Gate: true, HostNetwork: true, ID: pr.JobID})
	if err != nil {
		return nil, err
	}
	m.remote.mu.Lock()
	m.remote.portOf[j.ID] = port
	m.remote.mu.Unlock()
	owned = true
	if err := m.startedProvided(j, *deal); err != nil {
		// The job failed and its watch never started: the port goes back.
		m.remote.mu.Lock()
		delete(m.remote.portOf, j.ID)
		m.remote.mu.Unlock()
		owned = false
		return nil, err
	}
	m.failUnstarted(j.ID)
	return json.Marshal(prepareReply{Job: *j, Host: m.hostAddr(), Port: port})
}

// failUnstarted fails a rank still waiting at the end of the gang start
// window: a gang that never starts does not hold the GPUs.
func (m *Manager) failUnstarted(id string) {
	m.spawn(func(ctx context.Context) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(gangStartWindow):
		}
		if m.jobs.Prepared(id) {
			m.jobs.Fail(id, "the other ranks did not start within the gang start window")
		}
	})
}

// prepareOnJobNet prepares a rank on its job's private network: the deals
// checked, the job submitted to join the network once prepared, and every
// other rank's provider reached (the path to each is in the reply, so the
// requester can refuse relayed paths before any rank starts).
func (m *Manager) prepareOnJobNet(ctx context.Context, deal *market.Deal, pr prepareRequest) ([]byte, error) {
	if m.jobNet == nil {
		return nil, errors.New("this provider has no job network (no libp2p host)")
	}
	members, err := m.checkGang(deal, pr)
	if err != nil {
		return nil, err
	}
	if err := m.gangFunded(ctx, deal, pr.Deals); err != nil {
		return nil, err
	}
	id, rank := netID(deal.Requester, pr.Group), pr.NodeRank
	m.serveRelay(ctx, id, members, pr)
	join := func(ctx context.Context, nsPath string) (io.Closer, error) {
		return m.jobNet.Join(id, members, rank, nsPath)
	}
	// The collective libraries pick their interface by the hostname's
	// address, which in the rank's namespace is loopback: name the job
	// network's device instead.
	ifEnv := []string{"GLOO_SOCKET_IFNAME=" + overlay.IfName, "NCCL_SOCKET_IFNAME=" + overlay.IfName, "TP_SOCKET_IFNAME=" + overlay.IfName}
	j, err := m.submitProvided(deal, pr.Spec, jobs.SubmitOptions{Gate: true, JoinNetwork: join, Env: ifEnv, ID: pr.JobID})
	if err != nil {
		return nil, err
	}
	if err := m.startedProvided(j, *deal); err != nil {
		return nil, err
	}
	m.remote.mu.Lock()
	m.remote.netOf[j.ID] = netRank{id, rank}
	m.remote.mu.Unlock()
	m.failUnstarted(j.ID)
	paths, err := m.jobNet.Reach(ctx, members, m.reach, reachWait)
	if err != nil {
		m.jobs.Fail(j.ID, "the job network: "+err.Error())
		return nil, fmt.Errorf("the job network: %w", err)
	}
	rep := prepareReply{Job: *j, Paths: map[int]string{}}
	for r, p := range members {
		if path, ok := paths[p]; ok {
			rep.Paths[r] = path
		}
	}
	m.log.Info("rank prepared on its job network", "job_id", j.ID, "rank", rank, "net", id, "paths", rep.Paths)
	return json.Marshal(rep)
}

func (m *Manager) handleJobGo(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	var g goRequest
	if err := json.Unmarshal(req, &g); err != nil {
		return nil, err
	}
	r, _ := json.Marshal(jobIDRequest{ID: g.ID})
	if _, _, err := m.providedJob(from, r); err != nil {
		return nil, err
	}
	if !m.jobs.Gated(g.ID) {
		// Only a gang's rank waits for go; answering anything else at once
		// keeps a request from holding a goroutine for the start window.
		return nil, fmt.Errorf("job %s is not a rank waiting for its gang to start", g.ID)
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !m.jobs.Prepared(g.ID) { // still fetching the image or inputs
		if j, err := m.jobs.Get(g.ID); err != nil || j.State.Terminal() {
			return nil, fmt.Errorf("job %s cannot start: %v", g.ID, stateOf(j))
		}
		select {
		case <-ctx.Done(): // the stream's limit (the gang start window) or its reset
			return nil, fmt.Errorf("job %s cannot start: still preparing (%w)", g.ID, ctx.Err())
		case <-t.C:
		}
	}
	// The env crosses from another daemon into the container.
	if err := jobs.ValidateGoEnv(g.Env); err != nil {
		m.jobs.Fail(g.ID, "distributed start refused: "+err.Error())
		return nil, err
	}
	if err := m.jobs.Go(g.ID, g.Env); err != nil {
		return nil, err
	}
	return []byte("ok"), nil
}

func stateOf(j *jobs.Job) string {
	if j == nil {
		return "gone"
	}
	return string(j.State) + " " + j.Reason
}

// submitGang runs a distributed spec: a deal per node rank, every rank
// funded and prepared before any starts, then the contract to all. Rank 0
// is the job id (queued until now); progress hears why no deal was made
// yet.
func (m *Manager) submitGang(ctx context.Context, spec *jobs.Spec, id string, progress func(string)) (*jobs.Job, error) {
	nodes := spec.Distributed.Nodes
	type rank struct {
		deal market.Deal
		prov peer.ID
		rep  prepareReply
	}
	ranks := make([]rank, nodes)
	// One offer for every rank: the ranks go to different providers in
	// one bid window when the market has them (one machine's failure then
	// takes one rank); a provider with room takes the rest.
	deals, err := m.dealsWithin(ctx, spec, nil, -1, nodes, progress)
	if err != nil {
		return nil, fmt.Errorf("no deal for any of the %d ranks: %w", nodes, err)
	}
	var used []string
	for _, d := range deals {
		used = append(used, d.Provider)
	}
	for len(deals) < nodes {
		more, err := m.dealsWithin(ctx, spec, used, 0, nodes-len(deals), progress)
		if err != nil {
			more, err = m.dealsWithin(ctx, spec, nil, -1, 1, progress)
		}
		if err != nil {
			return nil, fmt.Errorf("rank %d: %w", len(deals), err)
		}
		deals = append(deals, more...)
	}
	// Each channel is funded for all of this job's ranks on it: the
	// earlier ranks' deals are not running yet, so committedRunning
	// does not count them.
	var funded []market.Deal
	for r, d := range deals[:nodes] {
		release, err := m.fundChannel(ctx, *d, funded...)
		if err != nil {
			for _, d := range deals[:nodes] { // funded or not, no rank starts
				m.releaseDeal(ctx, *d)
			}
			return nil, fmt.Errorf("rank %d: %w", r, err)
		}
		defer release()
		funded = append(funded, *d)
		ranks[r].deal = *d
		ranks[r].prov, _ = peer.Decode(d.Provider)
	}
	// Prepare every rank (in parallel); any failure stops the others. Each
	// rank keeps the ID given here: rank 0's is the job's.
	progress(fmt.Sprintf("%d deals made; preparing every rank", nodes))
	gangStart := time.Now()
	overlayNet := !spec.Distributed.HostNetwork()
	var dealList []market.Deal
	for _, rk := range ranks {
		dealList = append(dealList, rk.deal)
	}
	ids := make([]string, nodes)
	for r := range ids {
		ids[r] = newJobID()
	}
	ids[0] = id
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for r := range ranks {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			pr := prepareRequest{startRequest: startRequest{DealID: ranks[r].deal.ID, Spec: *spec, JobID: ids[r]}, NodeRank: r}
			if overlayNet {
				pr.Group, pr.Deals = ids[0], dealList
			}
			req, _ := json.Marshal(pr)
			resp, err := m.request(ctx, ranks[r].prov, wirePrepare, req)
			if err == nil {
				err = json.Unmarshal(resp, &ranks[r].rep)
			}
			errs[r] = err
		}(r)
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			for q := range ranks {
				if errs[q] == nil {
					m.cancelOn(ctx, ranks[q].prov, ranks[q].rep.Job.ID)
				}
			}
			return nil, fmt.Errorf("rank %d on provider %s did not prepare: %w", r, ranks[r].deal.Provider, err)
		}
	}
	paths := map[string]string{}
	for r := range ranks {
		for q, path := range ranks[r].rep.Paths {
			paths[fmt.Sprintf("%d-%d", r, q)] = path
			if path != "direct" && overlayNet && spec.Distributed.Relay == "deny" {
				for k := range ranks {
					m.cancelOn(ctx, ranks[k].prov, ranks[k].rep.Job.ID)
				}
				return nil, fmt.Errorf("rank %d's provider reaches rank %d's only through a relay, and distributed.relay is deny: allow it, or try again for other providers", r, q)
			}
		}
	}
	workers := make([]string, nodes)
	remoteIDs := make([]string, nodes)
	masterHost, masterPort := ranks[0].rep.Host, ranks[0].rep.Port
	if overlayNet {
		masterHost, masterPort = overlay.RankAddr(0).String(), spec.Distributed.MasterPort
		if masterPort == 0 {
			masterPort = defaultMasterPort
		}
	}
	for r := range ranks {
		workers[r] = net.JoinHostPort(ranks[r].rep.Host, strconv.Itoa(ranks[r].rep.Port))
		if overlayNet {
			workers[r] = net.JoinHostPort(overlay.RankAddr(r).String(), strconv.Itoa(masterPort))
		}
		if got := ranks[r].rep.Job.ID; got != ids[r] {
			if err := checkJobID(got); err != nil {
				return nil, fmt.Errorf("rank %d on provider %s: %w", r, ranks[r].deal.Provider, err)
			}
			remoteIDs[r] = got // a provider that chose its own
		}
	}
	group := ids
	fw := ""
	if spec.Distributed != nil {
		fw = spec.Distributed.Framework
	}
	for r := range ranks {
		ranks[r].rep.Job.Provider = ranks[r].deal.Provider
		ranks[r].rep.Job.ID = ids[r]
		rj := &Record{ID: ids[r], Remote: remoteIDs[r], Provider: ranks[r].deal.Provider, Deal: ranks[r].deal,
			Vouched: "0", Spec: *spec, Group: group, Rank: r}
		rj.see(&ranks[r].rep.Job, time.Now())
		m.remote.mu.Lock()
		if old := m.remote.jobs[rj.ID]; old != nil {
			rj.Rated = old.Rated
		}
		m.remote.jobs[rj.ID] = rj // rank 0 replaces the queued record
		m.remote.mu.Unlock()
		if err := m.saveRemote(rj); err != nil {
			m.log.Error("record of a started rank not saved", "job_id", rj.ID, "err", err)
		}
	}
	// Go: every rank gets the contract.
	for r := range ranks {
		rv := jobs.Rendezvous{Nodes: nodes, ProcsPerNode: spec.Distributed.ProcsPerNode, NodeRank: r,
			MasterAddr: masterHost, MasterPort: masterPort, Workers: workers, Framework: fw}
		rid := ids[r]
		if remoteIDs[r] != "" {
			rid = remoteIDs[r]
		}
		req, _ := json.Marshal(goRequest{ID: rid, Env: rv.Env()})
		if _, err := m.request(ctx, ranks[r].prov, wireGo, req); err != nil {
			m.failGroup(ctx, group, fmt.Sprintf("rank %d on provider %s did not start: %v", r, ranks[r].deal.Provider, err))
			return nil, fmt.Errorf("rank %d on provider %s did not start: %w", r, ranks[r].deal.Provider, err)
		}
	}
	took := time.Since(gangStart)
	m.log.Info("distributed job started", "ranks", nodes, "master", workers[0], "job_ids", group, "paths", paths, "gang_start", took)
	m.remote.mu.Lock()
	if rj := m.remote.jobs[ids[0]]; rj != nil {
		rj.GangStartMs = took.Milliseconds()
	}
	m.remote.mu.Unlock()
	j := ranks[0].rep.Job
	j.GangStartMs = took.Milliseconds()
	return &j, nil
}

// cancelOn asks a provider to stop one job; with a reason it fails it.
func (m *Manager) cancelOn(ctx context.Context, prov peer.ID, id string, reason ...string) {
	req, _ := json.Marshal(jobIDRequest{ID: id, Reason: strings.Join(reason, "")})
	m.request(ctx, prov, wireCancel, req)
}

// failGroup stops every rank of a distributed job still running.
func (m *Manager) failGroup(ctx context.Context, group []string, reason string) {
	for _, id := range group {
		m.remote.mu.Lock()
		rj := m.remote.jobs[id]
		m.remote.mu.Unlock()
		if rj == nil || (rj.Last != nil && rj.Last.State.Terminal()) {
			continue
		}
		prov, _ := peer.Decode(rj.Provider)
		m.cancelOn(ctx, prov, rj.remoteID(), "another rank failed: "+reason)
		m.log.Warn("stopping a rank: another failed", "job_id", id, "reason", reason)
	}
}
