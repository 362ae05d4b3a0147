package challenge

import (
	"context"
	"slices"
)

// The verifier never holds A or B: it generates them a row at a time and
// keeps O(k·n) numbers. One sweep over B's rows yields B·r and the k
// rows of C it will check (A_t·B = Σ_k A_tk·B_k); one sweep over A's
// rows then yields y = A·(B·r). That is (k+2)·n² multiply-adds and 2n²
// generated entries, against the provider's n³. An honest prover answers
// with the same sweeps.

// sweepBand is the number of generated rows per task of a sweep.
const sweepBand = 64

// sweepB goes over B's rows once: with r, it returns B·r mod P; with
// aRows (rows of A), it returns aRows[t]·B for each t.
func sweepB(ctx context.Context, seed [32]byte, n, w int, r []uint64, aRows [][]int8) ([]uint64, [][]int32, error) {
	g := newGenerator(seed, n, matrixB)
	var tr [][5]uint64
	var br []uint64
	if r != nil {
		tr, br = scaled(r), make([]uint64, n)
	}
	w = workers(w)
	partial := make([][][]int32, w) // per worker, made on first use
	bands := make([][][]int8, w)
	err := parallel(ctx, w, (n+sweepBand-1)/sweepBand, func(wk, t int) {
		if bands[wk] == nil {
			bands[wk] = zeroBand(sweepBand, n)
			partial[wk] = zeroRows(len(aRows), n)
		}
		k0, k1 := t*sweepBand, min((t+1)*sweepBand, n)
		band := bands[wk][:k1-k0]
		for k := k0; k < k1; k++ {
			g.row(k, band[k-k0])
			if tr != nil {
				br[k] = dotSmall(band[k-k0], tr)
			}
		}
		for i, a := range aRows {
			addCombination(partial[wk][i], band, a[k0:k1])
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return br, sumRows(partial, len(aRows), n), nil
}

func zeroBand(rows, n int) [][]int8 {
	band := make([][]int8, rows)
	for i := range band {
		band[i] = make([]int8, n)
	}
	return band
}

// sweepA goes over A's rows once and returns A·v mod P.
func sweepA(ctx context.Context, seed [32]byte, n, w int, v []uint64) ([]uint64, error) {
	g := newGenerator(seed, n, matrixA)
	tv := scaled(v)
	out := make([]uint64, n)
	w = workers(w)
	bufs := make([][]int8, w)
	err := parallel(ctx, w, (n+sweepBand-1)/sweepBand, func(wk, t int) {
		if bufs[wk] == nil {
			bufs[wk] = make([]int8, n)
		}
		for i := t * sweepBand; i < min((t+1)*sweepBand, n); i++ {
			g.row(i, bufs[wk])
			out[i] = dotSmall(bufs[wk], tv)
		}
	})
	return out, err
}

// freivalds is y = A·(B·r) mod P, and the rows of C named by idx.
func freivalds(ctx context.Context, seed [32]byte, n, w int, r []uint64, idx []int) ([]uint64, [][]int32, error) {
	br, rows, err := sweepB(ctx, seed, n, w, r, rowsOfA(seed, n, idx))
	if err != nil {
		return nil, nil, err
	}
	y, err := sweepA(ctx, seed, n, w, br)
	return y, rows, err
}

// recompute is the rows of C named by idx, from one sweep over B.
func recompute(ctx context.Context, seed [32]byte, n, w int, idx []int) ([][]int32, error) {
	_, rows, err := sweepB(ctx, seed, n, w, nil, rowsOfA(seed, n, idx))
	return rows, err
}

func rowsOfA(seed [32]byte, n int, idx []int) [][]int8 {
	g := newGenerator(seed, n, matrixA)
	rows := make([][]int8, len(idx))
	for t, i := range idx {
		rows[t] = make([]int8, n)
		g.row(i, rows[t])
	}
	return rows
}

func zeroRows(k, n int) [][]int32 {
	rows := make([][]int32, k)
	for i := range rows {
		rows[i] = make([]int32, n)
	}
	return rows
}

// sumRows adds the workers' partial rows (a worker that took no task has
// none).
func sumRows(partial [][][]int32, k, n int) [][]int32 {
	out := zeroRows(k, n)
	for _, p := range slices.DeleteFunc(partial, func(p [][]int32) bool { return p == nil }) {
		for i := range out {
			for j, v := range p[i] {
				out[i][j] += v
			}
		}
	}
	return out
}
