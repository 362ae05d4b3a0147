package challenge

import (
	"crypto/sha256"
	"errors"
	"math/bits"
	"slices"
	"testing"
)

// rfc6962 is RFC 6962's recursive definition of the tree hash, the
// reference for the level-by-level tree.
func rfc6962(leaves [][32]byte) [32]byte {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1 << (bits.Len(uint(len(leaves)-1)) - 1) // largest power of two < n
	return nodeHash(rfc6962(leaves[:k]), rfc6962(leaves[k:]))
}

func testLeaves(n int) [][32]byte {
	leaves := make([][32]byte, n)
	for i := range leaves {
		leaves[i] = LeafHash(EncodeRow([]int32{int32(i), -int32(i)}))
	}
	return leaves
}

func TestTreeProofs(t *testing.T) {
	for n := 1; n <= 70; n++ {
		leaves := testLeaves(n)
		tree := NewTree(leaves)
		if tree.Root() != rfc6962(leaves) {
			t.Fatalf("n=%d: root differs from RFC 6962's", n)
		}
		for i := range n {
			path := tree.Proof(i)
			if len(path) > proofBytes(n) {
				t.Fatalf("n=%d: proof of %d bytes over %d", n, len(path), proofBytes(n))
			}
			if err := VerifyProof(tree.Root(), n, i, leaves[i], path); err != nil {
				t.Fatalf("n=%d row %d: %v", n, i, err)
			}
			checkForgeries(t, tree, n, i, leaves)
		}
	}
}

// checkForgeries: any change to a proof, its leaf or its index fails.
func checkForgeries(t *testing.T, tree *Tree, n, i int, leaves [][32]byte) {
	t.Helper()
	root, path := tree.Root(), tree.Proof(i)
	forged := map[string]func() error{
		"another leaf": func() error { return VerifyProof(root, n, i, LeafHash(nil), path) },
		"index out of range": func() error {
			return VerifyProof(root, n, n, leaves[i], path)
		},
		"a sibling more": func() error { return VerifyProof(root, n, i, leaves[i], append(slices.Clone(path), root[:]...)) },
	}
	if n > 1 {
		forged["another index"] = func() error { return VerifyProof(root, n, (i+1)%n, leaves[i], path) }
		forged["a sibling less"] = func() error { return VerifyProof(root, n, i, leaves[i], path[32:]) }
		forged["a bit flipped"] = func() error {
			p := slices.Clone(path)
			p[len(p)-1] ^= 0x80
			return VerifyProof(root, n, i, leaves[i], p)
		}
	}
	for name, f := range forged {
		if err := f(); !errors.Is(err, ErrNotCommitted) {
			t.Fatalf("n=%d row %d, %s: %v", n, i, name, err)
		}
	}
}

// TestLeafNodeSeparation: a node's two children hashed as a leaf's bytes
// do not give the node, so no inner node can be opened as a row.
func TestLeafNodeSeparation(t *testing.T) {
	leaves := testLeaves(2)
	root := NewTree(leaves).Root()
	both := append(leaves[0][:], leaves[1][:]...)
	if LeafHash(both) == root || sha256.Sum256(both) == root {
		t.Fatal("a leaf hashes like a node")
	}
	if err := VerifyProof(root, 1, 0, LeafHash(both), nil); !errors.Is(err, ErrNotCommitted) {
		t.Fatalf("a node opened as a one-row tree: %v", err)
	}
}

func TestRowEncoding(t *testing.T) {
	row := []int32{0, 1, -1, 1 << 30, -(1 << 31)}
	b := EncodeRow(row)
	if len(b) != 20 || b[4] != 1 || b[8] != 0xff || b[19] != 0x80 {
		t.Fatalf("encoding % x", b)
	}
	if !slices.Equal(DecodeRow(b), row) {
		t.Fatal("decode differs")
	}
}
