package challenge

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// Each decoder of network input: whatever the bytes, it never panics,
// and what it accepts is within its limits and re-encodes to the very
// bytes it came from (one encoding per message).

// fuzzN is the side of the challenge whose messages seed the corpora.
const fuzzN = 40

// fuzzSession is one honest exchange's messages.
type fuzzSession struct {
	challenge, commitment, query, answer, open []byte
	openings                                   [][]byte
}

func session(f *testing.F) fuzzSession {
	f.Helper()
	v := newTestVerifier(f, fuzzN, 1)
	sp := &spy{Provider: honest(f, v)}
	if err := Exchange(context.Background(), v, sp); err != nil {
		f.Fatal(err)
	}
	s := fuzzSession{
		challenge: mustEncode(f, v.Challenge()), commitment: mustEncode(f, sp.commitment),
		query: mustEncode(f, sp.query), answer: mustEncode(f, sp.answer), open: mustEncode(f, sp.open),
	}
	for _, op := range sp.openings[:3] {
		s.openings = append(s.openings, mustEncode(f, op))
	}
	return s
}

func mustEncode(f testing.TB, msg any) []byte {
	b, err := Encode(msg)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// fuzzDecoder runs the common checks on decode over the seeds.
func fuzzDecoder[T any](f *testing.F, seeds [][]byte, limit int, dec func([]byte) (T, error)) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Add([]byte{0xa0})
	f.Add([]byte("not cbor"))
	f.Add(bytes.Repeat([]byte{0x9f}, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dec(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("refused without ErrInvalid: %v", err)
			}
			return
		}
		if len(b) > limit {
			t.Fatalf("accepted %d bytes over the %d limit", len(b), limit)
		}
		if again, err := Encode(m); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical encoding: % x", b)
		}
	})
}

func FuzzDecodeChallenge(f *testing.F) {
	s := session(f)
	fuzzDecoder(f, [][]byte{s.challenge, s.commitment}, MaxChallengeBytes, DecodeChallenge)
}

func FuzzDecodeCommitment(f *testing.F) {
	s := session(f)
	fuzzDecoder(f, [][]byte{s.commitment, s.challenge}, MaxCommitmentBytes, DecodeCommitment)
}

func FuzzDecodeQuery(f *testing.F) {
	s := session(f)
	fuzzDecoder(f, [][]byte{s.query}, MaxQueryBytes, DecodeQuery)
}

func FuzzDecodeAnswer(f *testing.F) {
	s := session(f)
	fuzzDecoder(f, [][]byte{s.answer}, MaxAnswerBytes(fuzzN), func(b []byte) (Answer, error) { return DecodeAnswer(b, fuzzN) })
}

func FuzzDecodeOpen(f *testing.F) {
	s := session(f)
	fuzzDecoder(f, [][]byte{s.open}, MaxOpenBytes, func(b []byte) (Open, error) { return DecodeOpen(b, fuzzN) })
}

func FuzzDecodeOpening(f *testing.F) {
	s := session(f)
	fuzzDecoder(f, s.openings, MaxOpeningBytes(fuzzN), func(b []byte) (Opening, error) { return DecodeOpening(b, fuzzN) })
}
