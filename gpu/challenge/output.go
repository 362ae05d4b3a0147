package challenge

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/aixblock/aixblock/internal/atomicfile"
)

// The workload's output directory, the same from the CPU program
// (cmd/challenge) and the GPU script (nvidia/challenge.py), byte for byte:
const (
	// LeavesFile holds the n leaf hashes, 32 bytes each, in row order.
	LeavesFile = "leaves.bin"
	// RowsFile holds C, row after row, each EncodeRow's bytes (4n² bytes
	// in all); optional, since a provider may recompute opened rows.
	RowsFile = "rows.bin"
	// RootFile holds the root as 64 lowercase hex digits and a newline.
	// It is written last: once it is there, the rest is complete.
	RootFile = "root.hex"
)

// WriteOutput writes the commitment of the n×n product c to dir, and c
// itself when withRows is set.
func WriteOutput(dir string, n int, c []int32, leaves [][32]byte, withRows bool) error {
	flat := make([]byte, 0, 32*len(leaves))
	for _, l := range leaves {
		flat = append(flat, l[:]...)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, LeavesFile), flat, 0o644); err != nil {
		return fmt.Errorf("challenge: %w", err)
	}
	if withRows {
		if err := atomicfile.WriteFile(filepath.Join(dir, RowsFile), EncodeRow(c), 0o644); err != nil {
			return fmt.Errorf("challenge: %w", err)
		}
	}
	root := NewTree(leaves).Root()
	line := hex.EncodeToString(root[:]) + "\n"
	if err := atomicfile.WriteFile(filepath.Join(dir, RootFile), []byte(line), 0o644); err != nil {
		return fmt.Errorf("challenge: %w", err)
	}
	return nil
}

// OpenOutput reads a workload's output directory for ch: the tree from
// its leaves, which must hash to its root, and the rows from its rows
// file, or recomputed when it has none. Close the prover when done.
func OpenOutput(dir string, ch Challenge) (*Prover, error) {
	n := int(ch.N)
	root, err := readRoot(filepath.Join(dir, RootFile))
	if err != nil {
		return nil, err
	}
	tree, err := readTree(filepath.Join(dir, LeavesFile), n)
	if err != nil {
		return nil, err
	}
	if tree.Root() != root {
		return nil, fmt.Errorf("challenge: %s does not hash to %s", LeavesFile, RootFile)
	}
	p := NewProver(ch, tree, Recomputed{Seed: ch.seed(), N: n})
	f, err := os.Open(filepath.Join(dir, RowsFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return p, nil
	case err != nil:
		return nil, fmt.Errorf("challenge: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() != int64(4*n)*int64(n) {
		err = fmt.Errorf("%s holds %d bytes, want %d for n=%d", RowsFile, st.Size(), 4*n*n, n)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("challenge: %w", err)
	}
	p.rows, p.closer = rowFile{f: f, n: n}, f
	return p, nil
}

func readRoot(path string) ([32]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}, fmt.Errorf("challenge: %w", err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != 32 {
		return [32]byte{}, fmt.Errorf("challenge: %s: want 64 hex digits", path)
	}
	return [32]byte(raw), nil
}

func readTree(path string, n int) (*Tree, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("challenge: %w", err)
	}
	if len(b) != 32*n {
		return nil, fmt.Errorf("challenge: %s holds %d bytes, want %d for n=%d", path, len(b), 32*n, n)
	}
	leaves := make([][32]byte, n)
	for i := range leaves {
		leaves[i] = [32]byte(b[32*i:])
	}
	return NewTree(leaves), nil
}

// rowFile reads rows from the workload's rows file.
type rowFile struct {
	f interface {
		ReadAt(p []byte, off int64) (int, error)
	}
	n int
}

func (r rowFile) Rows(_ context.Context, idx []int) ([][]int32, error) {
	out := make([][]int32, len(idx))
	buf := make([]byte, 4*r.n)
	for t, i := range idx {
		if _, err := r.f.ReadAt(buf, int64(i)*int64(len(buf))); err != nil {
			return nil, fmt.Errorf("%s row %d: %w", RowsFile, i, err)
		}
		out[t] = DecodeRow(buf)
	}
	return out, nil
}
