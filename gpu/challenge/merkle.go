package challenge

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// The commitment is a Merkle tree over C's rows, as RFC 6962 builds it:
// a leaf is SHA-256(0x00 || row), a node SHA-256(0x01 || left || right),
// so that no leaf can pass for a node. A row is its n entries as int32
// little-endian. Levels pair nodes left to right and carry an odd last
// node up unchanged (never duplicated: a duplicated node would let two
// row counts share a root), which is RFC 6962's tree for any n.

const (
	leafPrefix = 0x00
	nodePrefix = 0x01
)

// ErrNotCommitted marks a row whose proof does not lead to the root the
// prover committed to.
var ErrNotCommitted = errors.New("row not in the commitment")

// EncodeRow is a row's canonical bytes: each entry int32 little-endian.
func EncodeRow(row []int32) []byte {
	b := make([]byte, 4*len(row))
	for j, v := range row {
		binary.LittleEndian.PutUint32(b[4*j:], uint32(v))
	}
	return b
}

// DecodeRow is EncodeRow's inverse; len(b) must be a multiple of 4.
func DecodeRow(b []byte) []int32 {
	row := make([]int32, len(b)/4)
	for j := range row {
		row[j] = int32(binary.LittleEndian.Uint32(b[4*j:]))
	}
	return row
}

// LeafHash hashes a row's canonical bytes as a leaf.
func LeafHash(rowBytes []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{leafPrefix})
	h.Write(rowBytes)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func nodeHash(l, r [32]byte) [32]byte {
	var buf [65]byte
	buf[0] = nodePrefix
	copy(buf[1:], l[:])
	copy(buf[33:], r[:])
	return sha256.Sum256(buf[:])
}

// HashRows returns the leaf hash of each row of the n×n matrix c, on w
// goroutines (zero: GOMAXPROCS).
func HashRows(ctx context.Context, c []int32, n, w int) ([][32]byte, error) {
	leaves := make([][32]byte, n)
	err := parallel(ctx, workers(w), n, func(_, i int) {
		leaves[i] = LeafHash(EncodeRow(c[i*n : (i+1)*n]))
	})
	return leaves, err
}

// Tree is a Merkle tree over leaf hashes, every level kept for proofs.
type Tree struct {
	levels [][][32]byte // levels[0] are the leaves, the last holds the root
}

// NewTree builds the tree over leaves (at least one).
func NewTree(leaves [][32]byte) *Tree {
	t := &Tree{levels: [][][32]byte{leaves}}
	for level := leaves; len(level) > 1; {
		next := make([][32]byte, (len(level)+1)/2)
		for i := range next {
			if 2*i+1 < len(level) {
				next[i] = nodeHash(level[2*i], level[2*i+1])
			} else {
				next[i] = level[2*i]
			}
		}
		t.levels = append(t.levels, next)
		level = next
	}
	return t
}

// Root is the commitment.
func (t *Tree) Root() [32]byte { return t.levels[len(t.levels)-1][0] }

// Leaves is the number of leaves.
func (t *Tree) Leaves() int { return len(t.levels[0]) }

// Proof is the audit path of leaf i: its siblings from the bottom up, 32
// bytes each, levels where the node is carried up having none.
func (t *Tree) Proof(i int) []byte {
	var path []byte
	for _, level := range t.levels[:len(t.levels)-1] {
		if sib := i ^ 1; sib < len(level) {
			path = append(path, level[sib][:]...)
		}
		i /= 2
	}
	return path
}

// VerifyProof checks that leaf is leaf i of the n-leaf tree whose root is
// root, with the audit path path; every sibling must be used, and no
// more.
func VerifyProof(root [32]byte, n, i int, leaf [32]byte, path []byte) error {
	if i < 0 || i >= n {
		return fmt.Errorf("%w: row %d of %d", ErrNotCommitted, i, n)
	}
	h, idx := leaf, i
	for size := n; size > 1; size = (size + 1) / 2 {
		if sib := idx ^ 1; sib < size {
			if len(path) < 32 {
				return fmt.Errorf("%w: row %d: proof ends early", ErrNotCommitted, i)
			}
			s := [32]byte(path[:32])
			path = path[32:]
			if idx%2 == 0 {
				h = nodeHash(h, s)
			} else {
				h = nodeHash(s, h)
			}
		}
		idx /= 2
	}
	if len(path) != 0 {
		return fmt.Errorf("%w: row %d: %d bytes of proof left over", ErrNotCommitted, i, len(path))
	}
	if h != root {
		return fmt.Errorf("%w: row %d does not hash to the committed root", ErrNotCommitted, i)
	}
	return nil
}

// proofBytes is the length of a proof in an n-leaf tree, at most: 32
// bytes per level.
func proofBytes(n int) int {
	d := 0
	for size := n; size > 1; size = (size + 1) / 2 {
		d++
	}
	return 32 * d
}
