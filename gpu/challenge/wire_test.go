package challenge

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// TestDecodeRefuses: each decoder refuses what a hostile peer might
// send, naming why.
func TestDecodeRefuses(t *testing.T) {
	seed := make([]byte, 32)
	good := Challenge{V: Version, Seed: seed, N: 64, GPUs: 1, Precision: FP16}
	with := func(f func(*Challenge)) []byte { c := good; f(&c); return mustEncode(t, c) }
	bigY := make([]byte, 8*4)
	binary.LittleEndian.PutUint64(bigY[8:], P)
	nonCanonical := mustEncode(t, Query{V: Version, R: seed})
	nonCanonical[1] = 0x78 // the text key "r" as a one-byte-length string: same value, longer form
	nonCanonical = append(nonCanonical[:2], append([]byte{1}, nonCanonical[2:]...)...)
	for _, tc := range []struct {
		name, want string
		decode     func() error
	}{
		{"challenge of another version", "version 2", func() error {
			_, err := DecodeChallenge(with(func(c *Challenge) { c.V = 2 }))
			return err
		}},
		{"short seed", "seed of 31 bytes", func() error {
			_, err := DecodeChallenge(with(func(c *Challenge) { c.Seed = seed[:31] }))
			return err
		}},
		{"n over MaxN", "outside [1, 524288]", func() error {
			_, err := DecodeChallenge(with(func(c *Challenge) { c.N = MaxN + 1 }))
			return err
		}},
		{"no GPUs", "0 GPUs", func() error {
			_, err := DecodeChallenge(with(func(c *Challenge) { c.GPUs = 0 }))
			return err
		}},
		{"unknown precision", `precision "fp8"`, func() error {
			_, err := DecodeChallenge(with(func(c *Challenge) { c.Precision = "fp8" }))
			return err
		}},
		{"oversized challenge", "over the 128 limit", func() error {
			_, err := DecodeChallenge(make([]byte, MaxChallengeBytes+1))
			return err
		}},
		{"unknown field", "unknown field", func() error {
			_, err := DecodeQuery(mustEncode(t, map[string]any{"v": 1, "r": seed, "x": 1}))
			return err
		}},
		{"non-canonical", "not canonical", func() error {
			_, err := DecodeQuery(nonCanonical)
			return err
		}},
		{"commitment root of 31 bytes", "root of 31 bytes", func() error {
			_, err := DecodeCommitment(mustEncode(t, Commitment{V: Version, Seed: seed, N: 4, Root: seed[:31]}))
			return err
		}},
		{"y not below P", "y[1]", func() error {
			_, err := DecodeAnswer(mustEncode(t, Answer{V: Version, Y: bigY}), 4)
			return err
		}},
		{"y of another n", "y of 32 bytes, want 40", func() error {
			_, err := DecodeAnswer(mustEncode(t, Answer{V: Version, Y: bigY}), 5)
			return err
		}},
		{"a row twice", "row 3 twice", func() error {
			_, err := DecodeOpen(mustEncode(t, Open{V: Version, Rows: []uint32{3, 1, 3}}), 4)
			return err
		}},
		{"a row out of range", "row 4 twice or outside", func() error {
			_, err := DecodeOpen(mustEncode(t, Open{V: Version, Rows: []uint32{4}}), 4)
			return err
		}},
		{"no rows", "no rows", func() error {
			_, err := DecodeOpen(mustEncode(t, Open{V: Version}), 4)
			return err
		}},
		{"opening of a short row", "row of 12 bytes, want 16", func() error {
			_, err := DecodeOpening(mustEncode(t, Opening{V: Version, Row: 1, C: make([]byte, 12)}), 4)
			return err
		}},
		{"opening path too long", "at most 64", func() error {
			_, err := DecodeOpening(mustEncode(t, Opening{V: Version, Row: 1, C: make([]byte, 16), Path: make([]byte, 96)}), 4)
			return err
		}},
	} {
		err := tc.decode()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalid with %q", tc.name, err, tc.want)
		}
	}
}
