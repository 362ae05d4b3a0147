package challenge

import (
	"errors"
	"fmt"
	"math"
)

// Version is carried by every message; others are refused.
const Version = 1

// Limits of a challenge.
const (
	// MaxN bounds the side of the matrices. Exactness needs only
	// |C_ij| <= 4n < 2^24 (n < 2^22, where fp32 accumulation stops being
	// exact); MaxN is far below, above the n that fills eight of the
	// largest cards (about 230k for eight 180 GB cards), and keeps the
	// largest message (a row, 4n bytes; y, 8n bytes) at 4 MiB.
	MaxN = 1 << 19
	// ExactN is the first n at which fp32 accumulation may round: 4n
	// reaches 2^24.
	ExactN = 1 << 22
	// MaxGPUs is the most GPUs one challenge may name.
	MaxGPUs = 64
	// DefaultRows is k, the rows the verifier opens: a product wrong in
	// at least half its rows passes with probability at most 2^-40.
	DefaultRows = 40
	// MaxRows bounds k (RowsFor(0.01, 40) is 2759).
	MaxRows = 4096
	// TestnetN is the n of mock classes: a CPU computes it in well under
	// a second.
	TestnetN = 512
)

// Precision is the input format the verifier times the provider at. The
// entries are small integers, exact in every format, so the product is
// the same whatever the provider uses; the precision only picks the peak
// the envelope's slowest allowed time is computed from.
type Precision string

// Precisions a challenge may name.
const (
	FP16 Precision = "fp16"
	BF16 Precision = "bf16"
	TF32 Precision = "tf32"
	FP32 Precision = "fp32"
)

// inputBytes is the size of one entry of A or B on the GPU.
func (p Precision) inputBytes() uint64 {
	switch p {
	case FP16, BF16:
		return 2
	case TF32, FP32:
		return 4
	}
	return 0
}

// Params is what a verifier asks: the side n of A and B, the GPUs the
// provider claims, the precision it is timed at.
type Params struct {
	N         int
	GPUs      int       // zero: 1
	Precision Precision // zero: FP16
}

// withDefaults fills the zero fields.
func (p Params) withDefaults() Params {
	if p.GPUs == 0 {
		p.GPUs = 1
	}
	if p.Precision == "" {
		p.Precision = FP16
	}
	return p
}

// ErrParams marks parameters no challenge may have.
var ErrParams = errors.New("invalid challenge parameters")

func (p Params) validate() error {
	switch {
	case p.N < 1 || p.N > MaxN:
		return fmt.Errorf("%w: n=%d outside [1, %d]", ErrParams, p.N, MaxN)
	case p.GPUs < 1 || p.GPUs > MaxGPUs:
		return fmt.Errorf("%w: %d GPUs outside [1, %d]", ErrParams, p.GPUs, MaxGPUs)
	case p.Precision.inputBytes() == 0:
		return fmt.Errorf("%w: precision %q: want fp16, bf16, tf32 or fp32", ErrParams, p.Precision)
	}
	return nil
}

// Ops is 2n³, the floating-point operations of the product (a
// multiply-add counts two, as peak figures count them).
func Ops(n int) float64 {
	return 2 * math.Pow(float64(n), 3)
}

// PassBound is the probability that a product wrong in a fraction f of
// its rows passes k row checks: (1-f)^k (rows are drawn without
// replacement, which only lowers it).
func PassBound(f float64, k int) float64 {
	return math.Pow(1-f, float64(k))
}

// RowsFor is the k that holds a product wrong in a fraction f of its
// rows to a pass probability of 2^-bits: ceil(bits / -log2(1-f)).
func RowsFor(f float64, bits int) int {
	return int(math.Ceil(float64(bits) / -math.Log2(1-f)))
}

// Cost compares the two sides' work for n and k rows, in multiply-adds
// and generated entries.
type Cost struct {
	ProverMACs, VerifierMACs float64
	ProverGen, VerifierGen   float64
}

// CostOf is the work of one challenge: the provider n³ multiply-adds and
// 2n² generated entries; the verifier (k+2)n² multiply-adds (B·r, A·(B·r),
// k rows A_i·B) plus k·n for the rows' dot products with r, and 2n² + kn
// generated entries.
func CostOf(n, k int) Cost {
	nf, kf := float64(n), float64(k)
	return Cost{
		ProverMACs:   nf * nf * nf,
		VerifierMACs: (kf+2)*nf*nf + kf*nf,
		ProverGen:    2 * nf * nf,
		VerifierGen:  2*nf*nf + kf*nf,
	}
}

// Fraction is the verifier's work over the provider's, counting a
// generated entry as one multiply-add: about (k+4)/n.
func (c Cost) Fraction() float64 {
	return (c.VerifierMACs + c.VerifierGen) / (c.ProverMACs + c.ProverGen)
}
