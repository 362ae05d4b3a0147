package lease

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/gpu"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Record is the requester's record of a job running elsewhere.
type Record struct {
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
	// RunSeen and EndSeen are when this node first saw the job started
	// and ended, by its own clock: it pays for the time between them (or
	// up to LastSeen while it runs), never for the provider's StartedAt
	// and FinishedAt, which a provider could set to anything.
	RunSeen time.Time `json:"run_seen,omitzero"`
	EndSeen time.Time `json:"end_seen,omitzero"`
	// ProviderAddrs are the addresses of this node's last connection to
	// the provider (its identity checked by the handshake), so that a
	// restarted daemon can reach it again without asking anyone.
	ProviderAddrs []string `json:"provider_addrs,omitempty"`
}

// see records the provider's answer about the job at now (this node's
// clock), and when the job was first seen started and ended.
func (rj *Record) see(j *jobs.Job, now time.Time) {
	rj.Last, rj.LastSeen = j, now
	if j.StartedAt != nil && rj.RunSeen.IsZero() {
		rj.RunSeen = now
	}
	if j.State.Terminal() && rj.EndSeen.IsZero() {
		rj.EndSeen = now
		if rj.RunSeen.IsZero() && j.StartedAt != nil {
			rj.RunSeen = now
		}
	}
}

// remoteID is the job's ID on its provider.
func (rj *Record) remoteID() string {
	if rj.Remote != "" {
		return rj.Remote
	}
	return rj.ID
}

// queued reports whether the job waits for a provider (no deal yet).
func (rj *Record) queued() bool { return rj.Provider == "" }

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
	jobs     map[string]*Record // requester side, by job ID
	provided map[string]market.Deal
	// Provider side, for the money check (see coverage): the jobs still
	// watched, when each started running (this node's clock), and per
	// channel what was owed before its running jobs: the voucher held
	// when the first of them started, plus the cost of those that ended.
	live     map[string]bool
	runSince map[string]time.Time
	floor    map[common.Hash]*big.Int
	// refused is, per channel, why its last voucher was refused.
	refused map[common.Hash]string
	// startedDeals: every deal that started a job here, kept in
	// startedPath so that a replayed start is refused after a restart.
	startedDeals map[string]bool
	startedPath  string
	ports        map[int]bool   // provider side: ports given to distributed ranks
	portOf       map[string]int // provider side: job ID -> its port
	interval     time.Duration
	// Queued jobs wait under ctx (the daemon's; followRemote ends it),
	// each with its own cancel.
	ctx     context.Context
	stop    context.CancelFunc
	waiting map[string]context.CancelFunc
	// forwards: requester side, the published ports of service jobs.
	forwards map[string][]*forward
}

func (m *Manager) remoteDir() string { return filepath.Join(m.cfg.Dir, "remote") }

// openRemote loads the requester's records and registers the provider's
// protocols.
func (m *Manager) openRemote() error {
	if err := m.loadRemote(); err != nil {
		return err
	}
	if err := m.loadProvided(); err != nil {
		return err
	}
	m.rememberAddrs()
	m.protocols()
	if err := m.openPorts(); err != nil {
		return err
	}
	return nil
}

// loadRemote makes both sides' state and loads the requester's records
// and the deals already started here.
func (m *Manager) loadRemote() error {
	m.remote = &remote{jobs: map[string]*Record{}, provided: map[string]market.Deal{},
		live: map[string]bool{}, runSince: map[string]time.Time{}, floor: map[common.Hash]*big.Int{}, refused: map[common.Hash]string{},
		startedDeals: map[string]bool{}, startedPath: filepath.Join(m.cfg.Dir, "started-deals.json"),
		ports: map[int]bool{}, portOf: map[string]int{}, interval: m.voucherInterval, waiting: map[string]context.CancelFunc{}, forwards: map[string][]*forward{}}
	if m.remote.interval <= 0 {
		m.remote.interval = 10 * time.Second
	}
	m.remote.ctx, m.remote.stop = context.WithCancel(context.Background())
	if err := os.MkdirAll(m.remoteDir(), 0o700); err != nil {
		return err
	}
	switch b, err := os.ReadFile(m.remote.startedPath); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("started deals: %w", err)
	default:
		var ids []string
		if err := json.Unmarshal(b, &ids); err != nil {
			// Refusing to start beats forgetting which deals already ran:
			// a replayed deal would run again.
			return fmt.Errorf("started deals %s is corrupt (%v): repair it or move it away; a deal in it could then be started again", m.remote.startedPath, err)
		}
		for _, id := range ids {
			m.remote.startedDeals[id] = true
		}
	}
	entries, err := os.ReadDir(m.remoteDir())
	if err != nil {
		return fmt.Errorf("remote job records: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.remoteDir(), e.Name()))
		if err != nil {
			m.log.Error("remote job record unreadable; leaving it out", "file", e.Name(), "err", err)
			continue
		}
		var rj Record
		if err := json.Unmarshal(b, &rj); err != nil {
			m.log.Error("remote job record is corrupt; leaving it out", "file", e.Name(), "err", err)
			continue
		}
		// The file is named after the ID it holds; one that is not is no
		// record of ours.
		if err := checkJobID(rj.ID); err != nil || rj.ID+".json" != e.Name() {
			m.log.Error("remote job record names another job, or none; leaving it out", "file", e.Name(), "id", rj.ID, "err", err)
			continue
		}
		m.remote.jobs[rj.ID] = &rj
	}
	return nil
}

// saveRemote writes a requester's record atomically.
func (m *Manager) saveRemote(rj *Record) error {
	if err := checkJobID(rj.ID); err != nil {
		return fmt.Errorf("save remote job: %w", err)
	}
	addrs := m.connAddrs(rj.Provider)
	m.remote.mu.Lock()
	if len(addrs) > 0 {
		rj.ProviderAddrs = addrs
	}
	b, err := json.MarshalIndent(rj, "", "  ")
	m.remote.mu.Unlock()
	if err == nil {
		err = writeAtomic(filepath.Join(m.remoteDir(), rj.ID+".json"), b)
	}
	if err != nil {
		return fmt.Errorf("save remote job %s: %w", rj.ID, err)
	}
	return nil
}

// dealCost is what a deal costs for d of run time: price per GPU-hour ×
// GPUs × hours, rounded up to a base unit.
func dealCost(deal market.Deal, d time.Duration) *big.Int {
	price, ok := new(big.Int).SetString(deal.Price, 10)
	if !ok {
		return new(big.Int) // no deal yet (a queued job): nothing to pay
	}
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
func (m *Manager) submitRemote(ctx context.Context, spec *jobs.Spec) (*jobs.Job, error) {
	if spec.MaxPrice == "" {
		return nil, invalid{errors.New("max_price: required for a job through the market (per GPU-hour, in whole units of the token)")}
	}
	if err := m.checkFunds(ctx, spec); err != nil {
		return nil, err
	}
	return m.queueRemote(spec, nil)
}

// checkFunds refuses a market job that could not be paid for at any
// price: the token and max price must parse, and the wallet or a channel
// already funded must hold something of the token.
func (m *Manager) checkFunds(ctx context.Context, spec *jobs.Spec) error {
	tok, err := chain.ParseToken("", m.chain.DefaultToken())
	if err != nil {
		return invalid{fmt.Errorf("token: %w", err)}
	}
	_, dec, err := m.chain.TokenInfo(ctx, tok)
	if err != nil {
		return err
	}
	if _, err := chain.ParseUnits(spec.MaxPrice, dec); err != nil {
		return invalid{fmt.Errorf("max_price: %w", err)}
	}
	bal, err := m.chain.Balance(ctx, tok)
	if err != nil {
		return err
	}
	if bal.Sign() > 0 {
		return nil
	}
	payees := map[common.Address]bool{}
	m.remote.mu.Lock()
	for _, rj := range m.remote.jobs {
		if !rj.queued() && dealToken(rj.Deal) == tok {
			payees[common.HexToAddress(rj.Deal.ProviderWallet)] = true
		}
	}
	m.remote.mu.Unlock()
	for p := range payees {
		if ch, err := m.chain.Channel(ctx, m.wallet.Address(), p, tok); err == nil && ch.Deposited.Big().Cmp(ch.Redeemed.Big()) > 0 {
			return nil // what is left in the channel may pay for it
		}
	}
	return invalid{fmt.Errorf("insufficient funds: wallet %s holds no %s to pay a provider with; fund the wallet first", m.wallet.Address(), chain.TokenName(tok))}
}

func newJobID() string {
	var b [8]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// queueRemote records a market job as queued, starts its wait for a
// provider, and returns it. exclude are providers not to use (a retry's
// failed one).
func (m *Manager) queueRemote(spec *jobs.Spec, exclude []string) (*jobs.Job, error) {
	queue := queueTimeout(spec)
	now := time.Now().UTC()
	id := newJobID()
	reason := "waiting for a provider to bid"
	j := &jobs.Job{ID: id, Spec: *spec, State: jobs.Queued, Reason: reason, CreatedAt: now,
		History: []jobs.Transition{{State: jobs.Queued, Reason: reason, At: now}}}
	rj := &Record{ID: id, Last: j, Vouched: "0", Spec: *spec, QueueUntil: now.Add(queue)}
	m.remote.mu.Lock()
	m.remote.jobs[id] = rj
	m.remote.mu.Unlock()
	if err := m.saveRemote(rj); err != nil {
		m.remote.mu.Lock()
		delete(m.remote.jobs, id)
		m.remote.mu.Unlock()
		return nil, err
	}
	m.log.Info("job queued for the market", "job_id", id, "queue", queue)
	m.startQueued(rj, exclude)
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
func (m *Manager) startQueued(rj *Record, exclude []string) {
	ctx, cancel := context.WithCancel(m.remote.ctx)
	m.remote.mu.Lock()
	m.remote.waiting[rj.ID] = cancel
	m.remote.mu.Unlock()
	m.spawn(func(context.Context) {
		defer func() {
			cancel()
			m.remote.mu.Lock()
			delete(m.remote.waiting, rj.ID)
			m.remote.mu.Unlock()
		}()
		m.runQueued(ctx, rj, exclude)
	})
}

// runQueued waits for a deal, funds it and starts the job; on any failure
// the job fails with the reason.
func (m *Manager) runQueued(ctx context.Context, rj *Record, exclude []string) {
	spec := rj.Spec
	progress := func(reason string) { m.setQueued(rj, reason) }
	var err error
	if spec.Distributed != nil && spec.Distributed.Nodes > 1 {
		_, err = m.submitGang(ctx, &spec, rj.ID, progress)
	} else {
		err = m.startSingle(ctx, rj, exclude, progress)
	}
	if err == nil {
		return
	}
	if ctx.Err() != nil && m.remote.ctx.Err() != nil {
		return // the daemon is stopping: the record stays queued and resumes
	}
	m.remote.mu.Lock()
	canceled := rj.Last != nil && rj.Last.State == jobs.Canceled
	m.remote.mu.Unlock()
	if canceled {
		return
	}
	m.log.Warn("market job failed before it started", "job_id", rj.ID, "err", err)
	m.endQueued(rj, jobs.Failed, err.Error())
}

// startSingle is runQueued for a job on one provider.
func (m *Manager) startSingle(ctx context.Context, rj *Record, exclude []string, progress func(string)) error {
	spec := rj.Spec
	deals, err := m.dealsWithin(ctx, &spec, exclude, time.Until(rj.QueueUntil), 1, progress)
	if err != nil {
		return err
	}
	deal := deals[0]
	progress(fmt.Sprintf("deal %s with provider %s; funding the channel", short(deal.ID), short(deal.Provider)))
	if err := m.fundChannel(ctx, *deal); err != nil {
		return err
	}
	prov, _ := peer.Decode(deal.Provider)
	req, _ := json.Marshal(startRequest{DealID: deal.ID, Spec: spec, JobID: rj.ID})
	resp, err := m.request(ctx, prov, wireStart, req)
	if err != nil {
		m.market.Reputation().NoShow(deal.Provider)
		return fmt.Errorf("provider %s did not start the job: %w", deal.Provider, err)
	}
	var j jobs.Job
	if err := json.Unmarshal(resp, &j); err != nil {
		return fmt.Errorf("provider %s: %w", deal.Provider, err)
	}
	remoteID, err := providerJobID(rj.ID, j.ID)
	if err != nil {
		return fmt.Errorf("provider %s: %w", deal.Provider, err)
	}
	j.ID, j.Provider = rj.ID, deal.Provider
	m.remote.mu.Lock()
	rj.Remote, rj.Provider, rj.Deal, rj.QueueUntil = remoteID, deal.Provider, *deal, time.Time{}
	rj.see(&j, time.Now())
	m.remote.mu.Unlock()
	if err := m.saveRemote(rj); err != nil {
		m.log.Error("record of a started job not saved", "job_id", rj.ID, "err", err)
	}
	m.log.Info("job started on a provider", "job_id", rj.ID, "provider", deal.Provider, "deal_id", short(deal.ID))
	return nil
}

// setQueued updates a queued job's reason.
func (m *Manager) setQueued(rj *Record, reason string) {
	m.remote.mu.Lock()
	if rj.Last == nil || rj.Last.State != jobs.Queued || !rj.queued() {
		m.remote.mu.Unlock()
		return
	}
	j := *rj.Last
	j.Reason = reason
	rj.Last = &j
	m.remote.mu.Unlock()
	if err := m.saveRemote(rj); err != nil {
		m.log.Warn("queued job's reason not saved", "job_id", rj.ID, "err", err)
	}
}

// endQueued ends a job that never started.
func (m *Manager) endQueued(rj *Record, state jobs.State, reason string) {
	now := time.Now().UTC()
	m.remote.mu.Lock()
	// A gang's rank 0 replaces the queued record once it starts; the
	// record that ends here must still be the job's.
	if rj.Last == nil || rj.Last.State.Terminal() || m.remote.jobs[rj.ID] != rj {
		m.remote.mu.Unlock()
		return
	}
	j := *rj.Last
	j.State, j.Reason, j.FinishedAt = state, reason, &now
	j.History = append(append([]jobs.Transition(nil), j.History...), jobs.Transition{State: state, Reason: reason, At: now})
	rj.Last, rj.Settled = &j, true
	m.remote.mu.Unlock()
	if err := m.saveRemote(rj); err != nil {
		m.log.Error("record of a failed job not saved", "job_id", rj.ID, "err", err)
	}
}

// resumeQueued picks up the jobs that were queued when the daemon
// stopped: each waits out what is left of its queue timeout, and one whose
// timeout passed while the daemon was down fails with that reason.
func (m *Manager) resumeQueued() {
	m.remote.mu.Lock()
	var todo []*Record
	for _, rj := range m.remote.jobs {
		if rj.queued() && rj.Last != nil && rj.Last.State == jobs.Queued && m.remote.waiting[rj.ID] == nil {
			todo = append(todo, rj)
		}
	}
	m.remote.mu.Unlock()
	for _, rj := range todo {
		if time.Now().After(rj.QueueUntil) {
			m.endQueued(rj, jobs.Failed, "timeouts.queue ran out while the daemon was down; last: "+rj.Last.Reason)
			continue
		}
		m.log.Info("queued job resumed", "job_id", rj.ID, "until", rj.QueueUntil)
		m.startQueued(rj, nil)
	}
}

// providerJobID is the provider's ID for a job this node named ours, as
// the requester keeps it (empty: the same): it is sent back in requests
// and must be a job ID, never a path.
func providerJobID(ours, got string) (string, error) {
	if got == ours {
		return "", nil
	}
	if err := checkJobID(got); err != nil {
		return "", fmt.Errorf("the provider's ID for job %s: %w", ours, err)
	}
	return got, nil
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
func (m *Manager) dealsWithin(ctx context.Context, spec *jobs.Spec, exclude []string, queue time.Duration, count int, progress func(string)) ([]*market.Deal, error) {
	if queue < 0 {
		queue = queueTimeout(spec)
	}
	deadline := time.Now().Add(queue)
	hash, err := spec.Hash()
	if err != nil {
		return nil, err
	}
	var res OfferResult
	for attempt := 0; ; attempt++ {
		res, err = m.Negotiate(ctx, OfferRequest{
			GPUs: spec.Resources.GPUs, GPUClass: spec.Resources.GPUClass, GPUMemoryMiB: spec.Resources.GPUMemoryMiB,
			CPU: int(math.Ceil(spec.Resources.CPU)), MemoryMiB: spec.Resources.MemoryMiB, DiskMiB: spec.Resources.DiskMiB,
			MaxPrice: spec.MaxPrice, Duration: spec.ExecutionTimeout().String(), Image: spec.Image, SpecHash: hash,
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

// fundChannel makes sure the channel to the provider holds everything
// already vouched on it plus this deal's maximum cost: one deposit or
// top-up, reused by later jobs.
func (m *Manager) fundChannel(ctx context.Context, deal market.Deal, pending ...market.Deal) error {
	payee, token := common.HexToAddress(deal.ProviderWallet), dealToken(deal)
	need := dealCost(deal, time.Duration(deal.MaxDurationS)*time.Second)
	// Deals of the same job funded just before this one, not yet running.
	for _, p := range pending {
		if common.HexToAddress(p.ProviderWallet) == payee && dealToken(p) == token {
			need.Add(need, dealCost(p, time.Duration(p.MaxDurationS)*time.Second))
		}
	}
	if v := m.vouchers.get(m.vouchers.data.Signed, chain.ChannelID(m.wallet.Address(), payee, token)); v != nil {
		need.Add(need, v.CumulativeAmount.Big())
	}
	need.Add(need, m.committedRunning(payee, token))
	ch, err := m.chain.Channel(ctx, m.wallet.Address(), payee, token)
	if err != nil {
		return err
	}
	short := new(big.Int).Sub(need, ch.Deposited.Big())
	if short.Sign() <= 0 {
		return nil
	}
	bal, err := m.chain.Balance(ctx, token)
	if err != nil {
		return err
	}
	if bal.Cmp(short) < 0 {
		return invalid{fmt.Errorf("insufficient funds: the deal may cost up to %s base units, the channel needs %s more, wallet %s holds %s; fund the wallet, or lower max_price or timeouts.execution",
			dealCost(deal, time.Duration(deal.MaxDurationS)*time.Second), short, m.wallet.Address(), bal)}
	}
	if _, err := m.chain.Deposit(ctx, payee, token, short); err != nil {
		return fmt.Errorf("fund the channel: %w", err)
	}
	return nil
}

// committedRunning is the rest of the maximum cost of this node's running
// jobs on the channel (what they may still be vouched).
func (m *Manager) committedRunning(payee, token common.Address) *big.Int {
	sum := new(big.Int)
	m.remote.mu.Lock()
	defer m.remote.mu.Unlock()
	for _, rj := range m.remote.jobs {
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
func (m *Manager) handleJobStart(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	var sr startRequest
	if err := json.Unmarshal(req, &sr); err != nil {
		return nil, fmt.Errorf("start request: %w", err)
	}
	deal, err := m.checkStart(ctx, from, sr)
	if err != nil {
		return nil, err
	}
	if err := m.claimDeal(deal.ID); err != nil {
		return nil, err
	}
	spec := sr.Spec
	spec.Resources.GPUs = len(deal.GPUs)
	j, err := m.jobs.Submit(spec, jobs.SubmitOptions{GPUs: deal.GPUs, ID: sr.JobID})
	if err != nil {
		m.market.Release(deal.ID)
		return nil, err
	}
	if err := m.startedProvided(j, *deal); err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// checkStart is the provider's check before a market job prepares: the
// deal must be ours and the requester's, the spec the deal's, and the
// channel must hold the deal's maximum cost beyond what is owed.
func (m *Manager) checkStart(ctx context.Context, from peer.ID, sr startRequest) (*market.Deal, error) {
	// The ID names the job's directory here: refused before anything else.
	if sr.JobID != "" {
		if err := checkJobID(sr.JobID); err != nil {
			return nil, fmt.Errorf("start request: job_id: %w", err)
		}
	}
	m.remote.mu.Lock()
	replay := m.remote.startedDeals[sr.DealID]
	m.remote.mu.Unlock()
	if replay {
		return nil, fmt.Errorf("deal %s already started its job here: a deal starts one job, once; make a new deal for another", short(sr.DealID))
	}
	if m.jobs == nil {
		return nil, fmt.Errorf("this provider cannot run jobs: %v", m.jobsErr)
	}
	var deal *market.Deal
	for _, d := range m.market.Deals() {
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
	}
	if h, err := sr.Spec.Hash(); err != nil || h != deal.SpecHash {
		return nil, fmt.Errorf("the spec is not the one deal %s was made for (its %s hash differs): send the spec the offer named", short(deal.ID), jobs.SpecHashVersion)
	}
	if err := sr.Spec.Validate(); err != nil {
		return nil, err
	}
	if err := m.withinTerms(deal, &sr.Spec); err != nil {
		return nil, err
	}
	ch, err := m.chain.Channel(ctx, common.HexToAddress(deal.RequesterWallet), m.wallet.Address(), dealToken(*deal))
	if err != nil {
		return nil, err
	}
	if ch.ClosesAt != 0 {
		// Its payer may withdraw at ClosesAt, whatever it vouched by then.
		return nil, fmt.Errorf("channel %s is closing (its payer may withdraw at %s): no job starts on it; deposit into a new channel after withdrawing",
			ch.ID, time.Unix(int64(ch.ClosesAt), 0).UTC().Format(time.RFC3339))
	}
	if err := m.depositCovers(ch.ID, ch.Deposited.Big(), ch.Redeemed.Big(), deal); err != nil {
		return nil, err
	}
	return deal, nil
}

// depositCovers checks that a channel's deposit holds a new deal's most
// cost beyond what is owed on it and what its running jobs may still
// cost: every job on one channel is paid from one deposit.
func (m *Manager) depositCovers(ch common.Hash, deposited, redeemed *big.Int, deal *market.Deal) error {
	owed := new(big.Int).Set(redeemed)
	if v := m.vouchers.get(m.vouchers.data.Received, ch); v != nil && v.CumulativeAmount.Cmp(owed) > 0 {
		owed = v.CumulativeAmount.Big()
	}
	committed, running := new(big.Int), 0
	m.remote.mu.Lock()
	for id := range m.remote.live {
		d := m.remote.provided[id]
		if m.providedChannel(d) == ch {
			committed.Add(committed, dealCost(d, time.Duration(d.MaxDurationS)*time.Second))
			running++
		}
	}
	// With jobs running, what was owed before them is the floor; what
	// they have been paid since is inside their committed cost.
	if f := m.remote.floor[ch]; running > 0 && f != nil {
		owed = new(big.Int).Set(f)
	}
	m.remote.mu.Unlock()
	need := dealCost(*deal, time.Duration(deal.MaxDurationS)*time.Second)
	free := new(big.Int).Sub(deposited, owed)
	free.Sub(free, committed)
	if free.Cmp(need) < 0 {
		if running > 0 {
			return fmt.Errorf("the channel holds %s base units beyond what is owed and what its %d running job(s) may still cost (%s); the deal needs %s: deposit more", free, running, committed, need)
		}
		return fmt.Errorf("the channel holds %s base units beyond what is owed; the deal needs %s", free, need)
	}
	return nil
}

// claimDeal records that a deal started its job, on disk before the job
// starts; a deal already recorded is refused (a replayed start).
func (m *Manager) claimDeal(id string) error {
	r := m.remote
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.startedDeals[id] {
		return fmt.Errorf("deal %s already started its job here: a deal starts one job, once; make a new deal for another", short(id))
	}
	ids := make([]string, 0, len(r.startedDeals)+1)
	for d := range r.startedDeals {
		ids = append(ids, d)
	}
	ids = append(ids, id)
	sort.Strings(ids)
	b, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("record started deal: %w", err)
	}
	if err := writeAtomic(r.startedPath, b); err != nil {
		return fmt.Errorf("record started deal %s: %w", short(id), err)
	}
	r.startedDeals[id] = true
	return nil
}

// startedProvided records a job this node runs for a deal, on disk
// first (a restarted provider must still know whose job it is, and what
// pays for it), and watches it. A record that cannot be written stops
// the job: it would run unwatched after a restart.
func (m *Manager) startedProvided(j *jobs.Job, deal market.Deal) error {
	if err := m.saveProvided(j.ID, deal); err != nil {
		m.jobs.Fail(j.ID, "the provider could not record the deal: "+err.Error())
		if m.market != nil {
			m.market.Release(deal.ID)
		}
		return err
	}
	if m.market != nil {
		m.market.Started(deal.ID)
	}
	m.trackProvided(j.ID, deal)
	m.spawn(func(ctx context.Context) { m.watchProvided(ctx, j.ID, deal) })
	return nil
}

func (m *Manager) providedDir() string { return filepath.Join(m.cfg.Dir, "provided") }

// saveProvided writes the deal of a job this node runs, as
// provided/ID.json.
func (m *Manager) saveProvided(id string, deal market.Deal) error {
	if err := checkJobID(id); err != nil {
		return fmt.Errorf("provided job: %w", err)
	}
	b, err := json.Marshal(deal)
	if err == nil {
		err = os.MkdirAll(m.providedDir(), 0o700)
	}
	if err == nil {
		err = writeAtomic(filepath.Join(m.providedDir(), id+".json"), b)
	}
	if err != nil {
		return fmt.Errorf("save provided job %s: %w", id, err)
	}
	return nil
}

// loadProvided reads the deals of the jobs this node runs for others and
// watches again those still running: their requesters keep following and
// paying them. What was owed before the restart is the voucher held; the
// run time owed for starts now.
func (m *Manager) loadProvided() error {
	entries, err := os.ReadDir(m.providedDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("provided jobs: %w", err)
	}
	var bad []string
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.providedDir(), e.Name()))
		var deal market.Deal
		if err == nil {
			err = json.Unmarshal(b, &deal)
		}
		if err == nil {
			err = checkJobID(id)
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", e.Name(), err))
			continue
		}
		m.remote.mu.Lock()
		m.remote.provided[id] = deal
		m.remote.mu.Unlock()
		if m.jobs == nil {
			continue
		}
		if j, err := m.jobs.Get(id); err == nil && !j.State.Terminal() {
			m.trackProvided(id, deal)
			m.remote.mu.Lock()
			m.remote.runSince[id] = time.Now()
			m.remote.mu.Unlock()
			m.spawn(func(ctx context.Context) { m.watchProvided(ctx, id, deal) })
			m.log.Info("watching a provided job again", "job_id", id, "deal_id", short(deal.ID), "requester", deal.Requester)
		}
	}
	if len(bad) > 0 {
		// Said at every start until repaired: such a job's requester can
		// no longer follow it here.
		m.log.Error("provided job records unreadable; their jobs are not watched", "files", bad, "dir", m.providedDir())
	}
	return nil
}

// providedChannel is the channel that pays for a deal this node provides.
func (m *Manager) providedChannel(deal market.Deal) common.Hash {
	return chain.ChannelID(common.HexToAddress(deal.RequesterWallet), m.wallet.Address(), dealToken(deal))
}

// trackProvided starts the money check of a provided job: when it is the
// only running job on its channel, what was owed before it is what the
// voucher held now says.
func (m *Manager) trackProvided(id string, deal market.Deal) {
	ch := m.providedChannel(deal)
	held := new(big.Int)
	if v := m.vouchers.get(m.vouchers.data.Received, ch); v != nil {
		held = v.CumulativeAmount.Big()
	}
	r := m.remote
	r.mu.Lock()
	defer r.mu.Unlock()
	others := false
	for o := range r.live {
		if m.providedChannel(r.provided[o]) == ch {
			others = true
		}
	}
	if !others {
		r.floor[ch] = held
	}
	r.provided[id] = deal
	r.live[id] = true
}

// endProvided ends the money check of a provided job: what it cost (its
// run time here, within the deal) is owed before the channel's other jobs.
func (m *Manager) endProvided(id string, started, finished *time.Time) {
	r := m.remote
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.live[id] {
		return
	}
	deal := r.provided[id]
	ch := m.providedChannel(deal)
	delete(r.live, id)
	delete(r.runSince, id)
	if started != nil && finished != nil && r.floor[ch] != nil {
		r.floor[ch] = new(big.Int).Add(r.floor[ch], dealCost(deal, min(finished.Sub(*started), time.Duration(deal.MaxDurationS)*time.Second)))
	}
}

// coverage is the money check of a channel at now: what its best voucher
// holds, what it owes (what was owed before its running jobs, plus each
// one's price × its run time here so far), and the slack allowed: two
// voucher intervals of each running job (the requester pays once an
// interval, for the time it saw, from when it first saw the job run).
func (m *Manager) coverage(ch common.Hash, now time.Time) (held, owed, slack *big.Int) {
	held = new(big.Int)
	if v := m.vouchers.get(m.vouchers.data.Received, ch); v != nil {
		held = v.CumulativeAmount.Big()
	}
	r := m.remote
	r.mu.Lock()
	defer r.mu.Unlock()
	owed, slack = new(big.Int), new(big.Int)
	if f := r.floor[ch]; f != nil {
		owed.Set(f)
	}
	for id := range r.live {
		deal := r.provided[id]
		if m.providedChannel(deal) != ch {
			continue
		}
		since, ok := r.runSince[id]
		if !ok {
			continue // not running yet: nothing owed
		}
		owed.Add(owed, dealCost(deal, min(now.Sub(since), time.Duration(deal.MaxDurationS)*time.Second)))
		slack.Add(slack, dealCost(deal, paySlack(r.interval)))
	}
	return held, owed, slack
}

// paySlack is the unpaid run time a provider allows each running job: the
// requester pays once an interval (for what it saw, plus an interval), so
// an honest one is up to an interval behind just before it pays; on top,
// a margin for the voucher's delivery, a quarter interval and at least 1 s.
func paySlack(interval time.Duration) time.Duration {
	return interval + max(interval/4, time.Second)
}

// unpaid says why a running provided job must stop for want of pay, or
// "" while the channel's vouchers keep up with its jobs.
func (m *Manager) unpaid(id string, now time.Time) string {
	m.remote.mu.Lock()
	deal, ok := m.remote.provided[id]
	m.remote.mu.Unlock()
	if !ok {
		return ""
	}
	ch := m.providedChannel(deal)
	held, owed, slack := m.coverage(ch, now)
	short := new(big.Int).Sub(owed, held)
	if short.Cmp(slack) <= 0 {
		return ""
	}
	m.remote.mu.Lock()
	why := m.remote.refused[ch]
	m.remote.mu.Unlock()
	reason := fmt.Sprintf("the requester's vouchers stopped covering the job: channel %s holds %s base units, its running jobs owe %s (%s short, %s allowed)",
		ch, held, owed, short, slack)
	if why != "" {
		reason += "; last voucher refused: " + why
	}
	return reason
}

// watchProvided stops a job whose vouchers stop covering it (see
// paySlack), or whose GPU fails, and frees the deal's GPUs when it ends.
func (m *Manager) watchProvided(ctx context.Context, id string, deal market.Deal) {
	defer func() {
		if m.market != nil {
			m.market.Release(deal.ID)
		}
	}()
	defer func() { // a distributed rank's port is free again
		m.remote.mu.Lock()
		if p, ok := m.remote.portOf[id]; ok {
			delete(m.remote.ports, p)
			delete(m.remote.portOf, id)
		}
		m.remote.mu.Unlock()
	}()
	changes, unsub := m.gpus.Subscribe()
	defer unsub()
	ours := map[string]bool{}
	for _, u := range deal.GPUs {
		ours[u] = true
	}
	// Checked four times an interval: a job whose pay stops runs at most a
	// quarter interval past its slack.
	t := time.NewTicker(max(m.remote.interval/4, 100*time.Millisecond))
	defer t.Stop()
	var started, finished *time.Time
	stopping := false // the daemon stops: the job goes on, watched again at the next start
	defer func() {
		if !stopping {
			m.endProvided(id, started, finished)
			if m.ports != nil {
				m.ports.CloseJob(id)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			stopping = true
			return
		case c := <-changes:
			if ours[c.UUID] && c.To == gpu.Unhealthy {
				m.log.Warn("a job's GPU failed; stopping the job", "job_id", id, "uuid", c.UUID, "reason", c.Reason)
				m.jobs.Fail(id, fmt.Sprintf("GPU %s became unhealthy: %s", c.UUID, c.Reason))
			}
			continue
		case <-t.C:
		}
		j, err := m.jobs.Get(id)
		if err != nil {
			return
		}
		started, finished = j.StartedAt, j.FinishedAt
		if j.State.Terminal() {
			return
		}
		// Nothing is owed before the job runs (a gang's rank waits for
		// the others, an image loads): the vouchers are due from its start.
		if j.StartedAt != nil {
			m.remote.mu.Lock()
			if _, ok := m.remote.runSince[id]; !ok {
				m.remote.runSince[id] = *j.StartedAt
			}
			m.remote.mu.Unlock()
		}
		if j.State != jobs.Running {
			continue
		}
		// The deal pays for its duration and no more: a service (which
		// has no execution limit of its own) ends with it. A batch job times
		// out first (its execution fits the deal): an interval later.
		if max := time.Duration(deal.MaxDurationS) * time.Second; j.StartedAt != nil && time.Since(*j.StartedAt) >= max+m.remote.interval {
			why := fmt.Sprintf("the deal's duration (%s) ended: a job runs for its deal's duration at most; start a new one to go on", max)
			m.log.Info("deal's duration ended; stopping the job", "job_id", id, "deal_id", short(deal.ID))
			if f, err := m.jobs.Fail(id, why); err == nil {
				started, finished = f.StartedAt, f.FinishedAt
			}
			return
		}
		if why := m.unpaid(id, time.Now()); why != "" {
			m.log.Warn("vouchers stopped; stopping the job", "job_id", id, "requester", deal.Requester, "why", why)
			if f, err := m.jobs.Fail(id, why); err == nil {
				started, finished = f.StartedAt, f.FinishedAt
			}
			return
		}
	}
}

func (m *Manager) handleJobCancel(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	_, r, err := m.providedJob(from, req)
	if err != nil {
		return nil, err
	}
	var j *jobs.Job
	if r.Reason != "" {
		j, err = m.jobs.Fail(r.ID, r.Reason)
	} else {
		j, err = m.jobs.Cancel(r.ID)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// cancelRemote asks the provider to stop a job.
func (m *Manager) cancelRemote(ctx context.Context, id string) (*jobs.Job, error) {
	m.remote.mu.Lock()
	rj := m.remote.jobs[id]
	m.remote.mu.Unlock()
	if rj == nil {
		return nil, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	m.remote.mu.Lock()
	stopWait, queued := m.remote.waiting[id], rj.queued()
	var last jobs.State
	if rj.Last != nil {
		last = rj.Last.State
	}
	m.remote.mu.Unlock()
	if queued {
		if last.Terminal() {
			return nil, fmt.Errorf("%w: %s is %s", jobs.ErrFinished, id, last)
		}
		m.endQueued(rj, jobs.Canceled, "canceled while queued")
		if stopWait != nil {
			stopWait()
		}
		m.remote.mu.Lock()
		j := *rj.Last
		m.remote.mu.Unlock()
		return &j, nil
	}
	prov, _ := peer.Decode(rj.Provider)
	req, _ := json.Marshal(jobIDRequest{ID: rj.remoteID()})
	resp, err := m.request(ctx, prov, wireCancel, req)
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", rj.Provider, err)
	}
	var j jobs.Job
	if err := json.Unmarshal(resp, &j); err != nil {
		return nil, fmt.Errorf("provider %s: %w", rj.Provider, err)
	}
	j.ID, j.Provider = rj.ID, rj.Provider
	m.endForwards(rj.ID) // its local ports close with it, not at the next poll
	return &j, nil
}

// providedJob reads a request about one of our jobs: only the requester of
// its deal may ask.
func (m *Manager) providedJob(from peer.ID, req []byte) (*jobs.Job, jobIDRequest, error) {
	var r jobIDRequest
	if err := json.Unmarshal(req, &r); err != nil {
		return nil, r, err
	}
	m.remote.mu.Lock()
	deal, ok := m.remote.provided[r.ID]
	m.remote.mu.Unlock()
	if !ok || deal.Requester != from.String() {
		return nil, r, fmt.Errorf("no job %s of yours here", r.ID)
	}
	if m.jobs == nil {
		// Restarted without its container runtime: the records are here,
		// the jobs are not reachable.
		return nil, r, fmt.Errorf("this provider cannot run jobs now: %v", m.jobsErr)
	}
	j, err := m.jobs.Get(r.ID)
	return j, r, err
}

func (m *Manager) handleJobStatus(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	j, _, err := m.providedJob(from, req)
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

func (m *Manager) handleJobLogs(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	j, r, err := m.providedJob(from, req)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(m.cfg.Dir, "jobs", j.ID, "output.log"))
	if err != nil {
		return json.Marshal(logChunk{Done: j.State.Terminal(), Bytes: r.Offset})
	}
	defer f.Close()
	if r.Offset < 0 {
		return nil, fmt.Errorf("logs: offset %d: want 0 or more", r.Offset)
	}
	if _, err := f.Seek(r.Offset, io.SeekStart); err != nil {
		return nil, fmt.Errorf("logs: offset %d: %w", r.Offset, err)
	}
	buf := make([]byte, maxLogChunk)
	k, _ := io.ReadFull(f, buf)
	return json.Marshal(logChunk{Data: buf[:k], Done: j.State.Terminal() && k < maxLogChunk, Bytes: r.Offset + int64(k)})
}

// handleJobVoucher keeps a voucher for one of our jobs, only if it can be
// redeemed for more than the one held: signed by the payer, for this
// wallet, chain and escrow, on the channel of a deal of the sender's here,
// raising the cumulative amount, within the channel's deposit on chain.
// Anything else is refused with the reason, and the voucher held stays.
func (m *Manager) handleJobVoucher(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	v, err := chain.DecodeVoucher(req) // checks the fields and the signature
	if err != nil {
		return nil, err
	}
	if err := m.acceptVoucher(ctx, from, v); err != nil {
		if !errors.Is(err, errVoucherHeld) {
			m.remote.mu.Lock()
			m.remote.refused[v.Channel] = err.Error()
			m.remote.mu.Unlock()
			m.log.Warn("voucher refused", "requester", from, "channel", v.Channel, "amount", v.CumulativeAmount, "err", err)
			return nil, err
		}
	}
	return []byte("ok"), nil
}

// errVoucherHeld: the voucher is the one already held (a requester resends
// its last when nothing more is owed); nothing changes.
var errVoucherHeld = errors.New("voucher already held")

func (m *Manager) acceptVoucher(ctx context.Context, from peer.ID, v *chain.Voucher) error {
	if v.Payee != m.wallet.Address() || v.ChainID.Big().Cmp(m.chain.ChainID()) != 0 || v.Escrow != m.chain.Escrow() {
		return fmt.Errorf("voucher refused: it pays %s on chain %s through escrow %s; this provider is %s on chain %s through %s",
			v.Payee, v.ChainID, v.Escrow, m.wallet.Address(), m.chain.ChainID(), m.chain.Escrow())
	}
	ours := false
	m.remote.mu.Lock()
	for _, d := range m.remote.provided {
		if d.Requester == from.String() && m.providedChannel(d) == v.Channel {
			ours = true
			break
		}
	}
	m.remote.mu.Unlock()
	if !ours {
		return fmt.Errorf("voucher refused: channel %s (payer %s, token %s) is not the channel of any deal of yours here", v.Channel, v.Payer, v.Token)
	}
	prev := m.vouchers.get(m.vouchers.data.Received, v.Channel)
	if prev != nil {
		switch c := v.CumulativeAmount.Cmp(prev.CumulativeAmount.Big()); {
		case c == 0:
			return errVoucherHeld
		case c < 0:
			return fmt.Errorf("voucher refused: cumulative amount %s is below the %s already held on channel %s; send a voucher for more", v.CumulativeAmount, prev.CumulativeAmount, v.Channel)
		}
	}
	ch, err := m.chain.Channel(ctx, v.Payer, v.Payee, v.Token)
	if err != nil {
		return fmt.Errorf("voucher not kept: reading its channel to check the deposit: %w", err)
	}
	if v.CumulativeAmount.Cmp(ch.Deposited.Big()) > 0 {
		// Redeem skips it, and it would hide the one that can be redeemed.
		return fmt.Errorf("voucher refused: cumulative amount %s exceeds channel %s's deposit of %s; the voucher held (%s) stays", v.CumulativeAmount, v.Channel, ch.Deposited, amountOf(prev))
	}
	kept, err := m.vouchers.keepIf(m.vouchers.data.Received, v, func(old *chain.Voucher) bool {
		return old == nil || old.CumulativeAmount.Cmp(v.CumulativeAmount.Big()) < 0
	})
	if err != nil {
		return fmt.Errorf("voucher not kept: %w", err)
	}
	if !kept {
		return errVoucherHeld // a higher one came in meanwhile
	}
	m.remote.mu.Lock()
	delete(m.remote.refused, v.Channel)
	m.remote.mu.Unlock()
	return nil
}

func amountOf(v *chain.Voucher) string {
	if v == nil {
		return "none"
	}
	return v.CumulativeAmount.String()
}

// followRemote is the requester's loop: it refreshes its remote jobs'
// states and signs cumulative vouchers for their GPU time every interval,
// and a final one when a job ends.
func (m *Manager) followRemote(ctx context.Context) {
	defer m.remote.stop() // queued jobs stop waiting with the daemon
	m.resumeQueued()
	t := time.NewTicker(m.remote.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.remote.mu.Lock()
		var live []*Record
		for _, rj := range m.remote.jobs {
			if !rj.Settled && !rj.queued() {
				live = append(live, rj)
			}
		}
		m.remote.mu.Unlock()
		channels := map[common.Hash]bool{}
		for _, rj := range live {
			if j, err := m.remoteStatus(ctx, rj); err == nil {
				m.remote.mu.Lock()
				rj.see(j, time.Now())
				m.remote.mu.Unlock()
				if j.State.Terminal() {
					m.endForwards(rj.ID)
				}
				m.rate(rj)
				if err := m.saveRemote(rj); err != nil {
					m.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
				}
				if len(rj.Group) > 1 && j.State.Terminal() && j.State != jobs.Completed {
					// As torchrun does: one rank failing fails the job.
					m.failGroup(ctx, rj.Group, fmt.Sprintf("rank %d on provider %s %s: %s", rj.Rank, rj.Provider, j.State, j.Reason))
				}
			} else {
				m.providerMissing(ctx, rj, err)
			}
			channels[chain.ChannelID(m.wallet.Address(), common.HexToAddress(rj.Deal.ProviderWallet), dealToken(rj.Deal))] = true
		}
		for _, rj := range live {
			id := chain.ChannelID(m.wallet.Address(), common.HexToAddress(rj.Deal.ProviderWallet), dealToken(rj.Deal))
			if channels[id] {
				delete(channels, id)
				m.payChannel(ctx, rj)
			}
		}
	}
}

// rate counts a remote job's end in its provider's reputation, once: a
// completed job is a deal kept; a failure that is not the job's own (no
// exit code: the GPU, the container, the inputs on the provider's side)
// one failed. A job that exited non-zero, timed out, was canceled, or
// was stopped because another rank failed says nothing of the provider.
func (m *Manager) rate(rj *Record) {
	m.remote.mu.Lock()
	j := rj.Last
	if rj.Rated || j == nil || !j.State.Terminal() {
		m.remote.mu.Unlock()
		return
	}
	rj.Rated = true
	m.remote.mu.Unlock()
	switch {
	case j.State == jobs.Completed:
		m.market.Reputation().Completed(rj.Provider)
	case j.State == jobs.Failed && j.ExitCode == nil && !strings.HasPrefix(j.Reason, "another rank failed"):
		m.market.Reputation().Failed(rj.Provider)
	}
}

// providerMissing marks a job unknown when its provider stops answering,
// failed after the grace window (five voucher intervals, at least 10 s),
// and then retries it elsewhere if its spec says so.
func (m *Manager) providerMissing(ctx context.Context, rj *Record, err error) {
	grace := max(5*m.remote.interval, 10*time.Second)
	m.remote.mu.Lock()
	last := *rj.Last
	if last.State.Terminal() {
		m.remote.mu.Unlock()
		return
	}
	// A daemon that was down did not look: the grace starts when it
	// started again, not at the last sight before it went down.
	m.spawnMu.Lock()
	since := rj.LastSeen
	if m.started.After(since) {
		since = m.started
	}
	m.spawnMu.Unlock()
	gone := time.Since(since)
	if gone < grace {
		if last.State != jobs.Unknown {
			last.State, last.Reason = jobs.Unknown, fmt.Sprintf("provider %s not answering: %v", short(rj.Provider), err)
			rj.Last = &last
		}
		m.remote.mu.Unlock()
		if err := m.saveRemote(rj); err != nil {
			m.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
		}
		return
	}
	m.remote.mu.Unlock()
	// The job stays unknown while a retry is arranged, so that whoever
	// watches it sees failed and the retry together.
	reason := fmt.Sprintf("provider %s unreachable for %s", rj.Provider, gone.Round(time.Second))
	var retried string
	if rj.Spec.Retry.Attempts > 0 && len(rj.Group) <= 1 {
		spec := rj.Spec
		spec.Retry.Attempts--
		if j, err := m.queueRemote(&spec, []string{rj.Provider}); err != nil {
			reason += "; retry failed: " + err.Error()
		} else {
			retried = j.ID
			reason += "; retried as " + j.ID
		}
	}
	m.remote.mu.Lock()
	rated := rj.Rated
	rj.Rated = true
	m.remote.mu.Unlock()
	if !rated {
		m.market.Reputation().Failed(rj.Provider)
	}
	m.log.Warn("remote job failed: provider unreachable", "job_id", rj.ID, "provider", rj.Provider, "retried_as", retried)
	now := time.Now().UTC()
	m.remote.mu.Lock()
	last.State, last.Reason, last.FinishedAt = jobs.Failed, reason, &now
	rj.Last, rj.RetriedAs = &last, retried
	rj.Unreachable, rj.Settled = true, true // no more vouchers: paid up to the last sight
	m.remote.mu.Unlock()
	m.endForwards(rj.ID)
	if err := m.saveRemote(rj); err != nil {
		m.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
	}
	if len(rj.Group) > 1 {
		m.failGroup(ctx, rj.Group, fmt.Sprintf("rank %d: %s", rj.Rank, reason))
	}
}

// jobCost is what a job has cost so far: the run time this node saw, at
// the deal's price.
func jobCost(rj *Record) *big.Int { return dealCost(rj.Deal, observedRun(rj, 0)) }

// jobPayable is what this node pays for a job: the run time it saw, plus
// one interval (it polls once an interval, so the job ran up to one
// before it was first seen running), within the deal's maximum duration.
func jobPayable(rj *Record, interval time.Duration) *big.Int {
	return dealCost(rj.Deal, observedRun(rj, interval))
}

// observedRun is the job's run time by this node's own clock: from when
// it first saw the job started to when it saw it end, or last saw it
// (a running job, or one whose provider vanished), plus extra, clamped
// to the deal's maximum duration. The provider's StartedAt and
// FinishedAt count for nothing: a provider could report any.
func observedRun(rj *Record, extra time.Duration) time.Duration {
	j := rj.Last
	if j == nil {
		return 0
	}
	start := rj.RunSeen
	if start.IsZero() {
		if j.StartedAt == nil || rj.LastSeen.IsZero() {
			return 0
		}
		// A record from before RunSeen was kept: the provider's start,
		// never before this node's record of the job was made.
		start = *j.StartedAt
		if !j.CreatedAt.IsZero() && start.Before(j.CreatedAt) {
			start = j.CreatedAt
		}
	}
	end := rj.LastSeen
	if !rj.EndSeen.IsZero() && (end.IsZero() || rj.EndSeen.Before(end)) {
		end = rj.EndSeen
	}
	d := max(end.Sub(start), 0) + extra
	if limit := time.Duration(rj.Deal.MaxDurationS) * time.Second; d > limit {
		d = limit
	}
	return d
}

// payChannel signs and sends the channel's cumulative voucher: every job
// this node ran on it, at its cost so far.
func (m *Manager) payChannel(ctx context.Context, rj *Record) {
	payee, token := common.HexToAddress(rj.Deal.ProviderWallet), dealToken(rj.Deal)
	total := new(big.Int)
	var ended []*Record
	m.remote.mu.Lock()
	for _, o := range m.remote.jobs {
		if common.HexToAddress(o.Deal.ProviderWallet) == payee && dealToken(o.Deal) == token {
			c := jobPayable(o, m.remote.interval)
			o.Vouched = c.String()
			total.Add(total, c)
			if !o.Settled && o.Last != nil && o.Last.State.Terminal() {
				ended = append(ended, o)
			}
		}
	}
	m.remote.mu.Unlock()
	if prev := m.vouchers.get(m.vouchers.data.Signed, chain.ChannelID(m.wallet.Address(), payee, token)); prev != nil && prev.CumulativeAmount.Cmp(total) >= 0 {
		total = prev.CumulativeAmount.Big() // never less than before; resend it
	}
	if total.Sign() == 0 {
		m.remote.mu.Lock()
		for _, o := range ended {
			o.Settled = true // ran for no time: nothing owed
		}
		m.remote.mu.Unlock()
		return
	}
	v, err := m.chain.SignVoucher(payee, token, total)
	if err != nil {
		m.log.Warn("sign voucher", "err", err)
		return
	}
	// Kept before it is sent: a voucher the provider holds and this node
	// forgot would be signed again for less, and the provider refuses less.
	if _, err := m.vouchers.keep(m.vouchers.data.Signed, v); err != nil {
		m.log.Error("voucher not sent: keeping it failed", "provider", rj.Provider, "err", err)
		return
	}
	raw, err := json.Marshal(v)
	if err != nil {
		m.log.Error("voucher not sent", "provider", rj.Provider, "err", err)
		return
	}
	prov, _ := peer.Decode(rj.Provider)
	if _, err := m.request(ctx, prov, wireVoucher, raw); err != nil {
		m.log.Warn("voucher not delivered", "provider", rj.Provider, "err", err)
		return
	}
	tok := token.Hex()
	if token == chain.NativeToken {
		tok = "native"
	}
	m.log.Info("paid: voucher sent", "job_id", rj.ID, "provider", rj.Provider, "channel_total", m.formatAmount(tok, total.String()), "jobs_settled", len(ended))
	m.remote.mu.Lock()
	for _, o := range ended {
		o.Settled = true
	}
	m.remote.mu.Unlock()
	for _, o := range ended {
		if err := m.saveRemote(o); err != nil {
			m.log.Warn("remote job record not saved", "job_id", o.ID, "err", err)
		}
	}
}

func (m *Manager) remoteStatus(ctx context.Context, rj *Record) (*jobs.Job, error) {
	prov, err := peer.Decode(rj.Provider)
	if err != nil {
		return nil, err
	}
	req, _ := json.Marshal(jobIDRequest{ID: rj.remoteID()})
	resp, err := m.request(ctx, prov, wireStatus, req)
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
func (m *Manager) remoteJobByID(ctx context.Context, id string) (*jobs.Job, error) {
	m.remote.mu.Lock()
	rj := m.remote.jobs[id]
	m.remote.mu.Unlock()
	if rj == nil {
		return nil, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	m.remote.mu.Lock()
	queued, settled := rj.queued(), rj.Settled
	m.remote.mu.Unlock()
	if queued {
		m.remote.mu.Lock()
		defer m.remote.mu.Unlock()
		j := *rj.Last
		return &j, nil
	}
	if !settled {
		if j, err := m.remoteStatus(ctx, rj); err == nil {
			m.remote.mu.Lock()
			rj.see(j, time.Now())
			m.remote.mu.Unlock()
		}
	}
	return m.groupView(ctx, rj), nil
}

// groupView is how the requester shows a remote job. Rank 0 of a
// distributed job stands for the whole job, as torchrun's launcher does:
// it is not done until every rank is, a rank's failure is its failure,
// and its result is a directory holding every rank's result by rank
// ("rank-0", "rank-1", ...).
func (m *Manager) groupView(ctx context.Context, rj *Record) *jobs.Job {
	m.remote.mu.Lock()
	if rj.Last == nil || len(rj.Group) < 2 || rj.Rank != 0 {
		defer m.remote.mu.Unlock()
		return rj.Last
	}
	j := *rj.Last
	results := map[string]cid.Cid{}
	var waiting, noResult []string
	for r, id := range rj.Group {
		other := m.remote.jobs[id]
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
	m.remote.mu.Unlock()
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
		dir, err := m.content.Directory(ctx, results)
		if err != nil {
			j.State, j.Reason, j.ResultCID = jobs.Uploading, "making the result directory: "+err.Error(), ""
			return &j
		}
		cached = dir.String()
		m.remote.mu.Lock()
		rj.GroupResult = cached
		m.remote.mu.Unlock()
		if err := m.saveRemote(rj); err != nil {
			m.log.Warn("remote job record not saved", "job_id", rj.ID, "err", err)
		}
	}
	j.ResultCID = cached
	return &j
}

// remoteLogs copies a remote job's output; follow keeps asking until it
// ends. For rank 0 of a distributed job it interleaves every rank's lines,
// each prefixed "[rank N] "; for another rank, that rank's, prefixed.
func (m *Manager) remoteLogs(ctx context.Context, id string, follow bool, w io.Writer) error {
	if err := m.awaitStart(ctx, id, follow); err != nil || ctx.Err() != nil {
		return err
	}
	m.remote.mu.Lock()
	rj := m.remote.jobs[id]
	if rj != nil && rj.queued() {
		m.remote.mu.Unlock()
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
			g := m.remote.jobs[gid]
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
	m.remote.mu.Unlock()
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
				resp, err := m.request(ctx, s.prov, wireLogs, req)
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
func (m *Manager) awaitStart(ctx context.Context, id string, follow bool) error {
	for {
		m.remote.mu.Lock()
		rj := m.remote.jobs[id]
		waiting := rj != nil && rj.queued() && rj.Last != nil && !rj.Last.State.Terminal()
		m.remote.mu.Unlock()
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

// watchClosing is the provider's guard against a payer that closes a
// channel to withdraw: every voucher interval it reads the channels it
// holds vouchers for, and on one that is closing it redeems what it is
// owed at once (the payer may withdraw the rest when the challenge period
// ends) and stops the jobs running on it (nothing more can be paid).
func (m *Manager) watchClosing(ctx context.Context) {
	t := time.NewTicker(m.remote.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.checkClosing(ctx)
	}
}

// checkClosing is one round of watchClosing.
func (m *Manager) checkClosing(ctx context.Context) {
	if m.chain == nil || m.vouchers == nil {
		return
	}
	owed := false
	var closing []common.Hash
	for _, v := range m.vouchers.received() {
		if v.ChainID.Big().Cmp(m.chain.ChainID()) != 0 || v.Escrow != m.chain.Escrow() {
			continue
		}
		ch, err := m.chain.Channel(ctx, v.Payer, v.Payee, v.Token)
		if err != nil || ch.ClosesAt == 0 {
			continue
		}
		closing = append(closing, ch.ID)
		if v.CumulativeAmount.Cmp(ch.Redeemed.Big()) > 0 && v.CumulativeAmount.Cmp(ch.Deposited.Big()) <= 0 {
			owed = true
		}
	}
	if owed {
		res, err := m.RedeemOwed(ctx)
		if err != nil {
			m.log.Error("a payer is closing a channel; redeeming failed, will try again", "err", err)
		} else if res.Receipt != nil {
			m.log.Info("a payer is closing a channel: redeemed at once", "paid_base", res.Paid, "channels", len(res.Vouchers), "tx", res.Receipt.TxHash)
		}
	}
	for _, ch := range closing {
		m.remote.mu.Lock()
		var stop []string
		for id := range m.remote.live {
			if m.providedChannel(m.remote.provided[id]) == ch {
				stop = append(stop, id)
			}
		}
		m.remote.mu.Unlock()
		for _, id := range stop {
			if m.jobs == nil {
				continue
			}
			m.log.Warn("the requester is closing the job's channel; stopping the job", "job_id", id, "channel", ch)
			m.jobs.Fail(id, fmt.Sprintf("the requester started closing channel %s, which pays for the job: it could withdraw what the job earns from now", ch))
		}
	}
}

// autoRedeem is the provider's redeem policy: every interval, one
// transaction for every kept voucher owed more than its channel paid, when
// the total owed reaches the threshold.
func (m *Manager) autoRedeem(ctx context.Context, every time.Duration, above *big.Int) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		owed := new(big.Int)
		for _, v := range m.vouchers.received() {
			ch, err := m.chain.Channel(ctx, v.Payer, v.Payee, v.Token)
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
		res, err := m.RedeemOwed(ctx)
		if err != nil {
			m.log.Warn("timed redeem failed; will try again", "err", err)
			continue
		}
		if res.Receipt == nil {
			m.log.Debug("timed redeem: nothing owed")
			continue
		}
		tok := chain.TokenName(res.Vouchers[0].Token)
		m.log.Info("redeemed vouchers", "paid", m.formatAmount(tok, res.Paid.String()), "paid_base", res.Paid, "channels", len(res.Vouchers), "tx", res.Receipt.TxHash)
	}
}
