package replica

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aixblock/aixblock/internal/atomicfile"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/node/api"
)

// Lease is what checking needs of the requester's side of the lease.
type Lease interface {
	// Submit queues spec for the market, never on a provider that shares
	// a peer ID, wallet or public IP with those owners holds (the one it
	// gets is held there too), with holdbackBps of its pay held back
	// until Settle.
	Submit(ctx context.Context, spec *jobs.Spec, owners Owners, holdbackBps int) (*api.Job, error)
	// SubmitTogether is Submit for k runs dealt for from one offer, each
	// on its own provider.
	SubmitTogether(ctx context.Context, spec *jobs.Spec, k int, owners Owners, holdbackBps int) ([]*api.Job, error)
	// Settle gives the verdict on an ended run (one of the Verdict
	// constants), which pays or withholds its held-back pay.
	Settle(ctx context.Context, id, verdict string) error
	Get(ctx context.Context, id string) (*api.Job, error)
	Cancel(ctx context.Context, id string) (*api.Job, error)
}

// Owners holds the owners of a group's runs: their providers' peer IDs,
// payee wallets and public IPs (the node's is a market.Apart, whose
// claims at award time keep runs negotiated at once apart).
type Owners interface {
	Hold(peerID, wallet, ip string)
	// Claim holds a provider, or says why not: it shares an owner.
	Claim(peerID, wallet, ip string) string
	Peers() []string
}

// ownerSet is the Owners of a checker whose config names none.
type ownerSet struct {
	mu   sync.Mutex
	held map[string]string // "peer:ID", "wallet:0x..", "ip:A" -> why another may not
}

func (o *ownerSet) Hold(peerID, wallet, ip string) { o.Claim(peerID, wallet, ip) }

func (o *ownerSet) Claim(peerID, wallet, ip string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	keys := map[string]string{"peer:" + peerID: "it runs another run", "wallet:" + strings.ToLower(wallet): "its wallet is paid for another run",
		"ip:" + ip: "its address runs another run"}
	for k, why := range keys {
		if o.held[k] != "" && !strings.HasSuffix(k, ":") {
			return why
		}
	}
	if o.held == nil {
		o.held = map[string]string{}
	}
	for k := range keys {
		if !strings.HasSuffix(k, ":") {
			o.held[k] = "held"
		}
	}
	return ""
}

func (o *ownerSet) Peers() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for k := range o.held {
		if p, ok := strings.CutPrefix(k, "peer:"); ok {
			out = append(out, p)
		}
	}
	return out
}

// Config is the checker's; Dir and Lease are required.
type Config struct {
	// Dir keeps one file per checked job.
	Dir   string
	Lease Lease
	// Digest, when set, is the digest of a result's named outputs (a
	// spec's verify.outputs); without it those specs compare result CIDs.
	Digest func(ctx context.Context, resultCID string, paths []string) (string, error)
	// Compare, when set, runs a spec's verify.comparator on two results
	// (by CID): equal when it exits 0, an error when it could not say.
	Compare func(ctx context.Context, c *jobs.Comparator, a, b string) (equal bool, err error)
	// Outvoted hears of each provider whose result a majority outvoted,
	// and of each spot check it failed (the market's reputation).
	Outvoted func(provider, jobID string)
	// Owners makes the set a group's runs are kept apart by; zero: one
	// of this package's, for a Lease that checks it itself.
	Owners func() Owners
	// Poll is how often runs are read (from the lease's records, which
	// it keeps up to date itself); zero: 100 ms (a replicated job ends at
	// most this long after its last run).
	Poll time.Duration
	// Rand draws spot checks; zero: math/rand.
	Rand func() float64
	Log  *slog.Logger
}

// Modes of a checked job.
const (
	ModeReplicas = "replicas"
	ModeSample   = "sample"
)

// Group is a checked job: its runs and what they came to.
type Group struct {
	ID   string    `json:"id"`
	Spec jobs.Spec `json:"spec"`
	Mode string    `json:"mode"`
	// Want is the runs that must agree in mode replicas; two in a check.
	Want     int       `json:"want"`
	Replicas []Replica `json:"replicas"`
	// State is running, then completed (a majority agreed) or failed;
	// for a spot check it is the check's, not the original job's.
	State     jobs.State `json:"state"`
	ResultCID string     `json:"result_cid,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	// Checked says whether a sampled job was drawn for a check.
	Checked bool `json:"checked"`
	// Comparisons are the comparator's runs, each with its cost.
	Comparisons []Comparison `json:"comparisons,omitempty"`
	CreatedAt   time.Time    `json:"created_at"`
	EndedAt     time.Time    `json:"ended_at,omitzero"`
}

// Checker runs replicated and spot-checked jobs.
type Checker struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	groups map[string]*Group
	// byJob finds the group a run belongs to.
	byJob map[string]string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New loads the checked jobs of dir and resumes those under way.
func New(cfg Config) (*Checker, error) {
	if cfg.Owners == nil {
		cfg.Owners = func() Owners { return &ownerSet{} }
	}
	if cfg.Poll == 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.Rand == nil {
		cfg.Rand = mrand.Float64
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Checker{cfg: cfg, log: cfg.Log.With("component", "verify"), groups: map[string]*Group{},
		byJob: map[string]string{}, ctx: ctx, cancel: cancel}
	if err := c.load(); err != nil {
		cancel()
		return nil, err
	}
	return c, nil
}

// Close stops following; what is under way resumes at the next New.
func (c *Checker) Close() {
	c.cancel()
	c.wg.Wait()
}

func (c *Checker) load() error {
	ents, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(c.cfg.Dir, e.Name()))
		if err != nil {
			return fmt.Errorf("replica: %w", err)
		}
		var g Group
		if err := json.Unmarshal(b, &g); err != nil {
			c.log.Warn("a checked job's record does not read; skipped", "file", e.Name(), "err", err)
			continue
		}
		c.track(&g)
		if !g.State.Terminal() || g.unjudged() {
			c.follow(&g)
		}
	}
	return nil
}

func (c *Checker) track(g *Group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.groups[g.ID] = g
	for _, r := range g.Replicas {
		c.byJob[r.JobID] = g.ID
	}
}

// Replicate runs spec on spec.Verify.Replicas providers at once, and
// returns the checked job at once. The runs share one Owners, so
// that however their negotiations interleave no two go to providers
// sharing a peer ID, wallet or public IP.
func (c *Checker) Replicate(ctx context.Context, spec *jobs.Spec) (*Group, error) {
	g := &Group{ID: newID(), Spec: *spec, Mode: ModeReplicas, Want: spec.Verify.Replicas, State: jobs.Running,
		CreatedAt: time.Now().UTC()}
	runs, err := c.cfg.Lease.SubmitTogether(ctx, runSpec(spec), g.Want, c.cfg.Owners(), spec.Verify.HoldbackBps())
	if err != nil {
		return nil, err
	}
	for _, j := range runs {
		g.Replicas = append(g.Replicas, Replica{JobID: j.ID, Role: "replica", State: j.State, Outcome: Pending})
	}
	return c.start(g)
}

// runSpec is one run of a checked job: an ordinary job that the group
// checks. It is not retried on its own: a retry would go to a provider
// the group did not keep apart, and a run that fails is replaced by the
// group (a tie-breaker) anyway.
func runSpec(spec *jobs.Spec) *jobs.Spec {
	run := *spec
	run.Verify, run.Retry = nil, jobs.Retry{}
	return &run
}

// Sample watches a market job submitted with verify.sample: once its
// result is in, a draw decides whether another provider runs it again.
func (c *Checker) Sample(j *api.Job) (*Group, error) {
	g := &Group{ID: j.ID, Spec: j.Spec, Mode: ModeSample, Want: 2, State: jobs.Running, CreatedAt: time.Now().UTC(),
		Replicas: []Replica{{JobID: j.ID, Role: "original", State: j.State, Outcome: Pending}}}
	return c.start(g)
}

func (c *Checker) start(g *Group) (*Group, error) {
	if err := c.save(g); err != nil {
		return nil, err
	}
	id := g.ID // g is the checker's from here, written under its lock
	c.track(g)
	c.follow(g)
	return c.snapshot(id), nil
}

// Get is the checked job id, or of which run id is, if any.
func (c *Checker) Get(id string) (*Group, bool) {
	c.mu.Lock()
	gid, ok := c.byJob[id]
	if _, own := c.groups[id]; own {
		gid, ok = id, true
	}
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	return c.snapshot(gid), true
}

// IsGroup says whether id names a replicated job of its own (not a run).
func (c *Checker) IsGroup(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[id]
	return g != nil && g.Mode == ModeReplicas
}

// Cancel cancels every run of a replicated job that has not ended.
func (c *Checker) Cancel(ctx context.Context, id string) (*Group, error) {
	g, ok := c.Get(id)
	if !ok {
		return nil, fmt.Errorf("%w: %s", jobs.ErrNotFound, id)
	}
	c.mu.Lock()
	if cur := c.groups[g.ID]; !cur.State.Terminal() {
		c.end(cur, jobs.Canceled, "canceled")
	}
	c.mu.Unlock()
	if err := c.save(c.snapshot(g.ID)); err != nil {
		c.log.Warn("canceled job not saved", "job_id", g.ID, "err", err)
	}
	var errs []error
	for _, r := range g.Replicas {
		if !r.done() {
			if _, err := c.cfg.Lease.Cancel(ctx, r.JobID); err != nil && !errors.Is(err, jobs.ErrFinished) {
				errs = append(errs, err)
			}
		}
	}
	return g, errors.Join(errs...)
}

func (c *Checker) snapshot(id string) *Group {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := *c.groups[id]
	g.Replicas = slices.Clone(g.Replicas)
	return &g
}

func (c *Checker) save(g *Group) error {
	c.mu.Lock()
	b, err := json.MarshalIndent(g, "", "  ")
	c.mu.Unlock()
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(c.cfg.Dir, g.ID+".json"), b, 0o600)
	}
	if err != nil {
		return fmt.Errorf("save checked job %s: %w", g.ID, err)
	}
	return nil
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
