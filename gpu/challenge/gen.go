package challenge

import (
	"crypto/sha256"
	"encoding/binary"
)

// SplitMix64's constants. Both sides (this file and nvidia/challenge.py)
// must use exactly these; a change is a new protocol version.
const (
	golden = 0x9E3779B97F4A7C15
	mix1   = 0xBF58476D1CE4E5B9
	mix2   = 0x94D049BB133111EB
)

// Matrix indices in the key derivation.
const (
	matrixA = 0
	matrixB = 1
)

// Domain tags of the hashes that derive keys from seeds.
const (
	matrixTag = "aixblock-challenge/v1/matrix\x00"
	vectorTag = "aixblock-challenge/v1/r\x00"
)

// P is the prime of the Freivalds check: 2^61-1 (Mersenne), so that a
// product reduces with shifts and a wrong y passes with probability 1/P
// per row.
const P = 1<<61 - 1

// generator yields the entries of one matrix of one challenge. Entry c
// (row-major, c = i*n + j) is the (c+1)-th output of SplitMix64 seeded
// with the matrix's key, mapped to [-2, 2] by its high 32 bits mod 5. A
// counter-based generator lets any rows be made in any order, on any
// number of workers or GPUs, with the same result.
type generator struct {
	key uint64
	n   int
}

// newGenerator derives the key of matrix m (matrixA or matrixB): the first
// 8 bytes, little-endian, of SHA-256(tag, seed, n as uint32 LE, m). n is
// in the key so that two sizes of one seed share no entries.
func newGenerator(seed [32]byte, n int, m byte) generator {
	h := sha256.New()
	h.Write([]byte(matrixTag))
	h.Write(seed[:])
	h.Write(binary.LittleEndian.AppendUint32(nil, uint32(n)))
	h.Write([]byte{m})
	return generator{key: binary.LittleEndian.Uint64(h.Sum(nil)), n: n}
}

func splitmix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * mix1
	z = (z ^ (z >> 27)) * mix2
	return z ^ (z >> 31)
}

// small maps a generator output to [-2, 2]. The bias of taking 32 bits
// mod 5 is 2^-32: no entry is ever out of range.
func small(z uint64) int8 {
	return int8((z>>32)%5) - 2
}

// row writes row i into dst (len n).
func (g generator) row(i int, dst []int8) {
	z := g.key + uint64(i)*uint64(g.n)*golden
	for j := range dst[:g.n] {
		z += golden
		dst[j] = small(splitmix(z))
	}
}

// at is one entry, for tests and for single rows.
func (g generator) at(i, j int) int8 {
	return small(splitmix(g.key + (uint64(i)*uint64(g.n)+uint64(j)+1)*golden))
}

// matrix is the whole n×n matrix, row-major.
func (g generator) matrix() []int8 {
	m := make([]int8, g.n*g.n)
	for i := 0; i < g.n; i++ {
		g.row(i, m[i*g.n:(i+1)*g.n])
	}
	return m
}

// vector is the Freivalds vector r in [0, P)^n, expanded from the
// verifier's seed by SHA-256 in counter mode (four 61-bit values per
// block), so that the query carries 32 bytes instead of 8n.
func vector(seed [32]byte, n int) []uint64 {
	r := make([]uint64, n)
	var block [32]byte
	for j := range r {
		if j%4 == 0 {
			h := sha256.New()
			h.Write([]byte(vectorTag))
			h.Write(seed[:])
			h.Write(binary.LittleEndian.AppendUint32(nil, uint32(j/4)))
			h.Sum(block[:0])
		}
		v := binary.LittleEndian.Uint64(block[8*(j%4):]) & P
		if v == P {
			v = 0
		}
		r[j] = v
	}
	return r
}
