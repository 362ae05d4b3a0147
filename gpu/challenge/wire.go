package challenge

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/aixblock/aixblock/internal/canon"
)

// The messages, in the order they travel. Each is canonical CBOR (core
// deterministic encoding), versioned, and decoded from the network only
// through its Decode function, which bounds its size before anything
// else and refuses a non-canonical encoding.

// Challenge is the verifier's first message: a fresh seed and the
// parameters.
type Challenge struct {
	V         uint8     `cbor:"v"`
	Seed      []byte    `cbor:"s"` // 32 bytes, fresh
	N         uint32    `cbor:"n"`
	GPUs      uint32    `cbor:"g"`
	Precision Precision `cbor:"p"`
}

// Commitment is the provider's answer: the Merkle root of C's rows, with
// the seed and n it claims to answer.
type Commitment struct {
	V    uint8  `cbor:"v"`
	Seed []byte `cbor:"s"`
	N    uint32 `cbor:"n"`
	Root []byte `cbor:"r"` // 32 bytes
}

// Query carries the seed of the Freivalds vector r, sent only after the
// commitment.
type Query struct {
	V uint8  `cbor:"v"`
	R []byte `cbor:"r"` // 32 bytes
}

// Answer is y = C·r mod P: n values, 8 bytes each, little-endian.
type Answer struct {
	V uint8  `cbor:"v"`
	Y []byte `cbor:"y"`
}

// Open names the rows the verifier checks, sent only after the answer.
type Open struct {
	V    uint8    `cbor:"v"`
	Rows []uint32 `cbor:"i"`
}

// Opening is one row of C with its Merkle audit path.
type Opening struct {
	V    uint8  `cbor:"v"`
	Row  uint32 `cbor:"i"`
	C    []byte `cbor:"c"` // EncodeRow of the row: 4n bytes
	Path []byte `cbor:"p"` // siblings, 32 bytes each, from the leaf up
}

// Size limits of the messages; those that grow with n take it.
const (
	MaxChallengeBytes  = 128
	MaxCommitmentBytes = 128
	MaxQueryBytes      = 64
	MaxOpenBytes       = 5*MaxRows + 16
)

// MaxAnswerBytes is the limit of an answer for n.
func MaxAnswerBytes(n int) int { return 8*n + 16 }

// MaxOpeningBytes is the limit of an opening for n.
func MaxOpeningBytes(n int) int { return 4*n + proofBytes(n) + 64 }

// ErrInvalid marks a message that failed decoding or validation; it is
// wrapped with the reason.
var ErrInvalid = errors.New("invalid challenge message")

var codec = canon.New(canon.Bounds{MaxArrayElements: MaxRows, MaxMapPairs: 16, MaxNestedLevels: 4})

// Encode is a message's canonical bytes.
func Encode(msg any) ([]byte, error) {
	b, err := codec.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("challenge: encode %T: %w", msg, err)
	}
	return b, nil
}

// decode checks the size, decodes raw into v and makes sure raw was the
// one canonical encoding of it and carries this version.
func decode(kind string, raw []byte, limit int, v any, version func() uint8) error {
	if err := codec.DecodeVersion(raw, limit, v, version, Version); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, kind, err)
	}
	return nil
}

func wantLen(kind, field string, b []byte, n int) error {
	if len(b) != n {
		return fmt.Errorf("%w: %s %s of %d bytes, want %d", ErrInvalid, kind, field, len(b), n)
	}
	return nil
}

// DecodeChallenge reads a verifier's challenge.
func DecodeChallenge(raw []byte) (Challenge, error) {
	var c Challenge
	if err := decode("challenge", raw, MaxChallengeBytes, &c, func() uint8 { return c.V }); err != nil {
		return Challenge{}, err
	}
	if err := wantLen("challenge", "seed", c.Seed, 32); err != nil {
		return Challenge{}, err
	}
	if err := c.Params().validate(); err != nil {
		return Challenge{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return c, nil
}

// DecodeCommitment reads a provider's commitment; whether it answers the
// challenge asked is the verifier's to judge.
func DecodeCommitment(raw []byte) (Commitment, error) {
	var c Commitment
	if err := decode("commitment", raw, MaxCommitmentBytes, &c, func() uint8 { return c.V }); err != nil {
		return Commitment{}, err
	}
	if err := wantLen("commitment", "seed", c.Seed, 32); err != nil {
		return Commitment{}, err
	}
	if err := wantLen("commitment", "root", c.Root, 32); err != nil {
		return Commitment{}, err
	}
	if c.N < 1 || c.N > MaxN {
		return Commitment{}, fmt.Errorf("%w: commitment for n=%d outside [1, %d]", ErrInvalid, c.N, MaxN)
	}
	return c, nil
}

// DecodeQuery reads a verifier's query.
func DecodeQuery(raw []byte) (Query, error) {
	var q Query
	if err := decode("query", raw, MaxQueryBytes, &q, func() uint8 { return q.V }); err != nil {
		return Query{}, err
	}
	return q, wantLen("query", "r seed", q.R, 32)
}

// DecodeAnswer reads a provider's y for a challenge of side n.
func DecodeAnswer(raw []byte, n int) (Answer, error) {
	var a Answer
	if err := decode("answer", raw, MaxAnswerBytes(n), &a, func() uint8 { return a.V }); err != nil {
		return Answer{}, err
	}
	if err := wantLen("answer", "y", a.Y, 8*n); err != nil {
		return Answer{}, err
	}
	for i := range n {
		if v := binary.LittleEndian.Uint64(a.Y[8*i:]); v >= P {
			return Answer{}, fmt.Errorf("%w: answer y[%d] = %d is not below P", ErrInvalid, i, v)
		}
	}
	return a, nil
}

// DecodeOpen reads the rows a verifier asks of a challenge of side n:
// between 1 and MaxRows distinct rows below n.
func DecodeOpen(raw []byte, n int) (Open, error) {
	var o Open
	if err := decode("open", raw, MaxOpenBytes, &o, func() uint8 { return o.V }); err != nil {
		return Open{}, err
	}
	if len(o.Rows) == 0 {
		return Open{}, fmt.Errorf("%w: open names no rows", ErrInvalid)
	}
	seen := make(map[uint32]bool, len(o.Rows))
	for _, i := range o.Rows {
		if int(i) >= n || seen[i] {
			return Open{}, fmt.Errorf("%w: open names row %d twice or outside [0, %d)", ErrInvalid, i, n)
		}
		seen[i] = true
	}
	return o, nil
}

// DecodeOpening reads one opened row of a challenge of side n.
func DecodeOpening(raw []byte, n int) (Opening, error) {
	var o Opening
	if err := decode("opening", raw, MaxOpeningBytes(n), &o, func() uint8 { return o.V }); err != nil {
		return Opening{}, err
	}
	if int(o.Row) >= n {
		return Opening{}, fmt.Errorf("%w: opening of row %d of %d", ErrInvalid, o.Row, n)
	}
	if err := wantLen("opening", "row", o.C, 4*n); err != nil {
		return Opening{}, err
	}
	if len(o.Path)%32 != 0 || len(o.Path) > proofBytes(n) {
		return Opening{}, fmt.Errorf("%w: opening path of %d bytes (whole 32-byte siblings, at most %d)", ErrInvalid, len(o.Path), proofBytes(n))
	}
	return o, nil
}

// Params are the challenge's parameters.
func (c Challenge) Params() Params {
	return Params{N: int(c.N), GPUs: int(c.GPUs), Precision: c.Precision}
}

// seed is the challenge's seed as an array (zero if malformed).
func (c Challenge) seed() [32]byte { return seedOf(c.Seed) }

func seedOf(b []byte) [32]byte {
	var s [32]byte
	if len(b) == 32 {
		copy(s[:], b)
	}
	return s
}

// values reads an answer's y.
func (a Answer) values() []uint64 {
	y := make([]uint64, len(a.Y)/8)
	for i := range y {
		y[i] = binary.LittleEndian.Uint64(a.Y[8*i:])
	}
	return y
}

// answerOf encodes y.
func answerOf(y []uint64) Answer {
	b := make([]byte, 8*len(y))
	for i, v := range y {
		binary.LittleEndian.PutUint64(b[8*i:], v)
	}
	return Answer{V: Version, Y: b}
}
