package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/gpu/challenge"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/market/proof"
	"github.com/aixblock/aixblock/market/receipt"
	"github.com/aixblock/aixblock/node/api"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ProofRecordsFile is where the daemon keeps proof-of-GPU records, in the
// repo: those it made as a verifier, those verifiers sent about it, and
// those other providers' adverts carried.
const ProofRecordsFile = "proof-records.json"

// maxCPUChallengeN bounds what a free challenge costs the CPU workload:
// the mock classes' n is 512, and an n of 1024 is under a second of one
// core, at most 12 times an hour (proof.Limits).
const maxCPUChallengeN = 1024

// maxChallengeGPUs bounds the GPUs one challenge of a provider names.
const maxChallengeGPUs = 8

// openProof opens both sides of proof of GPU: the provider, which answers
// challenges by running the challenge image as a job on the GPUs named,
// and the verifier with its schedule, signing with the node's key; both
// keep their records in one store. It comes before the market, whose
// adverts carry the records and whose bids are ranked by them.
func (n *Node) openProof(log *slog.Logger) error {
	network := n.p2p.Network()
	store, err := proof.OpenStore(proof.StoreConfig{Path: filepath.Join(n.repo.Dir, ProofRecordsFile),
		Network: network, Self: n.p2p.Host.ID(), Log: log})
	if err != nil {
		return fmt.Errorf("proof store: %w", err)
	}
	n.proofStore = store
	if n.proofVerifier, err = proof.NewVerifier(n.p2p.Host, network, proof.VerifierConfig{
		Key: n.repo.Identity, Store: store, Log: log}); err != nil {
		return fmt.Errorf("proof verifier: %w", err)
	}
	image := n.challengeImage()
	maxN := 0
	if image == challenge.CPUImage {
		maxN = maxCPUChallengeN
	}
	if n.proofProvider, err = proof.NewProvider(n.p2p.Host, network, proof.ProviderConfig{
		Workload: proof.Jobs{Job: n.runChallengeJob, MaxN: maxN}, Store: store, Log: log}); err != nil {
		return fmt.Errorf("proof provider: %w", err)
	}
	if auto := n.repo.Config.Market.AutoVerify; auto == nil || *auto {
		n.proofSched = proof.NewScheduler(proof.SchedulerConfig{Verifier: n.proofVerifier, Store: store,
			Self: n.p2p.Host.ID(), Log: log})
	}
	return nil
}

// closeProof stops serving and making challenges.
func (n *Node) closeProof() error {
	if n.proofSched != nil {
		n.proofSched.Close()
	}
	if n.proofProvider == nil {
		return nil
	}
	if err := n.proofProvider.Close(); err != nil {
		return fmt.Errorf("close proof provider: %w", err)
	}
	return nil
}

// runChallengeJob is the provider's challenge workload: the challenge
// image as an ordinary job on exactly the GPUs named. The GPUs are lent
// from the market, not held: a bid that comes for them meanwhile takes
// them and stops the challenge, which the verifier hears as busy.
func (n *Node) runChallengeJob(ctx context.Context, env map[string]string, gpus []string) (string, func(), error) {
	if n.jobs == nil || n.market == nil {
		return "", nil, fmt.Errorf("this node cannot run jobs: %v", n.jobsErr)
	}
	if slices.Equal(gpus, []string{proof.CPUOnly}) {
		gpus = nil // a CPU-only node's claim: the job gets no GPU
	}
	if err := n.haveGPUs(gpus); err != nil {
		return "", nil, err
	}
	pre := &preemption{n: n}
	release, err := n.market.Lend(gpus, pre.preempt)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", proof.ErrBusy, err)
	}
	defer release()
	j, err := n.jobs.Submit(jobs.Spec{Name: "proof-of-gpu", Image: n.challengeImage(), Env: env,
		Resources: jobs.Resources{GPUs: len(gpus)}}, jobs.SubmitOptions{GPUs: gpus, KeepOutputs: true})
	if err != nil {
		return "", nil, fmt.Errorf("challenge job: %w", err)
	}
	n.challenges.Store(j.ID, true)
	defer n.challenges.Delete(j.ID)
	pre.started(j.ID)
	end, err := n.awaitJob(ctx, j.ID)
	if err != nil {
		n.jobs.Cancel(j.ID)
		return "", nil, fmt.Errorf("challenge job %s: %w", j.ID, err)
	}
	if pre.happened() {
		return "", nil, fmt.Errorf("%w: a deal took the GPUs during the challenge", proof.ErrBusy)
	}
	if end.State != jobs.Completed {
		return "", nil, fmt.Errorf("challenge job %s %s: %s", j.ID, end.State, end.Reason)
	}
	dir, err := n.jobs.OutputsDir(j.ID)
	if err != nil {
		return "", nil, err
	}
	return dir, func() {
		if err := n.jobs.DropOutputs(j.ID); err != nil {
			n.log.Warn("drop a challenge's outputs", "job_id", j.ID, "err", err)
		}
	}, nil
}

// preemption stops a challenge's job when a bid takes its GPUs, whether
// that comes before the job is submitted or while it runs.
type preemption struct {
	n     *Node
	mu    sync.Mutex
	job   string
	fired bool
}

func (p *preemption) preempt() {
	p.mu.Lock()
	p.fired = true
	job := p.job
	p.mu.Unlock()
	if job != "" {
		p.n.jobs.Cancel(job)
	}
}

func (p *preemption) started(job string) {
	p.mu.Lock()
	p.job = job
	fired := p.fired
	p.mu.Unlock()
	if fired {
		p.n.jobs.Cancel(job)
	}
}

func (p *preemption) happened() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fired
}

// challengeImage is the image challenges run in here.
func (n *Node) challengeImage() string {
	if img := n.repo.Config.Market.ProofImage; img != "" {
		return img
	}
	return challenge.CPUImage
}

// haveGPUs checks that every GPU a challenge names is one of this node's.
func (n *Node) haveGPUs(uuids []string) error {
	inv := n.gpus.Inventory()
	for _, u := range uuids {
		if !slices.ContainsFunc(inv.GPUs, func(g gpu.GPU) bool { return g.UUID == u }) {
			return fmt.Errorf("no GPU %s here", u)
		}
	}
	return nil
}

// awaitJob waits for job id to end.
func (n *Node) awaitJob(ctx context.Context, id string) (*jobs.Job, error) {
	j, err := n.jobs.Get(id)
	for err == nil && !j.State.Terminal() {
		j, err = n.jobs.AwaitChange(ctx, id, j.State)
	}
	return j, err
}

// proofHook is the market's view of proof of GPU (market.ProofHook).
type proofHook struct{ n *Node }

// Carried are this provider's newest passing records, for its advert.
func (h proofHook) Carried() [][]byte {
	st := h.n.proofStore
	self := h.n.p2p.Host.ID()
	recs, raws := st.Records(self), st.Signed(self)
	var out [][]byte
	for i := 0; i < len(recs) && i < len(raws) && len(out) < market.MaxCarriedProofs; i++ {
		if recs[i].Passed() {
			out = append(out, raws[i])
		}
	}
	return out
}

// passedProofs are the IDs of the newest records of challenges this
// node passed, each once, at most receipt.MaxProofs: what its receipts
// as provider name.
func (n *Node) passedProofs() []string {
	var out []string
	for _, r := range n.proofStore.Records(n.p2p.Host.ID()) {
		if len(out) == receipt.MaxProofs {
			break
		}
		if id := r.ID(); r.Passed() && id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// Seen keeps the records an advert carries (about its own provider
// only; a forged one is refused by the store) and schedules the
// provider's challenge.
func (h proofHook) Seen(a *market.ProviderAdvert) {
	now := time.Now()
	for _, raw := range a.Proofs {
		rec, err := proof.DecodeRecord(raw)
		if err == nil && rec.Provider != a.PeerID {
			err = fmt.Errorf("a record about %s", rec.Provider)
		}
		if err == nil {
			_, err = h.n.proofStore.Add(raw, now)
		}
		if err != nil {
			h.n.log.Debug("proof record refused", "carried_by", a.PeerID, "err", err)
		}
	}
	if h.n.proofSched == nil {
		return
	}
	if pid, c, ok := claimOf(a, "", 1); ok {
		h.n.proofSched.Want(pid, c)
	}
}

// claimOf is what to challenge a provider on from its advert: up to
// gpus free GPUs of class (empty: its first group a challenge can
// check), drawn at random, so that repeats cover its cards over time and
// a bid seldom has to take back the ones lent to the challenge.
func claimOf(a *market.ProviderAdvert, class string, gpus int) (peer.ID, proof.Claim, bool) {
	pid, err := peer.Decode(a.PeerID)
	if err != nil {
		return "", proof.Claim{}, false
	}
	for _, g := range a.GPUs {
		if class != "" && g.Class != class || len(g.UUIDs) == 0 {
			continue
		}
		if _, err := challenge.Lookup(g.Class); err != nil {
			continue
		}
		uuids := slices.Clone(g.UUIDs)
		rand.Shuffle(len(uuids), func(i, j int) { uuids[i], uuids[j] = uuids[j], uuids[i] })
		return pid, proof.Claim{Class: g.Class, GPUs: uuids[:min(len(uuids), gpus)]}, true
	}
	return "", proof.Claim{}, false
}

// Standing weighs the records held about provider: this node's own
// first, then those of the peers it has dealt with; a pass counts for a
// class only if it was for that class.
func (h proofHook) Standing(provider, class string) market.ProofStanding {
	pid, err := peer.Decode(provider)
	if err != nil {
		return market.ProofStanding{State: market.ProofUnverified, Text: proof.Unverified}
	}
	st := h.n.proofStore.Status(pid, h.n.proofTrust(), time.Now())
	if st.State == proof.Verified && class != "" && !slices.Contains(st.Classes, class) {
		return market.ProofStanding{State: market.ProofUnverified,
			Text: fmt.Sprintf("unverified as %s (verified as %v)", class, st.Classes)}
	}
	return market.ProofStanding{State: st.State, Text: st.String()}
}

// Vet challenges the providers of adverts on class now, all at once.
func (h proofHook) Vet(ctx context.Context, adverts []*market.ProviderAdvert, class string) {
	var wg sync.WaitGroup
	for _, a := range adverts {
		pid, c, ok := claimOf(a, class, 1)
		if !ok {
			continue
		}
		wg.Go(func() {
			if h.n.proofSched != nil {
				h.n.proofSched.Check(ctx, pid, c)
				return
			}
			if _, err := h.n.proofVerifier.Verify(ctx, pid, c); err != nil {
				h.n.log.Info("provider not verified", "peer_id", pid, "err", err)
			}
		})
	}
	wg.Wait()
}

// proofTrust weighs signers: this node, then the providers it has dealt
// with (they verify others too), and no one else.
func (n *Node) proofTrust() func(peer.ID) int {
	return proof.Trust(n.p2p.Host.ID(), n.dealtAsRequester)
}

// handleVerify is POST /v1/market/verify: challenge a peer on its claim.
// A verdict, pass or fail, is 200 with the signed record; what is no
// verdict (a claim that cannot be checked, an unreachable or busy peer)
// is an error status with the reason.
func (n *Node) handleVerify(w http.ResponseWriter, r *http.Request) {
	var req api.VerifyRequest
	if !readJSON(w, r, &req) {
		return
	}
	pid, claim, err := n.verifyClaim(r.Context(), req)
	if err != nil {
		writeJSON(w, verifyErrorStatus(err), apiError(err.Error()))
		return
	}
	rec, err := n.proofVerifier.Verify(r.Context(), pid, claim)
	if err != nil && rec.Verifier == "" { // no record: no verdict
		writeJSON(w, verifyErrorStatus(err), apiError(err.Error()))
		return
	}
	res := api.VerifyResult{Record: rec, ID: rec.ID(), Passed: rec.Passed()}
	if err != nil {
		res.Error = err.Error()
	}
	writeJSON(w, http.StatusOK, res)
}

// verifyClaim reads a verify request: the GPUs challenged are the free
// ones of the class in the peer's advert ("cpu" for mock-cpu, which a
// node without GPUs answers on its CPU).
func (n *Node) verifyClaim(ctx context.Context, req api.VerifyRequest) (peer.ID, proof.Claim, error) {
	pid, err := peer.Decode(req.Peer)
	if err != nil {
		return "", proof.Claim{}, fmt.Errorf("%w: peer: %q is not a peer ID: %v", proof.ErrClaim, req.Peer, err)
	}
	if req.Class == "" {
		return "", proof.Claim{}, fmt.Errorf("%w: class: required (e.g. mock-cpu, mock-h100-80gb)", proof.ErrClaim)
	}
	if req.GPUs < 0 || req.N < 0 {
		return "", proof.Claim{}, fmt.Errorf("%w: gpus %d, n %d: must not be negative", proof.ErrClaim, req.GPUs, req.N)
	}
	if _, err := challenge.Lookup(req.Class); err != nil {
		return "", proof.Claim{}, fmt.Errorf("%w: %v", proof.ErrClaim, err)
	}
	c := proof.Claim{Class: req.Class, N: req.N, GPUs: []string{proof.CPUOnly}}
	if req.Class == challenge.MockCPU {
		return pid, c, nil
	}
	a, err := n.market.LookupAdvert(ctx, pid)
	if err != nil {
		return "", proof.Claim{}, fmt.Errorf("%w: %s: no advert found (%v): only a provider's advertised GPUs can be challenged", proof.ErrUnreachable, pid, err)
	}
	_, c, ok := claimOf(a, req.Class, min(max(req.GPUs, 1), maxChallengeGPUs))
	if !ok {
		var have []string
		for _, g := range a.GPUs {
			have = append(have, fmt.Sprintf("%s (%d free)", g.Class, g.Free))
		}
		return "", proof.Claim{}, fmt.Errorf("%w: %s advertises no free %s GPUs (it has: %s)", proof.ErrClaim, pid, req.Class, strings.Join(have, ", "))
	}
	c.N = req.N
	return pid, c, nil
}

// verifyErrorStatus maps an error that is no verdict to its status: the
// caller's claim is a bad request, a refusal for later is 429, anything
// else (unreachable, the request ending) is the peer's side: 502.
func verifyErrorStatus(err error) int {
	switch {
	case errors.Is(err, proof.ErrClaim):
		return http.StatusBadRequest
	case errors.Is(err, proof.ErrRateLimited), errors.Is(err, proof.ErrBusy):
		return http.StatusTooManyRequests
	}
	return http.StatusBadGateway
}
