package lease

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/internal/atomicfile"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/ethereum/go-ethereum/common"
)

// The state both sides keep, and the records that survive a restart.

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
	// GangStartMs is rank 0's: how long the gang start took.
	GangStartMs int64 `json:"gang_start_ms,omitempty"`
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
	// RunUntil is when this node last saw the job running, and Answered
	// when its provider answered the start: the job ended between
	// RunUntil (else Answered) and EndSeen, which bounds what a provider's
	// own account of its run time may claim after a gap in this node's
	// sight (a restart, a sleep).
	RunUntil time.Time `json:"run_until,omitzero"`
	// Prepay is how far this job's vouchers run ahead of its run time
	// (zero: the daemon's payment.prepay); see Manager.ahead.
	Prepay   time.Duration `json:"prepay,omitempty"`
	Answered time.Time     `json:"answered,omitzero"`
	// ProviderAddrs are the addresses of this node's last connection to
	// the provider (its identity checked by the handshake), so that a
	// restarted daemon can reach it again without asking anyone.
	ProviderAddrs []string `json:"provider_addrs,omitempty"`
}

// see records the provider's answer about the job at now (this node's
// clock), and when the job was first seen started and ended.
func (rj *Record) see(j *jobs.Job, now time.Time) {
	if j.PausedMs < 0 {
		j.PausedMs = 0 // a provider's pause only lowers its own pay
	}
	if rj.Last != nil && rj.Last.State.Terminal() && !j.State.Terminal() && !rj.EndSeen.IsZero() {
		// An answer older than the end already seen (two requests
		// crossed): an ended job does not run again.
		return
	}
	rj.Last, rj.LastSeen = j, now
	if j.StartedAt != nil && rj.RunSeen.IsZero() {
		rj.RunSeen = now
	}
	if j.StartedAt != nil && !j.State.Terminal() {
		rj.RunUntil = now
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
	ports        map[int]bool       // provider side: ports given to distributed ranks
	portOf       map[string]int     // provider side: job ID -> its port
	netOf        map[string]netRank // provider side: job ID -> its job network
	interval     time.Duration
	// Queued jobs wait under ctx (the daemon's; followRemote ends it),
	// each with its own cancel.
	ctx     context.Context
	stop    context.CancelFunc
	waiting map[string]context.CancelFunc
	// forwards: requester side, the published ports of service jobs.
	forwards map[string][]*forward
	// edges: requester side, the jobs whose state changes are watched
	// (watchEdges).
	edges map[string]bool
	// Requester side: the deals funded and not yet started (by deal ID),
	// the lock each channel's fundings take turns on, and what each job
	// waiting to start may cost at most (awaitFunds).
	inflight map[string]market.Deal
	funding  map[common.Hash]*sync.Mutex
	awaiting map[string]*big.Int
	// Provider side: the deals whose start is being checked, by channel
	// (depositCovers counts them, so two starts never spend one deposit).
	starting map[string]market.Deal
	// Provider side, during a chain outage: when reads began to fail
	// (zero while they work) and each channel's best voucher not yet
	// checked against its deposit.
	chainDown time.Time
	unchecked map[common.Hash]*chain.Voucher
	// Provider side: when each job paused for want of pay was paused.
	pausedSince map[string]time.Time
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
		ports: map[int]bool{}, portOf: map[string]int{}, netOf: map[string]netRank{}, interval: m.voucherInterval, waiting: map[string]context.CancelFunc{}, forwards: map[string][]*forward{}, edges: map[string]bool{},
		inflight: map[string]market.Deal{}, funding: map[common.Hash]*sync.Mutex{}, awaiting: map[string]*big.Int{}, starting: map[string]market.Deal{}, unchecked: map[common.Hash]*chain.Voucher{}, pausedSince: map[string]time.Time{}}
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
		err = atomicfile.WriteFile(filepath.Join(m.remoteDir(), rj.ID+".json"), b, 0o600)
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

// dealToken is the token a deal pays in. The market checked its name
// before the deal was made; a name that does not parse (a record written
// by hand) gives unparsedToken, which no channel is in, so that such a
// deal is neither funded nor trusted, rather than paid in the native coin.
func dealToken(d market.Deal) common.Address {
	t, err := chain.ParseTokenName(d.Token)
	if err != nil {
		return unparsedToken
	}
	return t
}

var unparsedToken = common.MaxAddress

func newJobID() string {
	var b [8]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
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

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
