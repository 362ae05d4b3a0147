package proof

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aixblock/aixblock/gpu/challenge"
	"github.com/aixblock/aixblock/p2p/p2ptest"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The shared test helpers: hosts on a mocknet, a clock the test moves,
// a provider and its verifiers, and workloads that cheat.

const testNet = "prooftest"

// mockClass is the class honest CPU providers claim in tests.
const mockClass = challenge.MockPrefix + "cpu"

// clock is a test's time: each reading moves it on by step, so that a
// challenge takes step on the verifier's clock whatever the machine's
// speed; Advance moves it by more (a workload that "takes" that long).
type clock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func newClock(step time.Duration) *clock {
	return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), step: step}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

// peek reads the time without moving it: the provider's clock, so that
// only the verifier's readings time a challenge.
func (c *clock) peek() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// world is a provider (host 0) and verifiers (the other hosts).
type world struct {
	hosts []host.Host
	clock *clock // everyone's
	prov  *Provider
	store *Store // the provider's records
}

// newWorld starts a provider running wl under lim, with n verifiers'
// hosts beside it.
func newWorld(t *testing.T, n int, wl Workload, lim Limits) *world {
	t.Helper()
	w := &world{hosts: p2ptest.MockHosts(t, n+1), clock: newClock(time.Second)}
	w.store = newStore(t, StoreConfig{Self: w.hosts[0].ID()})
	p, err := NewProvider(w.hosts[0], testNet, ProviderConfig{Workload: wl, Store: w.store, Limits: lim, Now: w.clock.peek})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	w.prov = p
	return w
}

func (w *world) provider() peer.ID { return w.hosts[0].ID() }

// verifier is host i's verifier, keeping its records in its own store,
// on the world's clock, crediting no round trip.
func (w *world) verifier(t *testing.T, i int) *Verifier {
	t.Helper()
	v, err := NewVerifier(w.hosts[i], testNet, VerifierConfig{
		Store: newStore(t, StoreConfig{Self: w.hosts[i].ID()}),
		Now:   w.clock.Now,
		RTT:   func(context.Context, peer.ID) time.Duration { return 0 },
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newStore(t *testing.T, cfg StoreConfig) *Store {
	t.Helper()
	cfg.Network = testNet
	s, err := OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mockClaim is one mock GPU.
func mockClaim() Claim { return Claim{Class: mockClass, GPUs: []string{"GPU-mock-0"}} }

// workloadFunc is a workload from a function.
type workloadFunc func(ctx context.Context, ch challenge.Challenge, gpus []string) (Prover, error)

func (f workloadFunc) Run(ctx context.Context, ch challenge.Challenge, gpus []string) (Prover, error) {
	return f(ctx, ch, gpus)
}

// committedTo is a prover that committed to c, whatever c is, and opens
// rows from rows (c itself when nil).
func committedTo(t *testing.T, ch challenge.Challenge, c []int32, rows challenge.RowSource) *challenge.Prover {
	t.Helper()
	n := int(ch.N)
	leaves, err := challenge.HashRows(context.Background(), c, n, 0)
	if err != nil {
		t.Error(err)
	}
	if rows == nil {
		rows = challenge.Matrix{N: n, C: c}
	}
	return challenge.NewProver(ch, challenge.NewTree(leaves), rows)
}

// product is the honest C of ch.
func product(t *testing.T, ch challenge.Challenge) []int32 {
	t.Helper()
	c, err := challenge.Multiply(context.Background(), [32]byte(ch.Seed), int(ch.N), 0)
	if err != nil {
		t.Error(err)
	}
	return c
}

// rootOnly is a provider that sends a commitment and cannot answer
// anything after it: it never had the product.
type rootOnly struct{ com challenge.Commitment }

func (r rootOnly) Commitment() challenge.Commitment { return r.com }

func (rootOnly) Answer(context.Context, challenge.Query) (challenge.Answer, error) {
	return challenge.Answer{}, errors.New("no product")
}

func (rootOnly) Open(context.Context, challenge.Open) ([]challenge.Opening, error) {
	return nil, errors.New("no product")
}

func (rootOnly) Close() error { return nil }

// withAnswer is a prover whose y is changed by f.
type withAnswer struct {
	Prover
	f func(challenge.Answer) challenge.Answer
}

func (w withAnswer) Answer(ctx context.Context, q challenge.Query) (challenge.Answer, error) {
	a, err := w.Prover.Answer(ctx, q)
	return w.f(a), err
}

// verify runs one challenge of c and returns its record and error.
func verify(t *testing.T, v *Verifier, p peer.ID, c Claim) (Record, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return v.Verify(ctx, p, c)
}
