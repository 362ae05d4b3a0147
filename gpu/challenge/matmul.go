package challenge

import (
	"context"
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
)

// Blocking of the CPU product: a task is a band of rowBand rows of C;
// within it the k dimension goes in blocks of kBlock rows of B (kBlock·n
// bytes, which stay in cache while the band's rows reuse them).
const (
	rowBand = 16
	kBlock  = 128
)

// workers is n, or GOMAXPROCS when n is zero or less.
func workers(n int) int {
	if n <= 0 {
		return runtime.GOMAXPROCS(0)
	}
	return n
}

// parallel runs fn over [0, tasks) on w goroutines that take tasks in
// order from a shared counter, and waits for all of them. It stops
// handing out tasks once ctx is done and returns ctx's error then.
func parallel(ctx context.Context, w, tasks int, fn func(worker, task int)) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	for wk := range min(w, tasks) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t := int(next.Add(1)) - 1
				if t >= tasks {
					return
				}
				fn(wk, t)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("challenge: %w", err)
	}
	return nil
}

// Multiply computes C = A·B for the challenge's seed and n, exactly, on
// the CPU: A and B generated as int8, C accumulated in int32 (|C_ij| <=
// 4n, far inside int32 for every n <= MaxN). w goroutines (zero:
// GOMAXPROCS) share the rows; all are waited for, also when ctx ends.
func Multiply(ctx context.Context, seed [32]byte, n, w int) ([]int32, error) {
	a := newGenerator(seed, n, matrixA).matrix()
	b := newGenerator(seed, n, matrixB).matrix()
	c := make([]int32, n*n)
	bands := (n + rowBand - 1) / rowBand
	err := parallel(ctx, workers(w), bands, func(_, t int) {
		multiplyBand(a, b, c, n, t*rowBand, min((t+1)*rowBand, n))
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// multiplyBand accumulates rows [i0, i1) of C, one block of B's rows at
// a time.
func multiplyBand(a, b []int8, c []int32, n, i0, i1 int) {
	bRows := make([][]int8, n)
	for k := range bRows {
		bRows[k] = b[k*n : (k+1)*n]
	}
	for k0 := 0; k0 < n; k0 += kBlock {
		k1 := min(k0+kBlock, n)
		for i := i0; i < i1; i++ {
			addCombination(c[i*n:(i+1)*n], bRows[k0:k1], a[i*n+k0:i*n+k1])
		}
	}
}

// addCombination adds Σ_k s[k]·rows[k] to c, four rows at a time: one
// load and store of c per four multiply-adds instead of per one (1.7
// times faster here).
func addCombination(c []int32, rows [][]int8, s []int8) {
	k := 0
	for ; k+4 <= len(rows); k += 4 {
		add4(c, rows[k:k+4], s[k:k+4])
	}
	for ; k < len(rows); k++ {
		addScaled(c, rows[k], s[k])
	}
}

func add4(c []int32, rows [][]int8, s []int8) {
	n := len(c)
	b0, b1, b2, b3 := rows[0][:n], rows[1][:n], rows[2][:n], rows[3][:n]
	s0, s1, s2, s3 := int32(s[0]), int32(s[1]), int32(s[2]), int32(s[3])
	for j := range c {
		c[j] += s0*int32(b0[j]) + s1*int32(b1[j]) + s2*int32(b2[j]) + s3*int32(b3[j])
	}
}

// addScaled adds s·b to c, with s in [-2, 2].
func addScaled(c []int32, b []int8, s int8) {
	if s == 0 {
		return
	}
	c = c[:len(b)]
	m := int32(s)
	for j, v := range b {
		c[j] += m * int32(v)
	}
}

// Arithmetic mod P, on values in [0, P).

func addMod(a, b uint64) uint64 {
	s := a + b
	if s >= P {
		s -= P
	}
	return s
}

// mulMod uses 2^61 ≡ 1 (mod P): the 122-bit product folds into its low
// 61 bits plus the rest.
func mulMod(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return addMod(lo&P, hi<<3|lo>>61)
}

// toMod maps an integer to [0, P).
func toMod(v int64) uint64 {
	if v >= 0 {
		return uint64(v) % P
	}
	return (P - uint64(-v)%P) % P
}

// scaled is, for each j, s·v_j mod P for s = -2..2 (index s+2): a dot
// product of a small row with v is then n table reads and additions.
func scaled(v []uint64) [][5]uint64 {
	t := make([][5]uint64, len(v))
	for j, x := range v {
		x2 := addMod(x, x)
		t[j] = [5]uint64{(P - x2) % P, (P - x) % P, 0, x, x2}
	}
	return t
}

// dotSmall is row·v mod P, with t = scaled(v).
func dotSmall(row []int8, t [][5]uint64) uint64 {
	var acc uint64
	t = t[:len(row)]
	for j, s := range row {
		acc = addMod(acc, t[j][s+2])
	}
	return acc
}

// dotRow is row·r mod P for a row of C.
func dotRow(row []int32, r []uint64) uint64 {
	var acc uint64
	r = r[:len(row)]
	for j, c := range row {
		acc = addMod(acc, mulMod(toMod(int64(c)), r[j]))
	}
	return acc
}
