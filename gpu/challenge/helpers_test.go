package challenge

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// The shared test helpers: deterministic randomness, a challenge, and
// the whole exchange over the wire.

// testRand is a reproducible stream of random bytes.
func testRand(seed byte) *rand.ChaCha8 {
	return rand.NewChaCha8([32]byte{seed})
}

// newTestVerifier is a verifier of side n with deterministic draws.
func newTestVerifier(t testing.TB, n int, seed byte) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{Params: Params{N: n}, Rand: testRand(seed)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// honest is the CPU prover of v's challenge.
func honest(t testing.TB, v *Verifier) *Prover {
	t.Helper()
	p, err := Compute(context.Background(), v.Challenge(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// product is C = A·B for ch, computed naively: the reference.
func product(t testing.TB, ch Challenge) []int32 {
	t.Helper()
	n := int(ch.N)
	a := newGenerator(ch.seed(), n, matrixA).matrix()
	b := newGenerator(ch.seed(), n, matrixB).matrix()
	c := make([]int32, n*n)
	for i := range n {
		for j := range n {
			var s int32
			for k := range n {
				s += int32(a[i*n+k]) * int32(b[k*n+j])
			}
			c[i*n+j] = s
		}
	}
	return c
}

// committed is a prover that committed to c, whatever c is.
func committed(t testing.TB, ch Challenge, c []int32) *Prover {
	t.Helper()
	n := int(ch.N)
	leaves, err := HashRows(context.Background(), c, n, 0)
	if err != nil {
		t.Fatal(err)
	}
	return NewProver(ch, NewTree(leaves), Matrix{N: n, C: c})
}

// spy passes a provider's calls through, keeping the messages both ways
// and the time the provider spent answering.
type spy struct {
	Provider
	commitment Commitment
	query      Query
	answer     Answer
	open       Open
	openings   []Opening
	spent      time.Duration
}

func (s *spy) Commitment() Commitment {
	s.commitment = s.Provider.Commitment()
	return s.commitment
}

func (s *spy) Answer(ctx context.Context, q Query) (Answer, error) {
	start := time.Now()
	a, err := s.Provider.Answer(ctx, q)
	s.spent += time.Since(start)
	s.query, s.answer = q, a
	return a, err
}

func (s *spy) Open(ctx context.Context, o Open) ([]Opening, error) {
	start := time.Now()
	ops, err := s.Provider.Open(ctx, o)
	s.spent += time.Since(start)
	s.open, s.openings = o, ops
	return ops, err
}
