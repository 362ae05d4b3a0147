package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/p2p/overlay"
	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"
	manet "github.com/multiformats/go-multiaddr/net"
)

// checkGang checks the deals a prepare names for the job's network: one
// per rank, this rank's the deal being started, all of them signed by
// both sides, with the same requester and spec. It returns the members:
// each rank's provider.
func (pv *Provider) checkGang(deal *market.Deal, pr prepareRequest) ([]peer.ID, error) {
	members, err := pv.checkMembers(deal, pr.Spec.Distributed, pr.Group, pr.NodeRank, pr.Deals)
	if err != nil {
		return nil, fmt.Errorf("prepare request: %w", err)
	}
	return members, nil
}

// gangFunded checks, on chain, that the requester funded every other
// rank's deal: the channel to that rank's provider wallet holds its
// maximum cost. Signatures alone cost nothing: a requester could invent
// members with throwaway keys, and each member is a peer this provider's
// job network opens a queue to. A member now costs its deal's deposit,
// locked for the challenge period, as a real rank does.
func (pv *Provider) gangFunded(ctx context.Context, own *market.Deal, deals []market.Deal) error {
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
		ch, err := pv.chain.ConfirmedChannel(ctx, common.HexToAddress(d.RequesterWallet), w, dealToken(d))
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
func (pv *Provider) verifyDeal(d market.Deal) error {
	if pv.verifyDealFn != nil {
		return pv.verifyDealFn(d)
	}
	if pv.market == nil {
		return errors.New("no market here to check deals with")
	}
	return pv.market.VerifyDeal(d)
}

func (pv *Provider) hostNetworkFor(p peer.ID) bool {
	for _, s := range pv.cfg.HostNetworkFor {
		if s == p.String() {
			return true
		}
	}
	return false
}

// hostAddr is the address other ranks reach this node at: its first
// public IPv4 listen address, else a private one, else loopback (a testnet
// on one machine).
func (pv *Provider) hostAddr() string {
	best, rank := "127.0.0.1", 0
	for _, a := range pv.p2p.Host.Addrs() {
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
func (pv *Provider) freePort() (int, error) {
	lo, hi := 29500, 29999
	if r := pv.cfg.Ports; r != "" {
		a, b, ok := strings.Cut(r, "-")
		x, err1 := strconv.Atoi(a)
		y, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || x < 1 || y > 65535 || x > y {
			return 0, fmt.Errorf("market.ports %q: want LOW-HIGH", r)
		}
		lo, hi = x, y
	}
	pv.mu.Lock()
	defer pv.mu.Unlock()
	for p := lo; p <= hi; p++ {
		if pv.ports[p] {
			continue
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		pv.ports[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d for a distributed rank", lo, hi)
}

// handleJobPrepare is the provider's first phase of a gang start: the same
// checks as a single job, then the job prepares and waits.
func (pv *Provider) handleJobPrepare(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	var pr prepareRequest
	if err := json.Unmarshal(req, &pr); err != nil {
		return nil, fmt.Errorf("prepare request: %w", err)
	}
	if pr.Spec.Distributed == nil {
		return nil, errors.New("prepare request: the spec is not distributed")
	}
	if pr.Spec.Distributed.HostNetwork() && !pv.hostNetworkFor(from) {
		return nil, errors.New("distributed.network: host: this provider gives its network only to the requesters in its market.host_network_for; leave distributed.network out to run on the job's private network")
	}
	deal, err := pv.checkStart(ctx, from, pr.startRequest)
	if err != nil {
		return nil, err
	}
	defer pv.doneStarting(deal.ID)
	if !pr.Spec.Distributed.HostNetwork() {
		return pv.prepareOnJobNet(ctx, deal, pr)
	}
	port, err := pv.freePort()
	if err != nil {
		return nil, err
	}
	// The port is the job's once it runs (watchProvided frees it when the
	// job ends); a prepare that fails before gives it back here.
	owned := false
	defer func() {
		if !owned {
			pv.mu.Lock()
			delete(pv.ports, port)
			pv.mu.Unlock()
		}
	}()
	j, err := pv.submitProvided(deal, pr.Spec, jobs.SubmitOptions{Gate: true, HostNetwork: true, ID: pr.JobID})
	if err != nil {
		return nil, err
	}
	pv.mu.Lock()
	pv.portOf[j.ID] = port
	pv.mu.Unlock()
	owned = true
	if err := pv.startedProvided(j, *deal); err != nil {
		// The job failed and its watch never started: the port goes back.
		pv.mu.Lock()
		delete(pv.portOf, j.ID)
		pv.mu.Unlock()
		owned = false
		return nil, err
	}
	pv.failUnstarted(j.ID)
	return json.Marshal(prepareReply{Job: api.Job{Job: *j}, Host: pv.hostAddr(), Port: port})
}

// failUnstarted fails a rank still waiting at the end of the gang start
// window: a gang that never starts does not hold the GPUs.
func (pv *Provider) failUnstarted(id string) {
	pv.spawn(func(ctx context.Context) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(gangStartWindow):
		}
		if pv.jobs.Prepared(id) {
			pv.jobs.Fail(id, "the other ranks did not start within the gang start window")
		}
	})
}

// prepareOnJobNet prepares a rank on its job's private network: the deals
// checked, the job submitted to join the network once prepared, and every
// other rank's provider reached (the path to each is in the reply, so the
// requester can refuse relayed paths before any rank starts).
func (pv *Provider) prepareOnJobNet(ctx context.Context, deal *market.Deal, pr prepareRequest) ([]byte, error) {
	if pv.jobNet == nil {
		return nil, errors.New("this provider has no job network (no libp2p host)")
	}
	members, err := pv.checkGang(deal, pr)
	if err != nil {
		return nil, err
	}
	if err := pv.gangFunded(ctx, deal, pr.Deals); err != nil {
		return nil, err
	}
	id, rank := generationNet(deal.Requester, pr.Group, pr.Generation), pr.NodeRank
	pv.serveRelay(ctx, id, members, relayProof{Group: pr.Group, Generation: pr.Generation, Deals: pr.Deals})
	join := func(ctx context.Context, nsPath string) (io.Closer, error) {
		return pv.jobNet.Join(id, members, rank, nsPath)
	}
	// The collective libraries pick their interface by the hostname's
	// address, which in the rank's namespace is loopback: name the job
	// network's device instead.
	ifEnv := []string{"GLOO_SOCKET_IFNAME=" + overlay.IfName, "NCCL_SOCKET_IFNAME=" + overlay.IfName, "TP_SOCKET_IFNAME=" + overlay.IfName}
	opts := jobs.SubmitOptions{Gate: true, JoinNetwork: join, Env: ifEnv, ID: pr.JobID}
	if pr.Spec.Distributed.Elastic() {
		opts.Elastic, opts.Checkpoint = elasticHold, pr.Checkpoint
	} else if pr.Checkpoint != "" {
		return nil, errors.New("prepare request: a checkpoint for a rank of a job that is not elastic")
	}
	j, err := pv.submitProvided(deal, pr.Spec, opts)
	if err != nil {
		return nil, err
	}
	if err := pv.startedProvided(j, *deal); err != nil {
		return nil, err
	}
	pv.mu.Lock()
	pv.netOf[j.ID] = netRank{id, rank}
	pv.mu.Unlock()
	pv.saveNet(j.ID, members, netRecord{Net: id, Rank: rank, Group: pr.Group, Generation: pr.Generation, Deals: pr.Deals})
	pv.failUnstarted(j.ID)
	paths, err := pv.jobNet.Reach(ctx, members, pv.reach, reachWait)
	if err != nil {
		pv.jobs.Fail(j.ID, "the job network: "+err.Error())
		return nil, fmt.Errorf("the job network: %w", err)
	}
	rep := prepareReply{Job: api.Job{Job: *j}, Paths: map[int]string{}}
	for r, p := range members {
		if path, ok := paths[p]; ok {
			rep.Paths[r] = path
		}
	}
	pv.log.Info("rank prepared on its job network", "job_id", j.ID, "rank", rank, "net", id, "paths", rep.Paths)
	return json.Marshal(rep)
}

func (pv *Provider) handleJobGo(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	var g goRequest
	if err := json.Unmarshal(req, &g); err != nil {
		return nil, err
	}
	r, _ := json.Marshal(jobIDRequest{ID: g.ID})
	j, _, err := pv.providedJob(from, r)
	if err != nil {
		return nil, err
	}
	if g.Checkpoint != "" && !j.Spec.Distributed.Elastic() {
		return nil, fmt.Errorf("go request: a checkpoint for job %s, which is no elastic rank", g.ID)
	}
	if !pv.jobs.Gated(g.ID) {
		// Only a gang's rank waits for go; answering anything else at once
		// keeps a request from holding a goroutine for the start window.
		return nil, fmt.Errorf("job %s is not a rank waiting for its gang to start", g.ID)
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !pv.jobs.Prepared(g.ID) { // still fetching the image or inputs
		if j, err := pv.jobs.Get(g.ID); err != nil || j.State.Terminal() {
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
		pv.jobs.Fail(g.ID, "distributed start refused: "+err.Error())
		return nil, err
	}
	if err := pv.jobs.Go(g.ID, g.Env, g.Checkpoint); err != nil {
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
