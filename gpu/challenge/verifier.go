package challenge

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// Why a provider failed; each is wrapped with the detail.
var (
	// ErrReplay: the commitment answers another seed or another n.
	ErrReplay = errors.New("commitment is not for this challenge")
	// ErrWrongY: y is not A·B·r, or disagrees with an opened row.
	ErrWrongY = errors.New("y is not C·r")
	// ErrWrongRow: an opened row is not that row of A·B: the product
	// committed to is wrong (less work, fewer GPUs, lost precision).
	ErrWrongRow = errors.New("row of the product is wrong")
	// ErrProtocol: a message out of turn, a row not asked or given twice,
	// or a verdict asked before every row was checked.
	ErrProtocol = errors.New("challenge protocol violated")
)

// VerifierConfig says what to ask.
type VerifierConfig struct {
	Params
	Rows    int       // rows opened, k; zero: DefaultRows
	Rand    io.Reader // the seeds and rows; zero: crypto/rand
	Workers int       // goroutines of the sweeps; zero: GOMAXPROCS
	// Seed is the challenge's seed when the verifier drew it before (a
	// calibration run that started the workload itself); never one a
	// provider chose. Zero: fresh from Rand.
	Seed []byte
}

// Verifier runs one challenge from the verifier's side, one step at a
// time: Challenge, Commit, Answer, then Check for every opening, then
// Verdict. After a failure every later step returns that failure. Its
// steps are called from one goroutine; Prepare may run on another.
type Verifier struct {
	cfg   VerifierConfig
	ch    Challenge
	rseed [32]byte
	idx   []int // rows to open, drawn now, told only after y
	r     []uint64

	prepMu   sync.Mutex
	prepared bool
	wantY    []uint64
	wantRows map[int][]int32

	step   int // next expected: stepCommit, stepAnswer, stepOpen
	root   [32]byte
	y      []uint64
	opened map[int]bool
	failed error
}

const (
	stepCommit = iota
	stepAnswer
	stepOpen
)

// NewVerifier draws a fresh seed, the Freivalds vector's seed and the
// rows to open.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	cfg.Params = cfg.Params.withDefaults()
	if cfg.Rows == 0 {
		cfg.Rows = DefaultRows
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if err := cfg.Params.validate(); err != nil {
		return nil, err
	}
	if cfg.Rows < 1 || cfg.Rows > min(MaxRows, cfg.N) {
		return nil, fmt.Errorf("%w: %d rows to open of %d (at most %d)", ErrParams, cfg.Rows, cfg.N, MaxRows)
	}
	seed := slices.Clone(cfg.Seed)
	if seed == nil {
		seed = make([]byte, 32)
		if _, err := io.ReadFull(cfg.Rand, seed); err != nil {
			return nil, fmt.Errorf("challenge: seed: %w", err)
		}
	}
	if len(seed) != 32 {
		return nil, fmt.Errorf("%w: seed of %d bytes, want 32", ErrParams, len(seed))
	}
	v := &Verifier{cfg: cfg, opened: map[int]bool{}}
	if _, err := io.ReadFull(cfg.Rand, v.rseed[:]); err != nil {
		return nil, fmt.Errorf("challenge: seed: %w", err)
	}
	idx, err := drawRows(cfg.Rand, cfg.N, cfg.Rows)
	if err != nil {
		return nil, err
	}
	v.idx, v.r = idx, vector(v.rseed, cfg.N)
	v.ch = Challenge{V: Version, Seed: seed, N: uint32(cfg.N), GPUs: uint32(cfg.GPUs), Precision: cfg.Precision}
	return v, nil
}

// drawRows picks k distinct rows of n uniformly, by rejection.
func drawRows(rnd io.Reader, n, k int) ([]int, error) {
	seen := make(map[int]bool, k)
	var idx []int
	var b [8]byte
	for len(idx) < k {
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return nil, fmt.Errorf("challenge: rows: %w", err)
		}
		// 2^64 mod n is under n ≤ 2^19: a bias under 2^-45.
		i := int(binary.LittleEndian.Uint64(b[:]) % uint64(n))
		if !seen[i] {
			seen[i] = true
			idx = append(idx, i)
		}
	}
	return idx, nil
}

// Challenge is the first message. The verifier's clock starts when it is
// sent.
func (v *Verifier) Challenge() Challenge { return v.ch }

// Prepare computes what the answers must be: y = A·(B·r) and the rows
// to be opened, (k+2)·n² multiply-adds in O(k·n) memory. It may run
// while the provider computes (r and the rows stay secret until sent);
// Answer runs it if it has not.
func (v *Verifier) Prepare(ctx context.Context) error {
	v.prepMu.Lock()
	defer v.prepMu.Unlock()
	if v.prepared {
		return nil
	}
	y, rows, err := freivalds(ctx, v.ch.seed(), v.cfg.N, v.cfg.Workers, v.r, v.idx)
	if err != nil {
		return fmt.Errorf("challenge: prepare: %w", err)
	}
	v.wantY, v.wantRows = y, make(map[int][]int32, len(v.idx))
	for t, i := range v.idx {
		v.wantRows[i] = rows[t]
	}
	v.prepared = true
	return nil
}

// fail records the first failure.
func (v *Verifier) fail(err error) error {
	if v.failed == nil {
		v.failed = err
	}
	return v.failed
}

// turn checks that step is next and nothing failed yet.
func (v *Verifier) turn(step int, what string) error {
	if v.failed != nil {
		return v.failed
	}
	if v.step != step {
		return v.fail(fmt.Errorf("%w: %s out of turn", ErrProtocol, what))
	}
	return nil
}

// Commit takes the provider's commitment (the verifier's clock stops
// when it arrives) and returns the query.
func (v *Verifier) Commit(c Commitment) (Query, error) {
	if err := v.turn(stepCommit, "commitment"); err != nil {
		return Query{}, err
	}
	if !slices.Equal(c.Seed, v.ch.Seed) || c.N != v.ch.N {
		return Query{}, v.fail(fmt.Errorf("%w: it answers seed %x and n=%d, the challenge was seed %x and n=%d",
			ErrReplay, c.Seed, c.N, v.ch.Seed, v.ch.N))
	}
	if len(c.Root) != 32 {
		return Query{}, v.fail(fmt.Errorf("%w: root of %d bytes", ErrInvalid, len(c.Root)))
	}
	v.root, v.step = [32]byte(c.Root), stepAnswer
	return Query{V: Version, R: v.rseed[:]}, nil
}

// Answer checks y against A·(B·r) (Freivalds: a y that is not C·r for
// the true C fails unless r hits a 1/P chance per wrong row) and returns
// the rows to open.
func (v *Verifier) Answer(ctx context.Context, a Answer) (Open, error) {
	if err := v.turn(stepAnswer, "answer"); err != nil {
		return Open{}, err
	}
	if len(a.Y) != 8*v.cfg.N {
		return Open{}, v.fail(fmt.Errorf("%w: y of %d bytes, want %d", ErrInvalid, len(a.Y), 8*v.cfg.N))
	}
	if err := v.Prepare(ctx); err != nil {
		return Open{}, err // the verifier's own failure: the provider is not judged
	}
	v.y = a.values()
	for i, want := range v.wantY {
		if v.y[i] != want {
			return Open{}, v.fail(fmt.Errorf("%w: y[%d] is %d, A·B·r gives %d", ErrWrongY, i, v.y[i], want))
		}
	}
	v.step = stepOpen
	rows := make([]uint32, len(v.idx))
	for t, i := range v.idx {
		rows[t] = uint32(i)
	}
	return Open{V: Version, Rows: rows}, nil
}

// Check verifies one opened row: asked and not seen before, in the
// commitment, equal to A_i·B, and agreeing with y_i.
func (v *Verifier) Check(o Opening) error {
	if err := v.turn(stepOpen, "opening"); err != nil {
		return err
	}
	i := int(o.Row)
	if _, asked := v.wantRows[i]; !asked || v.opened[i] {
		return v.fail(fmt.Errorf("%w: row %d was not asked or came twice", ErrProtocol, i))
	}
	if len(o.C) != 4*v.cfg.N {
		return v.fail(fmt.Errorf("%w: row %d of %d bytes, want %d", ErrInvalid, i, len(o.C), 4*v.cfg.N))
	}
	if err := VerifyProof(v.root, v.cfg.N, i, LeafHash(o.C), o.Path); err != nil {
		return v.fail(err)
	}
	row := DecodeRow(o.C)
	if j := firstDiff(row, v.wantRows[i]); j >= 0 {
		return v.fail(fmt.Errorf("%w: row %d, column %d is %d, A·B gives %d", ErrWrongRow, i, j, row[j], v.wantRows[i][j]))
	}
	if got := dotRow(row, v.r); got != v.y[i] {
		return v.fail(fmt.Errorf("%w: row %d·r is %d, y[%d] is %d", ErrWrongY, i, got, i, v.y[i]))
	}
	v.opened[i] = true
	return nil
}

func firstDiff(a, b []int32) int {
	for j := range a {
		if a[j] != b[j] {
			return j
		}
	}
	return -1
}

// Verdict is nil once every asked row passed; otherwise the failure, or
// ErrProtocol naming the rows still missing.
func (v *Verifier) Verdict() error {
	if v.failed != nil {
		return v.failed
	}
	if v.step != stepOpen || len(v.opened) != len(v.idx) {
		return fmt.Errorf("%w: %d of %d rows checked", ErrProtocol, len(v.opened), len(v.idx))
	}
	return nil
}
