package node

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/p2p"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Jobs through the market: the requester's daemon records the job as
// queued and answers at once; in the background it agrees a deal (asking
// again while no provider bids, up to timeouts.queue, with each asked
// provider's reason in the job's), funds the channel, starts the job on
// the provider over a direct stream under the requester's job ID, follows
// it there, and signs cumulative vouchers for the GPU time as it runs; the
// provider checks the deal and the deposit before preparing, keeps the
// vouchers, and stops a job whose vouchers stop coming. The requester
// counts each deal's outcome in its reputation record of the provider.

const (
	protoJobStart   = "jobs/start/1"
	protoJobStatus  = "jobs/status/1"
	protoJobLogs    = "jobs/logs/1"
	protoJobVoucher = "jobs/voucher/1"
	protoJobCancel  = "jobs/cancel/1"
	maxLogChunk     = 256 << 10
)

// remoteJob is the requester's record of a job running elsewhere.
type remoteJob struct {
	ID string `json:"id"` // the job's ID here, and on the provider unless Remote says otherwise
	// Remote is the provider's ID for the job when it differs from ID (a
	// provider that does not take the requester's).
	Remote   string      `json:"remote_id,omitempty"`
	Provider string      `json:"provider"`
	Deal     market.Deal `json:"deal"`
	Last     *jobs.Job   `json:"last"` // the provider's record, as last seen
	// Vouched is this job's share of the channel's cumulative voucher.
	Vouched string `json:"vouched"`
	// Settled: the job ended and a voucher for its whole cost reached the
	// provider.
	Settled bool `json:"settled"`
	// LastSeen is when the provider last answered about the job; a running
	// job is paid up to it, never beyond.
	LastSeen time.Time `json:"last_seen"`
	// Unreachable: the provider vanished and the job was failed here.
	Unreachable bool `json:"unreachable,omitempty"`
	// RetriedAs is the job that replaced this one on another provider.
	RetriedAs string `json:"retried_as,omitempty"`
	// Spec is kept for a retry.
	Spec jobs.Spec `json:"spec"`
	// Group names every rank's job of a distributed job, by rank; Rank is
	// this one's.
	Group []string `json:"group,omitempty"`
	Rank  int      `json:"rank,omitempty"`
	// GroupResult is rank 0's: the directory of every rank's result.
	GroupResult string `json:"group_result,omitempty"`
	// QueueUntil is when a queued job stops waiting for a provider.
	QueueUntil time.Time `json:"queue_until,omitempty"`
	// Rated: the deal's outcome is in the provider's reputation.
	Rated bool `json:"rated,omitempty"`
}

// remoteID is the job's ID on its provider.
func (rj *remoteJob) remoteID() string {
	if rj.Remote != "" {
		return rj.Remote
	}
	return rj.ID
}

// queued reports whether the job waits for a provider (no deal yet).
func (rj *remoteJob) queued() bool { return rj.Provider == "" }

type startRequest struct {
	DealID string    `json:"deal_id"`
	Spec   jobs.Spec `json:"spec"`
	// JobID is the requester's ID for the job, which the provider keeps
	// (16 hex digits); empty lets the provider choose.
	JobID string `json:"job_id,omitempty"`
}

type jobIDRequest struct {
	ID     string `json:"id"`
	Offset int64  `json:"offset,omitempty"`
	// Reason, on a cancel, fails the job with it instead (another rank of
	// a distributed job failed).
	Reason string `json:"reason,omitempty"`
}

type logChunk struct {
	Data  []byte `json:"data"`
	Done  bool   `json:"done"` // the job ended and this is the last chunk
	Bytes int64  `json:"next_offset"`
}

// remote holds both sides' state of market jobs.
type remote struct {
	mu       sync.Mutex
	jobs     map[string]*remoteJob // requester side, by job ID
	provided map[string]market.Deal
	lastPaid map[string]time.Time // provider side: job ID -> last voucher
	ports    map[int]bool         // provider side: ports given to distributed ranks
	portOf   map[string]int       // provider side: job ID -> its port
	interval time.Duration
	// Queued jobs wait under ctx (the daemon's; followRemote ends it),
	// each with its own cancel.
	ctx     context.Context
	stop    context.CancelFunc
	waiting map[string]context.CancelFunc
}

func (n *Node) remoteDir() string { return filepath.Join(n.repo.Dir, "remote") }

// openRemote loads the requester's records and registers the provider's
// protocols.
func (n *Node) openRemote() error {
	n.remote = &remote{jobs: map[string]*remoteJob{}, provided: map[string]market.Deal{}, lastPaid: map[string]time.Time{},
		ports: map[int]bool{}, portOf: map[string]int{}, interval: n.voucherInterval, waiting: map[string]context.CancelFunc{}}
	n.remote.ctx, n.remote.stop = context.WithCancel(context.Background())
	if err := os.MkdirAll(n.remoteDir(), 0o700); err != nil {
		return err
	}
	entries, _ := os.ReadDir(n.remoteDir())
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(n.remoteDir(), e.Name()))
		if err != nil {
			n.log.Error("remote job record unreadable; leaving it out", "file", e.Name(), "err", err)
			continue
		}
		var rj remoteJob
		if err := json.Unmarshal(b, &rj); err != nil || rj.ID == "" {
			n.log.Error("remote job record is corrupt; leaving it out", "file", e.Name(), "err", err)
			continue
		}
		n.remote.jobs[rj.ID] = &rj
	}
	h := n.p2p.Host
	lim := p2p.StreamLimits{MaxRequest: 128 << 10, MaxResponse: 1 << 20}
	p2p.Handle(h, n.p2p.ProtocolID(protoJobStart), lim, n.log, n.handleJobStart)
	p2p.Handle(h, n.p2p.ProtocolID(protoJobStatus), lim, n.log, n.handleJobStatus)
	p2p.Handle(h, n.p2p.ProtocolID(protoJobLogs), lim, n.log, n.handleJobLogs)
	p2p.Handle(h, n.p2p.ProtocolID(protoJobVoucher), p2p.StreamLimits{MaxRequest: chain.MaxVoucherBytes, MaxResponse: 64}, n.log, n.handleJobVoucher)
	p2p.Handle(h, n.p2p.ProtocolID(protoJobCancel), lim, n.log, n.handleJobCancel)
	n.openGang()
	return nil
}

// saveRemote writes a requester's record atomically.
func (n *Node) saveRemote(rj *remoteJob) error {
	if err := checkJobID(rj.ID); err != nil {
		return fmt.Errorf("save remote job: %w", err)
	}
	n.remote.mu.Lock()
	b, err := json.MarshalIndent(rj, "", "  ")
	n.remote.mu.Unlock()
	if err != nil {
		return fmt.Errorf("save remote job %s: %w", rj.ID, err)
	}
	tmp := filepath.Join(n.remoteDir(), rj.ID+".json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("save remote job %s: %w", rj.ID, err)
	}
	if err := os.Rename(tmp, filepath.Join(n.remoteDir(), rj.ID+".json")); err != nil {
		return fmt.Errorf("save remote job %s: %w", rj.ID, err)
	}
	return nil
}

// dealCost is what a deal costs for d of run time: price per GPU-hour ×
// GPUs × hours, rounded up to a base unit.
func dealCost(deal market.Deal, d time.Duration) *big.Int {
	price, _ := new(big.Int).SetString(deal.Price, 10)
	gpus := int64(max(len(deal.GPUs), 1))
	c := new(big.Int).Mul(price, big.NewInt(gpus))
	c.Mul(c, big.NewInt(d.Milliseconds()))
	ms := big.NewInt(3600 * 1000)
	c.Add(c, new(big.Int).Sub(ms, big.NewInt(1)))
	return c.Div(c, ms)
}

func dealToken(d market.Deal) common.Address {
	if d.Token == "native" {
		return chain.NativeToken
	}
	return common.HexToAddress(d.Token)
}

// submitRemote runs a spec through the market. It returns the job queued,
// at once: the deal, the funding and the start follow in the background
// (runQueued), and the job's state and reason say how they go. What can
// be told now (no max_price, a bad token or price, an empty wallet) is
// refused now.
func (n *Node) submitRemote(ctx context.Context, spec *jobs.Spec) (*jobs.Job, error) {
	if spec.MaxPrice == "" {
		return nil, badRequest{errors.New("max_price: required for a job through the market (per GPU-hour, in whole units of the token)")}
	}
	if err := n.checkFunds(ctx, spec); err != nil {
		return nil, err
	}
	return n.queueRemote(spec, nil)
}

// checkFunds refuses a market job that could not be paid for at any
// price: the token and max price must parse, and the wallet or a channel
// already funded must hold something of the token.
func (n *Node) checkFunds(ctx context.Context, spec *jobs.Spec) error {
	tok, err := ParseToken("", n.chain.DefaultToken())
	if err != nil {
		return badRequest{fmt.Errorf("token: %w", err)}
	}
	_, dec, err := n.chain.TokenInfo(ctx, tok)
	if err != nil {
		return err
	}
	if _, err := chain.ParseUnits(spec.MaxPrice, dec); err != nil {
		return badRequest{fmt.Errorf("max_price: %w", err)}
	}
	bal, err := n.chain.Balance(ctx, tok)
	if err != nil {
		return err
	}
	if bal.Sign() > 0 {
		return nil
	}
	payees := map[common.Address]bool{}
	n.remote.mu.Lock()
	for _, rj := range n.remote.jobs {
		if !rj.queued() && dealToken(rj.Deal) == tok {
			payees[common.HexToAddress(rj.Deal.ProviderWallet)] = true
		}
	}
	n.remote.mu.Unlock()
	for p := range payees {
		if ch, err := n.chain.Channel(ctx, n.wallet.Address(), p, tok); err == nil && ch.Deposited.Big().Cmp(ch.Redeemed.Big()) > 0 {
			return nil // what is left in the channel may pay for it
		}
	}
	return badRequest{fmt.Errorf("insufficient funds: wallet %s holds no %s to pay a provider with; fund the wallet first", n.wallet.Address(), marketToken(tok))}
}

func newJobID() string {
	var b [8]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// queueRemote records a market job as queued, starts its wait for a
// provider, and returns it. exclude are providers not to use (a retry's
// failed one).
func (n *Node) queueRemote(spec *jobs.Spec, exclude []string) (*jobs.Job, error) {
	queue := queueTimeout(spec)
	now := time.Now().UTC()
	id := newJobID()
	reason := "waiting for a provider to bid"
	j := &jobs.Job{ID: id, Spec: *spec, State: jobs.Queued, Reason: reason, CreatedAt: now,
		History: []jobs.Transition{{State: jobs.Queued, Reason: reason, At: now}}}
	rj := &remoteJob{ID: id, Last: j, Vouched: "0", Spec: *spec, QueueUntil: now.Add(queue)}
	n.remote.mu.Lock()
	n.remote.jobs[id] = rj
	n.remote.mu.Unlock()
	if err := n.saveRemote(rj); err != nil {
		n.remote.mu.Lock()
		delete(n.remote.jobs, id)
		n.remote.mu.Unlock()
		return nil, err
	}
	n.log.Info("job queued for the market", "job_id", id, "queue", queue)
	n.startQueued(rj, exclude)
	v := *j
	return &v, nil
}

// queueTimeout is the spec's timeouts.queue, 1 min by default.
func queueTimeout(spec *jobs.Spec) time.Duration {
	if d, err := time.ParseDuration(spec.Timeouts.Queue); err == nil && d > 0 {
		return d
	}
	return time.Minute
}

// startQueued runs a queued job's wait in the background.
func (n *Node) startQueued(rj *remoteJob, exclude []string) {
	ctx, cancel := context.WithCancel(n.remote.ctx)
	n.remote.mu.Lock()
	n.remote.waiting[rj.ID] = cancel
	n.remote.mu.Unlock()
	go func() {
		defer func() {
			cancel()
			n.remote.mu.Lock()
			delete(n.remote.waiting, rj.ID)
			n.remote.mu.Unlock()
		}()
		n.runQueued(ctx, rj, exclude)
	}()
}

// runQueued waits for a deal, funds it and starts the job; on any failure
// the job fails with the reason.
func (n *Node) runQueued(ctx context.Context, rj *remoteJob, exclude []string) {
	spec := rj.Spec
	progress := func(reason string) { n.setQueued(rj, reason) }
	var err error
	if spec.Distributed != nil && spec.Distributed.Nodes > 1 {
		_, err = n.submitGang(ctx, &spec, rj.ID, progress)
	} else {
		err = n.startSingle(ctx, rj, exclude, progress)
	}
	if err == nil {
		return
	}
	if ctx.Err() != nil && n.remote.ctx.Err() != nil {
		return // the daemon is stopping: the record stays queued and resumes
	}
	n.remote.mu.Lock()
	canceled := rj.Last != nil && rj.Last.State == jobs.Canceled
	n.remote.mu.Unlock()
	if canceled {
		return
	}
	n.log.Warn("market job failed before it started", "job_id", rj.ID, "err", err)
	n.endQueued(rj, jobs.Failed, err.Error())
}

// startSingle is runQueued for a job on one provider.
func (n *Node) startSingle(ctx context.Context, rj *remoteJob, exclude []string, progress func(string)) error {
	spec := rj.Spec
	deals, err := n.dealsWithin(ctx, &spec, exclude, time.Until(rj.QueueUntil), 1, progress)
	if err != nil {
		return err
	}
	deal := deals[0]
	progress(fmt.Sprintf("deal %s with provider %s; funding the channel", short(deal.ID), short(deal.Provider)))
	if err := n.fundChannel(ctx, *deal); err != nil {
		return err
	}
	prov, _ := peer.Decode(deal.Provider)
	req, _ := json.Marshal(startRequest{DealID: deal.ID, Spec: spec, JobID: rj.ID})
	resp, err := p2p.Request(ctx, n.p2p.Host, prov, n.p2p.ProtocolID(protoJobStart), req, p2p.StreamLimits{MaxRequest: 128 << 10, MaxResponse: 1 << 20, Timeout: 30 * time.Second})
	if err != nil {
		n.market.Reputation().NoShow(deal.Provider)
		return fmt.Errorf("provider %s did not start the job: %w", deal.Provider, err)
	}
	var j jobs.Job
	if err := json.Unmarshal(resp, &j); err != nil {
		return fmt.Errorf("provider %s: %w", deal.Provider, err)
	}
	remoteID := ""
	if j.ID != rj.ID {
		if err := checkJobID(j.ID); err != nil {
			return fmt.Errorf("provider %s: %w", deal.Provider, err)
		}
		remoteID = j.ID
	}
	j.ID, j.Provider = rj.ID, deal.Provider
	n.remote.mu.Lock()
	rj.Remote, rj.Provider, rj.Deal, rj.Last, rj.LastSeen, rj.QueueUntil = remoteID, deal.Provider, *deal, &j, time.Now(), time.Time{}
	n.remote.mu.Unlock()
	if err := n.saveRemote(rj); err != nil {
		n.log.Error("record of a started job not saved", "job_id", rj.ID, "err", err)
	}
	n.log.Info("job started on a provider", "job_id", rj.ID, "provider", deal.Provider, "deal_id", short(deal.ID))
	return nil
}

// setQueued updates a queued job's reason.
func (n *Node) setQueued(rj *remoteJob, reason string) {
	n.remote.mu.Lock()
	if rj.Last == nil || rj.Last.State != jobs.Queued || !rj.queued() {
		n.remote.mu.Unlock()
		return
	}
	j := *rj.Last
	j.Reason = reason
	rj.Last = &j
	n.remote.mu.Unlock()
	if err := n.saveRemote(rj); err != nil {
		n.log.Warn("queued job's reason not saved", "job_id", rj.ID, "err", err)
	}
}

// endQueued ends a job that never started.
func (n *Node) endQueued(rj *remoteJob, state jobs.State, reason string) {
	now := time.Now().UTC()
	n.remote.mu.Lock()
	// A gang's rank 0 replaces the queued record once it starts; the
	// record that ends here must still be the job's.
	if rj.Last == nil || rj.Last.State.Terminal() || n.remote.jobs[rj.ID] != rj {
		n.remote.mu.Unlock()
		return
	}
	j := *rj.Last
	j.State, j.Reason, j.FinishedAt = state, reason, &now
	j.History = append(append([]jobs.Transition(nil), j.History...), jobs.Transition{State: state, Reason: reason, At: now})
	rj.Last, rj.Settled = &j, true
	n.remote.mu.Unlock()
	if err := n.saveRemote(rj); err != nil {
		n.log.Error("record of a failed job not saved", "job_id", rj.ID, "err", err)
	}
}

// resumeQueued picks up the jobs that were queued when the daemon
// stopped: each waits out what is left of its queue timeout, and one whose
// timeout passed while the daemon was down fails with that reason.
func (n *Node) resumeQueued() {
	n.remote.mu.Lock()
	var todo []*remoteJob
	for _, rj := range n.remote.jobs {
		if rj.queued() && rj.Last != nil && rj.Last.State == jobs.Queued && n.remote.waiting[rj.ID] == nil {
			todo = append(todo, rj)
		}
	}
	n.remote.mu.Unlock()
	for _, rj := range todo {
		if time.Now().After(rj.QueueUntil) {
			n.endQueued(rj, jobs.Failed, "timeouts.queue ran out while the daemon was down; last: "+rj.Last.Reason)
			continue
		}
		n.log.Info("queued job resumed", "job_id", rj.ID, "until", rj.QueueUntil)
		n.startQueued(rj, nil)
	}
}

// checkJobID accepts what becomes a file name: a job ID is 16 hex digits.
func checkJobID(id string) error {
	if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		return fmt.Errorf("job ID %q: want 16 lowercase hex digits", id)
	}
	return nil
}

// dealsWithin negotiates up to count deals with different providers from
// one offer, asking again within the queue wait (negative: the spec's
// timeouts.queue) until at least one is made; progress hears why each
// round made none. The caller funds them.
func (n *Node) dealsWithin(ctx context.Context, spec *jobs.Spec, exclude []string, queue time.Duration, count int, progress func(string)) ([]*market.Deal, error) {
	if queue < 0 {
		queue = queueTimeout(spec)
	}
	deadline := time.Now().Add(queue)
	var res OfferResult
	var err error
	for attempt := 0; ; attempt++ {
		res, err = n.offer(ctx, OfferRequest{
			GPUs: spec.Resources.GPUs, GPUClass: spec.Resources.GPUClass, GPUMemoryMiB: spec.Resources.GPUMemoryMiB,
			CPU: int(spec.Resources.CPU), MemoryMiB: spec.Resources.MemoryMiB, DiskMiB: spec.Resources.DiskMiB,
			MaxPrice: spec.MaxPrice, Duration: spec.ExecutionTimeout().String(), Image: spec.Image, SpecHash: specHash(spec),
			exclude: exclude, count: count,
		})
		if err == nil || !errors.Is(err, market.ErrNoDeal) || time.Now().After(deadline) {
			break
		}
		if progress != nil {
			progress(fmt.Sprintf("waiting for a provider (%s of timeouts.queue left): %s", time.Until(deadline).Round(time.Second), noDealReason(err)))
		}
		pause := time.Duration(200+mrand.IntN(300)*(1+min(attempt, 4))) * time.Millisecond
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
	}
	if err != nil {
		if errors.Is(err, market.ErrNoDeal) {
			return nil, fmt.Errorf("no provider within timeouts.queue (%s): %s", queue, noDealReason(err))
		}
		return nil, err
	}
	return res.all, nil
}

// noDealReason is the market's no-deal error without its prefix.
func noDealReason(err error) string {
	return strings.TrimPrefix(err.Error(), market.ErrNoDeal.Error()+": ")
}

func specHash(s *jobs.Spec) string {
	b, _ := json.Marshal(s)
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// fundChannel makes sure the channel to the provider holds everything
// already vouched on it plus this deal's maximum cost: one deposit or
// top-up, reused by later jobs.
func (n *Node) fundChannel(ctx context.Context, deal market.Deal, pending ...market.Deal) error {
	payee, token := common.HexToAddress(deal.ProviderWallet), dealToken(deal)
	need := dealCost(deal, time.Duration(deal.MaxDurationS)*time.Second)
	// Deals of the same job funded just before this one, not yet running.
	for _, p := range pending {
		if common.HexToAddress(p.ProviderWallet) == payee && dealToken(p) == token {
			need.Add(need, dealCost(p, time.Duration(p.MaxDurationS)*time.Second))
		}
	}
	if v := n.vouchers.get(n.vouchers.data.Signed, chain.ChannelID(n.wallet.Address(), payee, token)); v != nil {
		need.Add(need, v.CumulativeAmount.Big())
	}
	need.Add(need, n.committedRunning(payee, token))
	ch, err := n.chain.Channel(ctx, n.wallet.Address(), payee, token)
	if err != nil {
		return err
	}
	short := new(big.Int).Sub(need, ch.Deposited.Big())
	if short.Sign() <= 0 {
		return nil
	}
	bal, err := n.chain.Balance(ctx, token)
	if err != nil {
		return err
	}
	if bal.Cmp(short) < 0 {
		return badRequest{fmt.Errorf("insufficient funds: the deal may cost up to %s base units, the channel needs %s more, wallet %s holds %s; fund the wallet, or lower max_price or timeouts.execution",
			dealCost(deal, time.Duration(deal.MaxDurationS)*time.Second), short, n.wallet.Address(), bal)}
	}
	if _, err := n.chain.Deposit(ctx, payee, token, short); err != nil {
		return fmt.Errorf("fund the channel: %w", err)
	}
	return nil
}

// committedRunning is the rest of the maximum cost of this node's running
// jobs on the channel (what they may still be vouched).
func (n *Node) committedRunning(payee, token common.Address) *big.Int {
	sum := new(big.Int)
	n.remote.mu.Lock()
	defer n.remote.mu.Unlock()
	for _, rj := range n.remote.jobs {
		if rj.Last != nil && rj.Last.State.Terminal() {
			continue
		}
		if common.HexToAddress(rj.Deal.ProviderWallet) != payee || dealToken(rj.Deal) != token {
			continue
		}
		sum.Add(sum, dealCost(rj.Deal, time.Duration(rj.Deal.MaxDurationS)*time.Second))
	}
	return sum
}

// handleJobStart is the provider's side: the deal must be ours and the
// requester's, and the channel must hold the deal's maximum cost.
func (n *Node) handleJobStart(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	var sr startRequest
	if err := json.Unmarshal(req, &sr); err != nil {
		return nil, fmt.Errorf("start request: %w", err)
	}
	deal, err := n.checkStart(ctx, from, sr)
	if err != nil {
		return nil, err
	}
	spec := sr.Spec
	spec.Resources.GPUs = len(deal.GPUs)
	j, err := n.jobs.Submit(spec, jobs.SubmitOptions{GPUs: deal.GPUs, ID: sr.JobID})
	if err != nil {
		n.market.Release(deal.ID)
		return nil, err
	}
	n.startedProvided(j, *deal)
	return json.Marshal(j)
}

// checkStart is the provider's check before a market job prepares: the
// deal must be ours and the requester's, the spec the deal's, and the
// channel must hold the deal's maximum cost beyond what is owed.
func (n *Node) checkStart(ctx context.Context, from peer.ID, sr startRequest) (*market.Deal, error) {
	if n.jobs == nil {
		return nil, fmt.Errorf("this provider cannot run jobs: %v", n.jobsErr)
	}
	var deal *market.Deal
	for _, d := range n.market.Deals() {
		if d.ID == sr.DealID {
			deal = &d
			break
		}
	}
	switch {
	case deal == nil:
		return nil, fmt.Errorf("no deal %s here", sr.DealID)
	case deal.Requester != from.String():
		return nil, fmt.Errorf("deal %s is not with %s", short(deal.ID), from)
	case specHash(&sr.Spec) != deal.SpecHash:
		return nil, errors.New("the spec is not the one the deal was made for")
	}
	if err := sr.Spec.Validate(); err != nil {
		return nil, err
	}
	ch, err := n.chain.Channel(ctx, common.HexToAddress(deal.RequesterWallet), n.wallet.Address(), dealToken(*deal))
	if err != nil {
		return nil, err
	}
	owed := ch.Redeemed.Big()
	if v := n.vouchers.get(n.vouchers.data.Received, ch.ID); v != nil && v.CumulativeAmount.Cmp(owed) > 0 {
		owed = v.CumulativeAmount.Big()
	}
	need := dealCost(*deal, time.Duration(deal.MaxDurationS)*time.Second)
	if free := new(big.Int).Sub(ch.Deposited.Big(), owed); free.Cmp(need) < 0 {
		return nil, fmt.Errorf("the channel holds %s base units beyond what is owed; the deal needs %s", free, need)
	}
	return deal, nil
}

// startedProvided records a job this node runs for a deal and watches it.
func (n *Node) startedProvided(j *jobs.Job, deal market.Deal) {
	n.market.Started(deal.ID)
	n.remote.mu.Lock()
	n.remote.provided[j.ID] = deal
	n.remote.lastPaid[j.ID] = time.Now()
	n.remote.mu.Unlock()
	go n.watchProvided(j.ID, deal)
}

// watchProvided stops a job whose vouchers stop (after three intervals),
// and frees the deal's GPUs when it ends.
func (n *Node) watchProvided(id string, deal market.Deal) {
	defer n.market.Release(deal.ID)
	defer func() { // a distributed rank's port is free again
		n.remote.mu.Lock()
		if p, ok := n.remote.portOf[id]; ok {
			delete(n.remote.ports, p)
			delete(n.remote.portOf, id)
		}
		n.remote.mu.Unlock()
	}()
	changes, unsub := n.gpus.Subscribe()
	defer unsub()
	ours := map[string]bool{}
	for _, u := range deal.GPUs {
		ours[u] = true
	}
	t := time.NewTicker(n.remote.interval)
	defer t.Stop()
	for {
		select {
		case c := <-changes:
			if ours[c.UUID] && c.To == gpu.Unhealthy {
				n.log.Warn("a job's GPU failed; stopping the job", "job_id", id, "uuid", c.UUID, "reason", c.Reason)
				n.jobs.Fail(id, fmt.Sprintf("GPU %s became unhealthy: %s", c.UUID, c.Reason))
			}
			continue
		case <-t.C:
		}
		j, err := n.jobs.Get(id)
		if err != nil || j.State.Terminal() {
			return
		}
		n.remote.mu.Lock()
		last := n.remote.lastPaid[id]
		n.remote.mu.Unlock()
		// Nothing is owed before the job runs (a gang's rank waits for
		// the others, an image loads): the vouchers are due from its start.
		if j.StartedAt != nil && last.Before(*j.StartedAt) {
			last = *j.StartedAt
		}
		if j.State == jobs.Running && time.Since(last) > 3*n.remote.interval {
			n.log.Warn("vouchers stopped; stopping the job", "job_id", id, "requester", deal.Requester)
			n.jobs.Fail(id, fmt.Sprintf("the requester's vouchers stopped (none for %s)", time.Since(last).Round(time.Second)))
			return
		}
	}
}

func (n *Node) handleJobCancel(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	_, r, err := n.providedJob(from, req)
	if err != nil {
		return nil, err
	}
	var j *jobs.Job
	if r.Reason != "" {
		j, err = n.jobs.Fail(r.ID, r.Reason)
	} else {
		j, err = n.jobs.Cancel(r.ID)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// cancelRemote asks the provider to stop a job.
func (n *Node) cancelRemote(ctx context.Context, id string) (*jobs.Job, error) {
	n.remote.mu.Lock()
	rj := n.remote.jobs[id]
	n.remote.mu.Unlock()
	if rj == nil {
		return nil, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	n.remote.mu.Lock()
	stopWait, queued := n.remote.waiting[id], rj.queued()
	var last jobs.State
	if rj.Last != nil {
		last = rj.Last.State
	}
	n.remote.mu.Unlock()
	if queued {
		if last.Terminal() {
			return nil, fmt.Errorf("%w: %s is %s", jobs.ErrFinished, id, last)
		}
		n.endQueued(rj, jobs.Canceled, "canceled while queued")
		if stopWait != nil {
			stopWait()
		}
		n.remote.mu.Lock()
		j := *rj.Last
		n.remote.mu.Unlock()
		return &j, nil
	}
	prov, _ := peer.Decode(rj.Provider)
	req, _ := json.Marshal(jobIDRequest{ID: rj.remoteID()})
	resp, err := p2p.Request(ctx, n.p2p.Host, prov, n.p2p.ProtocolID(protoJobCancel), req, p2p.StreamLimits{MaxRequest: 1024, MaxResponse: 1 << 20})
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", rj.Provider, err)
	}
	var j jobs.Job
	if err := json.Unmarshal(resp, &j); err != nil {
		return nil, fmt.Errorf("provider %s: %w", rj.Provider, err)
	}
	j.ID, j.Provider = rj.ID, rj.Provider
	return &j, nil
}

// providedJob reads a request about one of our jobs: only the requester of
// its deal may ask.
func (n *Node) providedJob(from peer.ID, req []byte) (*jobs.Job, jobIDRequest, error) {
	var r jobIDRequest
	if err := json.Unmarshal(req, &r); err != nil {
		return nil, r, err
	}
	n.remote.mu.Lock()
	deal, ok := n.remote.provided[r.ID]
	n.remote.mu.Unlock()
	if !ok || deal.Requester != from.String() {
		return nil, r, fmt.Errorf("no job %s of yours here", r.ID)
	}
	j, err := n.jobs.Get(r.ID)
	return j, r, err
}

func (n *Node) handleJobStatus(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	j, _, err := n.providedJob(from, req)
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

func (n *Node) handleJobLogs(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	j, r, err := n.providedJob(from, req)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(n.repo.Dir, "jobs", j.ID, "output.log"))
	if err != nil {
		return json.Marshal(logChunk{Done: j.State.Terminal(), Bytes: r.Offset})
	}
	defer f.Close()
	f.Seek(r.Offset, io.SeekStart)
	buf := make([]byte, maxLogChunk)
	k, _ := io.ReadFull(f, buf)
	return json.Marshal(logChunk{Data: buf[:k], Done: j.State.Terminal() && k < maxLogChunk, Bytes: r.Offset + int64(k)})
}

// handleJobVoucher keeps a voucher for one of our jobs.
func (n *Node) handleJobVoucher(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	v, err := chain.DecodeVoucher(req)
	if err != nil {
		return nil, err
	}
	if v.Payee != n.wallet.Address() || v.ChainID.Big().Cmp(n.chain.ChainID()) != 0 || v.Escrow != n.chain.Escrow() {
		return nil, errors.New("voucher is not for this wallet, chain and escrow")
	}
	if _, err := n.vouchers.keep(n.vouchers.data.Received, v); err != nil {
		return nil, err
	}
	n.remote.mu.Lock()
	for id, d := range n.remote.provided {
		if d.Requester == from.String() && common.HexToAddress(d.RequesterWallet) == v.Payer {
			n.remote.lastPaid[id] = time.Now()
		}
	}
	n.remote.mu.Unlock()
	return []byte("ok"), nil
}

// followRemote is the requester's loop: it refreshes its remote jobs'
// states and signs cumulative vouchers for their GPU time every interval,
// and a final one when a job ends.
func (n *Node) followRemote(ctx context.Context) {
	defer n.remote.stop() // queued jobs stop waiting with the daemon
	n.resumeQueued()
	t := time.NewTicker(n.remote.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n.remote.mu.Lock()
		var live []*remoteJob
		for _, rj := range n.remote.jobs {
			if !rj.Settled && !rj.queued() {
				live = append(live, rj)
			}
		}
		n.remote.mu.Unlock()
		channels := map[common.Hash]bool{}
		for _, rj := range live {
			if j, err := n.remoteStatus(ctx, rj); err == nil {
				n.remote.mu.Lock()
				rj.Last, rj.LastSeen = j, time.Now()
				n.remote.mu.Unlock()
				n.rate(rj)
				if err := n.saveRemote(rj); err != nil {
					n.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
				}
				if len(rj.Group) > 1 && j.State.Terminal() && j.State != jobs.Completed {
					// As torchrun does: one rank failing fails the job.
					n.failGroup(ctx, rj.Group, fmt.Sprintf("rank %d on provider %s %s: %s", rj.Rank, rj.Provider, j.State, j.Reason))
				}
			} else {
				n.providerMissing(ctx, rj, err)
			}
			channels[chain.ChannelID(n.wallet.Address(), common.HexToAddress(rj.Deal.ProviderWallet), dealToken(rj.Deal))] = true
		}
		for _, rj := range live {
			id := chain.ChannelID(n.wallet.Address(), common.HexToAddress(rj.Deal.ProviderWallet), dealToken(rj.Deal))
			if channels[id] {
				delete(channels, id)
				n.payChannel(ctx, rj)
			}
		}
	}
}

// rate counts a remote job's end in its provider's reputation, once: a
// completed job is a deal kept; a failure that is not the job's own (no
// exit code: the GPU, the container, the inputs on the provider's side)
// one failed. A job that exited non-zero, timed out, was canceled, or
// was stopped because another rank failed says nothing of the provider.
func (n *Node) rate(rj *remoteJob) {
	n.remote.mu.Lock()
	j := rj.Last
	if rj.Rated || j == nil || !j.State.Terminal() {
		n.remote.mu.Unlock()
		return
	}
	rj.Rated = true
	n.remote.mu.Unlock()
	switch {
	case j.State == jobs.Completed:
		n.market.Reputation().Completed(rj.Provider)
	case j.State == jobs.Failed && j.ExitCode == nil && !strings.HasPrefix(j.Reason, "another rank failed"):
		n.market.Reputation().Failed(rj.Provider)
	}
}

// providerMissing marks a job unknown when its provider stops answering,
// failed after the grace window (five voucher intervals, at least 10 s),
// and then retries it elsewhere if its spec says so.
func (n *Node) providerMissing(ctx context.Context, rj *remoteJob, err error) {
	grace := max(5*n.remote.interval, 10*time.Second)
	n.remote.mu.Lock()
	last := *rj.Last
	if last.State.Terminal() {
		n.remote.mu.Unlock()
		return
	}
	gone := time.Since(rj.LastSeen)
	if gone < grace {
		if last.State != jobs.Unknown {
			last.State, last.Reason = jobs.Unknown, fmt.Sprintf("provider %s not answering: %v", short(rj.Provider), err)
			rj.Last = &last
		}
		n.remote.mu.Unlock()
		if err := n.saveRemote(rj); err != nil {
			n.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
		}
		return
	}
	n.remote.mu.Unlock()
	// The job stays unknown while a retry is arranged, so that whoever
	// watches it sees failed and the retry together.
	reason := fmt.Sprintf("provider %s unreachable for %s", rj.Provider, gone.Round(time.Second))
	var retried string
	if rj.Spec.Retry.Attempts > 0 && len(rj.Group) <= 1 {
		spec := rj.Spec
		spec.Retry.Attempts--
		if j, err := n.queueRemote(&spec, []string{rj.Provider}); err != nil {
			reason += "; retry failed: " + err.Error()
		} else {
			retried = j.ID
			reason += "; retried as " + j.ID
		}
	}
	n.remote.mu.Lock()
	rated := rj.Rated
	rj.Rated = true
	n.remote.mu.Unlock()
	if !rated {
		n.market.Reputation().Failed(rj.Provider)
	}
	n.log.Warn("remote job failed: provider unreachable", "job_id", rj.ID, "provider", rj.Provider, "retried_as", retried)
	now := time.Now().UTC()
	n.remote.mu.Lock()
	last.State, last.Reason, last.FinishedAt = jobs.Failed, reason, &now
	rj.Last, rj.RetriedAs = &last, retried
	rj.Unreachable, rj.Settled = true, true // no more vouchers: paid up to the last sight
	n.remote.mu.Unlock()
	if err := n.saveRemote(rj); err != nil {
		n.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
	}
	if len(rj.Group) > 1 {
		n.failGroup(ctx, rj.Group, fmt.Sprintf("rank %d: %s", rj.Rank, reason))
	}
}

// jobCost is what a job has cost so far: its run time at the deal's price.
func jobCost(rj *remoteJob) *big.Int {
	j := rj.Last
	if j == nil || j.StartedAt == nil {
		return new(big.Int)
	}
	// A running job is paid up to when it was last seen running; one the
	// provider reported ended, up to its end; one whose provider vanished,
	// never beyond the last sight of it.
	end := rj.LastSeen
	if j.FinishedAt != nil && !rj.Unreachable {
		end = *j.FinishedAt
	}
	d := end.Sub(*j.StartedAt)
	if limit := time.Duration(rj.Deal.MaxDurationS) * time.Second; d > limit {
		d = limit
	}
	return dealCost(rj.Deal, d)
}

// payChannel signs and sends the channel's cumulative voucher: every job
// this node ran on it, at its cost so far.
func (n *Node) payChannel(ctx context.Context, rj *remoteJob) {
	payee, token := common.HexToAddress(rj.Deal.ProviderWallet), dealToken(rj.Deal)
	total := new(big.Int)
	var ended []*remoteJob
	n.remote.mu.Lock()
	for _, o := range n.remote.jobs {
		if common.HexToAddress(o.Deal.ProviderWallet) == payee && dealToken(o.Deal) == token {
			c := jobCost(o)
			o.Vouched = c.String()
			total.Add(total, c)
			if !o.Settled && o.Last != nil && o.Last.State.Terminal() {
				ended = append(ended, o)
			}
		}
	}
	n.remote.mu.Unlock()
	if prev := n.vouchers.get(n.vouchers.data.Signed, chain.ChannelID(n.wallet.Address(), payee, token)); prev != nil && prev.CumulativeAmount.Cmp(total) >= 0 {
		total = prev.CumulativeAmount.Big() // never less than before; resend it
	}
	if total.Sign() == 0 {
		n.remote.mu.Lock()
		for _, o := range ended {
			o.Settled = true // ran for no time: nothing owed
		}
		n.remote.mu.Unlock()
		return
	}
	v, err := n.chain.SignVoucher(payee, token, total)
	if err != nil {
		n.log.Warn("sign voucher", "err", err)
		return
	}
	n.vouchers.keep(n.vouchers.data.Signed, v)
	raw, _ := json.Marshal(v)
	prov, _ := peer.Decode(rj.Provider)
	if _, err := p2p.Request(ctx, n.p2p.Host, prov, n.p2p.ProtocolID(protoJobVoucher), raw, p2p.StreamLimits{MaxRequest: chain.MaxVoucherBytes, MaxResponse: 64}); err != nil {
		n.log.Warn("voucher not delivered", "provider", rj.Provider, "err", err)
		return
	}
	tok := token.Hex()
	if token == chain.NativeToken {
		tok = "native"
	}
	n.log.Info("paid: voucher sent", "job_id", rj.ID, "provider", rj.Provider, "channel_total", n.formatAmount(tok, total.String()), "jobs_settled", len(ended))
	n.remote.mu.Lock()
	for _, o := range ended {
		o.Settled = true
	}
	n.remote.mu.Unlock()
	for _, o := range ended {
		if err := n.saveRemote(o); err != nil {
			n.log.Warn("remote job record not saved", "job_id", o.ID, "err", err)
		}
	}
}

func (n *Node) remoteStatus(ctx context.Context, rj *remoteJob) (*jobs.Job, error) {
	prov, err := peer.Decode(rj.Provider)
	if err != nil {
		return nil, err
	}
	req, _ := json.Marshal(jobIDRequest{ID: rj.remoteID()})
	resp, err := p2p.Request(ctx, n.p2p.Host, prov, n.p2p.ProtocolID(protoJobStatus), req, p2p.StreamLimits{MaxRequest: 1024, MaxResponse: 1 << 20})
	if err != nil {
		return nil, err
	}
	var j jobs.Job
	if err := json.Unmarshal(resp, &j); err != nil {
		return nil, err
	}
	j.ID, j.Provider = rj.ID, rj.Provider
	return &j, nil
}

// remoteJobByID is the requester's view of a job on a provider, refreshed.
func (n *Node) remoteJobByID(ctx context.Context, id string) (*jobs.Job, error) {
	n.remote.mu.Lock()
	rj := n.remote.jobs[id]
	n.remote.mu.Unlock()
	if rj == nil {
		return nil, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	n.remote.mu.Lock()
	queued, settled := rj.queued(), rj.Settled
	n.remote.mu.Unlock()
	if queued {
		n.remote.mu.Lock()
		defer n.remote.mu.Unlock()
		j := *rj.Last
		return &j, nil
	}
	if !settled {
		if j, err := n.remoteStatus(ctx, rj); err == nil {
			n.remote.mu.Lock()
			rj.Last = j
			n.remote.mu.Unlock()
		}
	}
	return n.groupView(ctx, rj), nil
}

// groupView is how the requester shows a remote job. Rank 0 of a
// distributed job stands for the whole job, as torchrun's launcher does:
// it is not done until every rank is, a rank's failure is its failure,
// and its result is a directory holding every rank's result by rank
// ("rank-0", "rank-1", ...).
func (n *Node) groupView(ctx context.Context, rj *remoteJob) *jobs.Job {
	n.remote.mu.Lock()
	if rj.Last == nil || len(rj.Group) < 2 || rj.Rank != 0 {
		defer n.remote.mu.Unlock()
		return rj.Last
	}
	j := *rj.Last
	results := map[string]cid.Cid{}
	var waiting, noResult []string
	for r, id := range rj.Group {
		other := n.remote.jobs[id]
		switch {
		case other == nil || other.Last == nil || !other.Last.State.Terminal():
			waiting = append(waiting, strconv.Itoa(r))
		case other.Last.State != jobs.Completed:
			if j.State == jobs.Completed || !j.State.Terminal() {
				j.State = other.Last.State
				j.Reason = fmt.Sprintf("rank %d on provider %s %s: %s", r, other.Provider, other.Last.State, other.Last.Reason)
			}
		default:
			c, err := cid.Decode(other.Last.ResultCID)
			if err != nil {
				noResult = append(noResult, strconv.Itoa(r))
				continue
			}
			results[fmt.Sprintf("rank-%d", r)] = c
		}
	}
	cached := rj.GroupResult
	n.remote.mu.Unlock()
	if j.State != jobs.Completed {
		return &j
	}
	if len(waiting) > 0 {
		j.State, j.Reason, j.ResultCID = jobs.Running, "rank 0 done; waiting for ranks "+strings.Join(waiting, ", "), ""
		return &j
	}
	if len(noResult) > 0 {
		// A completed rank always reports its outputs' CID; one without is
		// a provider's fault, not a result to leave out quietly.
		j.State, j.ResultCID = jobs.Failed, ""
		j.Reason = "ranks " + strings.Join(noResult, ", ") + " completed without a result CID (a provider fault: run the job again)"
		return &j
	}
	if cached == "" {
		dir, err := n.content.Directory(ctx, results)
		if err != nil {
			j.State, j.Reason, j.ResultCID = jobs.Uploading, "making the result directory: "+err.Error(), ""
			return &j
		}
		cached = dir.String()
		n.remote.mu.Lock()
		rj.GroupResult = cached
		n.remote.mu.Unlock()
		if err := n.saveRemote(rj); err != nil {
			n.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
		}
	}
	j.ResultCID = cached
	return &j
}

// remoteLogs copies a remote job's output; follow keeps asking until it
// ends. For rank 0 of a distributed job it interleaves every rank's lines,
// each prefixed "[rank N] "; for another rank, that rank's, prefixed.
func (n *Node) remoteLogs(ctx context.Context, id string, follow bool, w io.Writer) error {
	if err := n.awaitStart(ctx, id, follow); err != nil || ctx.Err() != nil {
		return err
	}
	n.remote.mu.Lock()
	rj := n.remote.jobs[id]
	if rj != nil && rj.queued() {
		n.remote.mu.Unlock()
		return nil // it never ran: no output
	}
	type source struct {
		id, prefix string
		prov       peer.ID
		off        int64
		partial    []byte
		done       bool
	}
	var srcs []*source
	if rj != nil {
		ids := []string{id}
		if len(rj.Group) > 1 && rj.Rank == 0 {
			ids = rj.Group
		}
		for _, gid := range ids {
			g := n.remote.jobs[gid]
			if g == nil {
				continue
			}
			p, _ := peer.Decode(g.Provider)
			src := &source{id: g.remoteID(), prov: p}
			if len(g.Group) > 1 {
				src.prefix = fmt.Sprintf("[rank %d] ", g.Rank)
			}
			srcs = append(srcs, src)
		}
	}
	n.remote.mu.Unlock()
	if rj == nil {
		return fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	flusher, _ := w.(interface{ Flush() })
	emit := func(s *source, data []byte, final bool) {
		if s.prefix == "" {
			w.Write(data)
			return
		}
		s.partial = append(s.partial, data...)
		for {
			i := bytes.IndexByte(s.partial, '\n')
			if i < 0 {
				break
			}
			w.Write([]byte(s.prefix))
			w.Write(s.partial[:i+1])
			s.partial = s.partial[i+1:]
		}
		if final && len(s.partial) > 0 {
			w.Write([]byte(s.prefix))
			w.Write(append(s.partial, '\n'))
			s.partial = nil
		}
	}
	for {
		pending := 0
		for _, s := range srcs {
			if s.done {
				continue
			}
			for { // drain what this rank has now
				req, _ := json.Marshal(jobIDRequest{ID: s.id, Offset: s.off})
				resp, err := p2p.Request(ctx, n.p2p.Host, s.prov, n.p2p.ProtocolID(protoJobLogs), req, p2p.StreamLimits{MaxRequest: 1024, MaxResponse: maxLogChunk * 2})
				if err != nil {
					if len(srcs) == 1 {
						return err
					}
					s.done = true // a vanished rank's provider: its status says why
					break
				}
				var c logChunk
				if err := json.Unmarshal(resp, &c); err != nil {
					return err
				}
				s.off = c.Bytes
				emit(s, c.Data, c.Done || !follow)
				if len(c.Data) == maxLogChunk {
					continue
				}
				s.done = c.Done || !follow
				break
			}
			if !s.done {
				pending++
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// awaitStart waits while a job is queued when following its logs: there
// are none until a provider runs it. Without follow, or once it ended
// queued, it returns at once.
func (n *Node) awaitStart(ctx context.Context, id string, follow bool) error {
	for {
		n.remote.mu.Lock()
		rj := n.remote.jobs[id]
		waiting := rj != nil && rj.queued() && rj.Last != nil && !rj.Last.State.Terminal()
		n.remote.mu.Unlock()
		if rj == nil {
			return fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
		}
		if !waiting || !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// autoRedeem is the provider's redeem policy: every interval, one
// transaction for every kept voucher owed more than its channel paid, when
// the total owed reaches the threshold.
func (n *Node) autoRedeem(ctx context.Context, every time.Duration, above *big.Int) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		owed := new(big.Int)
		for _, v := range n.vouchers.received() {
			ch, err := n.chain.Channel(ctx, v.Payer, v.Payee, v.Token)
			if err != nil {
				continue
			}
			if d := new(big.Int).Sub(v.CumulativeAmount.Big(), ch.Redeemed.Big()); d.Sign() > 0 {
				owed.Add(owed, d)
			}
		}
		if owed.Sign() == 0 || (above != nil && owed.Cmp(above) < 0) {
			continue
		}
		res, err := n.redeem(ctx, RedeemRequest{})
		if err != nil {
			n.log.Warn("timed redeem failed; will try again", "err", err)
			continue
		}
		if len(res.Redeemed) == 0 {
			n.log.Debug("timed redeem: nothing owed")
			continue
		}
		n.log.Info("redeemed vouchers", "paid", strings.TrimSpace(res.PaidUnits+" "+res.Symbol), "paid_base", res.Paid, "channels", len(res.Redeemed), "tx", res.Tx)
	}
}
