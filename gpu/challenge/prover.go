package challenge

import (
	"context"
	"fmt"
	"io"
)

// RowSource gives rows of the provider's C when the verifier opens them.
type RowSource interface {
	Rows(ctx context.Context, idx []int) ([][]int32, error)
}

// Matrix is C held in memory, row-major.
type Matrix struct {
	N int
	C []int32
}

// Rows copies the rows named by idx.
func (m Matrix) Rows(_ context.Context, idx []int) ([][]int32, error) {
	out := make([][]int32, len(idx))
	for t, i := range idx {
		out[t] = append([]int32(nil), m.C[i*m.N:(i+1)*m.N]...)
	}
	return out, nil
}

// Recomputed makes the rows asked again from the seed, k rows in one
// sweep over B (k·n² multiply-adds, what the verifier spends too). A
// provider that committed to all of C may answer this way instead of
// keeping C (16 GiB at n = 65536): a row made now matches the root only
// if the committed one was right.
type Recomputed struct {
	Seed    [32]byte
	N       int
	Workers int // zero: GOMAXPROCS
}

// Rows recomputes the rows named by idx.
func (r Recomputed) Rows(ctx context.Context, idx []int) ([][]int32, error) {
	return recompute(ctx, r.Seed, r.N, r.Workers, idx)
}

// Prover answers one challenge from a commitment it has made: the tree
// over C's rows and a source of the rows themselves.
type Prover struct {
	ch      Challenge
	tree    *Tree
	rows    RowSource
	closer  io.Closer
	Workers int // for y; zero: GOMAXPROCS
}

// NewProver answers ch with tree (over C's rows) and rows.
func NewProver(ch Challenge, tree *Tree, rows RowSource) *Prover {
	return &Prover{ch: ch, tree: tree, rows: rows}
}

// Compute multiplies on the CPU, commits, and returns a prover that
// keeps C in memory; w goroutines (zero: GOMAXPROCS).
func Compute(ctx context.Context, ch Challenge, w int) (*Prover, error) {
	n := int(ch.N)
	c, err := Multiply(ctx, ch.seed(), n, w)
	if err != nil {
		return nil, err
	}
	leaves, err := HashRows(ctx, c, n, w)
	if err != nil {
		return nil, err
	}
	return &Prover{ch: ch, tree: NewTree(leaves), rows: Matrix{N: n, C: c}, Workers: w}, nil
}

// Commitment is the message that ends the timed part.
func (p *Prover) Commitment() Commitment {
	root := p.tree.Root()
	return Commitment{V: Version, Seed: p.ch.Seed, N: p.ch.N, Root: root[:]}
}

// Answer computes y = C·r mod P. An honest C is A·B, so y is A·(B·r):
// two sweeps, O(n²), whatever holds the rows.
func (p *Prover) Answer(ctx context.Context, q Query) (Answer, error) {
	n := int(p.ch.N)
	y, _, err := freivalds(ctx, p.ch.seed(), n, p.Workers, vector(seedOf(q.R), n), nil)
	if err != nil {
		return Answer{}, fmt.Errorf("challenge: answer: %w", err)
	}
	return answerOf(y), nil
}

// Open returns the rows asked with their proofs.
func (p *Prover) Open(ctx context.Context, o Open) ([]Opening, error) {
	idx := make([]int, len(o.Rows))
	for t, i := range o.Rows {
		idx[t] = int(i)
	}
	rows, err := p.rows.Rows(ctx, idx)
	if err != nil {
		return nil, fmt.Errorf("challenge: open: %w", err)
	}
	out := make([]Opening, len(idx))
	for t, i := range idx {
		out[t] = Opening{V: Version, Row: uint32(i), C: EncodeRow(rows[t]), Path: p.tree.Proof(i)}
	}
	return out, nil
}

// Close releases the rows' file, if the prover read an output directory.
func (p *Prover) Close() error {
	if p.closer == nil {
		return nil
	}
	return p.closer.Close()
}
