package challenge

import (
	"context"
	"errors"
	"math/bits"
	"slices"
	"strings"
	"testing"
)

// hostile is a prover with some of its steps replaced.
type hostile struct {
	*Prover
	commit func(Commitment) Commitment
	answer func(Answer) Answer
	open   func([]Opening) []Opening
}

func (h hostile) Commitment() Commitment {
	c := h.Prover.Commitment()
	if h.commit != nil {
		c = h.commit(c)
	}
	return c
}

func (h hostile) Answer(ctx context.Context, q Query) (Answer, error) {
	a, err := h.Prover.Answer(ctx, q)
	if err == nil && h.answer != nil {
		a = h.answer(a)
	}
	return a, err
}

func (h hostile) Open(ctx context.Context, o Open) ([]Opening, error) {
	ops, err := h.Prover.Open(ctx, o)
	if err == nil && h.open != nil {
		ops = h.open(ops)
	}
	return ops, err
}

func TestHonestProverPasses(t *testing.T) {
	for _, n := range []int{40, 64, 100, 257} {
		v := newTestVerifier(t, n, byte(n))
		if err := Exchange(context.Background(), v, honest(t, v)); err != nil {
			t.Errorf("n=%d: honest prover refused: %v", n, err)
		}
	}
}

// testN is large enough for 40 distinct rows and half of them wrong to
// be caught whichever 40 are drawn, and small enough to be instant.
const testN = 128

// tamper returns a copy of c with f applied to each row i for which
// pick(i) holds.
func tamper(c []int32, n int, pick func(i int) bool, f func(row []int32)) []int32 {
	out := slices.Clone(c)
	for i := range n {
		if pick(i) {
			f(out[i*n : (i+1)*n])
		}
	}
	return out
}

// roundSig rounds v to sig significant bits, to nearest even, as a float
// format with sig-1 mantissa bits stores an integer.
func roundSig(v int32, sig int) int32 {
	neg, m := v < 0, uint32(v)
	if neg {
		m = uint32(-v)
	}
	shift := bits.Len32(m) - sig
	if shift <= 0 {
		return v
	}
	q, rem, half := m>>shift, m&(1<<shift-1), uint32(1)<<(shift-1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	if r := int32(q << shift); !neg {
		return r
	} else {
		return -r
	}
}

func TestRoundSig(t *testing.T) {
	for _, tc := range []struct{ v, sig, want int32 }{
		{15, 4, 15}, {17, 4, 16}, {-17, 4, -16}, {19, 4, 20}, {18, 4, 18}, {9, 4, 9}, {33, 4, 32}, {257, 8, 256}, {259, 8, 260},
	} {
		if got := roundSig(tc.v, int(tc.sig)); got != tc.want {
			t.Errorf("roundSig(%d, %d) = %d, want %d", tc.v, tc.sig, got, tc.want)
		}
	}
}

// TestHostileProversFail: each way of not doing the work is refused,
// for the reason that names it.
func TestHostileProversFail(t *testing.T) {
	all := func(int) bool { return true }
	for _, tc := range []struct {
		name    string
		prover  func(t *testing.T, v *Verifier) Provider
		want    error
		message string
	}{
		{"wrong product (B·A)", func(t *testing.T, v *Verifier) Provider {
			return committed(t, v.Challenge(), transpose(product(t, v.Challenge()), testN))
		}, ErrWrongRow, "A·B gives"},
		{"half the rows wrong (half the work)", func(t *testing.T, v *Verifier) Provider {
			c := tamper(product(t, v.Challenge()), testN, func(i int) bool { return i%2 == 1 }, func(r []int32) { r[0]++ })
			return committed(t, v.Challenge(), c)
		}, ErrWrongRow, "column 0"},
		{"lower precision (fp8 e4m3 output, 4 significant bits)", func(t *testing.T, v *Verifier) Provider {
			c := tamper(product(t, v.Challenge()), testN, all, func(r []int32) {
				for j := range r {
					r[j] = roundSig(r[j], 4)
				}
			})
			return committed(t, v.Challenge(), c)
		}, ErrWrongRow, "A·B gives"},
		{"rows computed only when asked", func(t *testing.T, v *Verifier) Provider {
			ch := v.Challenge()
			p := committed(t, ch, make([]int32, testN*testN)) // a root before any work
			p.rows = Recomputed{Seed: ch.seed(), N: testN}    // true rows once asked
			return p
		}, ErrNotCommitted, "does not hash to the committed root"},
		{"wrong y", func(t *testing.T, v *Verifier) Provider {
			return hostile{Prover: honest(t, v), answer: func(a Answer) Answer { a.Y[8*7]++; return a }}
		}, ErrWrongY, "y[7]"},
		{"y of its own product, one row wrong", func(t *testing.T, v *Verifier) Provider {
			ch := v.Challenge()
			c := tamper(product(t, ch), testN, func(i int) bool { return i == 3 }, func(r []int32) { r[5] -= 2 })
			return hostile{Prover: committed(t, ch, c), answer: func(Answer) Answer { return answerOf(mulVec(c, testN, v.r)) }}
		}, ErrWrongY, "y[3]"},
		{"forged proof: a sibling changed", func(t *testing.T, v *Verifier) Provider {
			return hostile{Prover: honest(t, v), open: func(o []Opening) []Opening { o[2].Path[5] ^= 1; return o }}
		}, ErrNotCommitted, "does not hash"},
		{"forged proof: truncated", func(t *testing.T, v *Verifier) Provider {
			return hostile{Prover: honest(t, v), open: func(o []Opening) []Opening { o[0].Path = o[0].Path[:32]; return o }}
		}, ErrNotCommitted, "proof ends early"},
		{"forged proof: another row's, relabelled", func(t *testing.T, v *Verifier) Provider {
			return hostile{Prover: honest(t, v), open: func(o []Opening) []Opening { o[1].Row = o[0].Row; return o[1:] }}
		}, ErrNotCommitted, "does not hash"},
		{"forged row under a true proof", func(t *testing.T, v *Verifier) Provider {
			return hostile{Prover: honest(t, v), open: func(o []Opening) []Opening { o[0].C[0]++; return o }}
		}, ErrNotCommitted, "does not hash"},
		{"replayed commitment of another seed", func(t *testing.T, v *Verifier) Provider {
			return honest(t, newTestVerifier(t, testN, 99))
		}, ErrReplay, "the challenge was seed"},
		{"replayed root under this seed", func(t *testing.T, v *Verifier) Provider {
			old := honest(t, newTestVerifier(t, testN, 99))
			old.ch = v.Challenge() // echoes the seed, answers y for it; the rows are the old product's
			return old
		}, ErrWrongRow, "A·B gives"},
		{"a row not asked", func(t *testing.T, v *Verifier) Provider {
			p := honest(t, v)
			return hostile{Prover: p, open: func(o []Opening) []Opening {
				extra, _ := p.Open(context.Background(), Open{Rows: []uint32{unasked(v)}})
				return append(extra, o...)
			}}
		}, ErrProtocol, "not asked"},
		{"a row given twice", func(t *testing.T, v *Verifier) Provider {
			return hostile{Prover: honest(t, v), open: func(o []Opening) []Opening { return append(o[:1], o...) }}
		}, ErrProtocol, "came twice"},
		{"rows withheld", func(t *testing.T, v *Verifier) Provider {
			return hostile{Prover: honest(t, v), open: func(o []Opening) []Opening { return o[:len(o)-1] }}
		}, ErrProtocol, "39 of 40 rows checked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, testN, 1)
			err := Exchange(context.Background(), v, tc.prover(t, v))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.message)
			}
			if !errors.Is(v.Verdict(), tc.want) && tc.want != ErrProtocol {
				t.Fatalf("verdict %v after %v", v.Verdict(), err)
			}
		})
	}
}

func transpose(c []int32, n int) []int32 {
	out := make([]int32, len(c))
	for i := range n {
		for j := range n {
			out[j*n+i] = c[i*n+j]
		}
	}
	return out
}

// mulVec is c·r mod P, row by row.
func mulVec(c []int32, n int, r []uint64) []uint64 {
	y := make([]uint64, n)
	for i := range y {
		y[i] = dotRow(c[i*n:(i+1)*n], r)
	}
	return y
}

// unasked is a row the verifier will not open.
func unasked(v *Verifier) uint32 {
	for i := range v.cfg.N {
		if !slices.Contains(v.idx, i) {
			return uint32(i)
		}
	}
	panic("every row asked")
}

// TestVerifierOrder: steps out of turn are refused, and a failure sticks.
func TestVerifierOrder(t *testing.T) {
	ctx := context.Background()
	v := newTestVerifier(t, testN, 2)
	p := honest(t, v)
	if _, err := v.Answer(ctx, Answer{}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("answer before commitment: %v", err)
	}
	if _, err := v.Commit(p.Commitment()); !errors.Is(err, ErrProtocol) {
		t.Fatalf("after a failure: %v, want the first failure again", err)
	}
	v = newTestVerifier(t, testN, 2)
	if err := v.Check(Opening{}); !errors.Is(err, ErrProtocol) {
		t.Fatalf("opening before commitment: %v", err)
	}
	v = newTestVerifier(t, testN, 2)
	if err := v.Verdict(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("verdict before anything: %v", err)
	}
}

// TestPrepareWhileProving: the verifier's own work may run beside the
// provider's, and its result is the same.
func TestPrepareWhileProving(t *testing.T) {
	v := newTestVerifier(t, testN, 3)
	done := make(chan error, 1)
	go func() { done <- v.Prepare(context.Background()) }()
	p := honest(t, v)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := Exchange(context.Background(), v, p); err != nil {
		t.Fatal(err)
	}
}

// TestHalfWrongPassRate: with k rows, a product wrong in half its rows
// passes about 2^-k of the time; at k=4, 1/16 (rows drawn without
// replacement from 128 make it 0.059).
func TestHalfWrongPassRate(t *testing.T) {
	ch := newTestVerifier(t, testN, 4).Challenge()
	c := tamper(product(t, ch), testN, func(i int) bool { return i%2 == 0 }, func(r []int32) { r[1]++ })
	passes := 0
	const trials = 400
	for s := range trials {
		v, err := NewVerifier(VerifierConfig{Params: Params{N: testN}, Rows: 4, Rand: testRand(byte(s))})
		if err != nil {
			t.Fatal(err)
		}
		v.ch = ch
		if Exchange(context.Background(), v, committed(t, ch, c)) == nil {
			passes++
		}
	}
	// 0.059 × 400 is 23.6 with σ 4.7: 5 to 50 is over four σ either way.
	if passes < 5 || passes > 50 {
		t.Fatalf("%d of %d passes, want about %.0f", passes, trials, trials*PassBound(0.5, 4))
	}
}
