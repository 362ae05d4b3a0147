package challenge

import (
	"context"
	"math/big"
	"slices"
	"testing"
)

// TestSplitMixReference: entry 0 of key 0 is SplitMix64's first output
// from state 0, the reference value every implementation publishes.
func TestSplitMixReference(t *testing.T) {
	if got := splitmix(golden); got != 0xE220A8397B1DCDAF {
		t.Fatalf("splitmix64(0) first output %#x", got)
	}
}

// TestGeneratorPinned pins the generator: nvidia/challenge.py must give
// these entries too, and a change here is a new protocol version.
func TestGeneratorPinned(t *testing.T) {
	seed := [32]byte{1, 2, 3}
	a, b := newGenerator(seed, 4, matrixA), newGenerator(seed, 4, matrixB)
	if got, want := a.matrix(), []int8{1, 2, -1, 2, 0, -1, 0, 2, -1, -2, -2, -2, 2, 1, -1, 1}; !slices.Equal(got, want) {
		t.Errorf("A = %v, want %v", got, want)
	}
	if got, want := b.matrix(), []int8{-1, -2, 0, 0, -1, 0, 1, 0, -2, 1, 1, 1, 0, 2, 1, 2}; !slices.Equal(got, want) {
		t.Errorf("B = %v, want %v", got, want)
	}
}

func TestGenerator(t *testing.T) {
	seed := [32]byte{7}
	const n = 300
	g := newGenerator(seed, n, matrixA)
	m := g.matrix()
	counts := map[int8]int{}
	for i := range n {
		for j := range n {
			if m[i*n+j] != g.at(i, j) {
				t.Fatalf("row(%d)[%d] = %d, at = %d", i, j, m[i*n+j], g.at(i, j))
			}
			counts[m[i*n+j]]++
		}
	}
	// Uniform on [-2, 2]: 18000 each, σ about 120.
	for v := int8(-2); v <= 2; v++ {
		if c := counts[v]; c < 17400 || c > 18600 {
			t.Errorf("%d drawn %d times of %d", v, c, n*n)
		}
	}
	if len(counts) != 5 {
		t.Errorf("values drawn: %v", counts)
	}
	for _, other := range []generator{newGenerator(seed, n, matrixB), newGenerator([32]byte{8}, n, matrixA), newGenerator(seed, n+1, matrixA)} {
		if other.key == g.key {
			t.Errorf("two matrices share key %#x", g.key)
		}
	}
}

func TestVector(t *testing.T) {
	r := vector([32]byte{9}, 1001)
	if !slices.Equal(r, vector([32]byte{9}, 1001)) || slices.Equal(r, vector([32]byte{10}, 1001)) {
		t.Fatal("r is not a function of its seed")
	}
	if r[1000] == 0 || r[0] == r[1] {
		t.Fatalf("r looks constant: %v", r[:4])
	}
	for j, v := range r {
		if v >= P {
			t.Fatalf("r[%d] = %d not below P", j, v)
		}
	}
}

// TestModArithmetic checks mulMod, toMod and the small dot products
// against math/big.
func TestModArithmetic(t *testing.T) {
	rnd := testRand(5)
	p := big.NewInt(P)
	for range 2000 {
		a, b := randMod(rnd), randMod(rnd)
		want := new(big.Int).Mod(new(big.Int).Mul(new(big.Int).SetUint64(a), new(big.Int).SetUint64(b)), p)
		if got := mulMod(a, b); got != want.Uint64() {
			t.Fatalf("mulMod(%d, %d) = %d, want %d", a, b, got, want)
		}
	}
	for _, v := range []int64{0, 1, -1, P, -P, P + 5, -(P + 5), 1 << 62, -(1 << 62)} {
		want := new(big.Int).Mod(big.NewInt(v), p).Uint64()
		if got := toMod(v); got != want {
			t.Errorf("toMod(%d) = %d, want %d", v, got, want)
		}
	}
	row := []int8{-2, -1, 0, 1, 2, 2, -2}
	v := []uint64{P - 1, P - 2, 5, P - 1, P - 3, 1, 0}
	want := big.NewInt(0)
	for j := range row {
		want.Add(want, new(big.Int).Mul(big.NewInt(int64(row[j])), new(big.Int).SetUint64(v[j])))
	}
	if got := dotSmall(row, scaled(v)); got != want.Mod(want, p).Uint64() {
		t.Fatalf("dotSmall = %d, want %d", got, want)
	}
}

func randMod(rnd interface{ Uint64() uint64 }) uint64 {
	return rnd.Uint64() % P
}

// TestMultiply: the blocked, parallel product equals the naive one, for
// sizes that are not multiples of the blocks, on one goroutine or many.
func TestMultiply(t *testing.T) {
	for _, n := range []int{1, 3, 17, 130, 257} {
		ch := Challenge{Seed: make([]byte, 32), N: uint32(n)}
		ch.Seed[0] = byte(n)
		want := product(t, ch)
		for _, w := range []int{1, 3, 0} {
			got, err := Multiply(context.Background(), ch.seed(), n, w)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("n=%d w=%d: product differs", n, w)
			}
		}
	}
}

func TestMultiplyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Multiply(ctx, [32]byte{}, 64, 2); err == nil {
		t.Fatal("a cancelled product returned no error")
	}
}

// TestSweeps: y from the sweeps is C·r, and recomputed rows are C's.
func TestSweeps(t *testing.T) {
	const n = 131
	ch := Challenge{Seed: make([]byte, 32), N: n}
	c := product(t, ch)
	r := vector([32]byte{4}, n)
	idx := []int{0, 77, 130}
	y, rows, err := freivalds(context.Background(), ch.seed(), n, 3, r, idx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(y, mulVec(c, n, r)) {
		t.Fatal("A·(B·r) differs from C·r")
	}
	again, err := recompute(context.Background(), ch.seed(), n, 2, idx)
	if err != nil {
		t.Fatal(err)
	}
	for t2, i := range idx {
		if !slices.Equal(rows[t2], c[i*n:(i+1)*n]) || !slices.Equal(again[t2], rows[t2]) {
			t.Fatalf("row %d differs", i)
		}
	}
}
