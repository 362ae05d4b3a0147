package challenge

import (
	"context"
	"fmt"
)

// Provider is the side that answers: the honest Prover, or anything
// that speaks for a provider.
type Provider interface {
	Commitment() Commitment
	Answer(ctx context.Context, q Query) (Answer, error)
	Open(ctx context.Context, o Open) ([]Opening, error)
}

// Exchange runs one challenge between v and p in one process, each
// message through its encoding and the decoder its receiver uses, as
// over a stream; it returns v's verdict, or the provider's own error
// wrapped. The timed part (seed to commitment) is the caller's.
func Exchange(ctx context.Context, v *Verifier, p Provider) error {
	n := int(v.Challenge().N)
	if _, err := through(v.Challenge(), DecodeChallenge); err != nil {
		return err
	}
	c, err := through(p.Commitment(), DecodeCommitment)
	if err != nil {
		return err
	}
	q, err := v.Commit(c)
	if err != nil {
		return err
	}
	if q, err = through(q, DecodeQuery); err != nil {
		return err
	}
	a, err := p.Answer(ctx, q)
	if err != nil {
		return fmt.Errorf("provider: %w", err)
	}
	if a, err = through(a, func(b []byte) (Answer, error) { return DecodeAnswer(b, n) }); err != nil {
		return err
	}
	o, err := v.Answer(ctx, a)
	if err != nil {
		return err
	}
	if o, err = through(o, func(b []byte) (Open, error) { return DecodeOpen(b, n) }); err != nil {
		return err
	}
	return openAll(ctx, v, p, o)
}

// openAll has p open the rows o names and v check each, then returns
// v's verdict.
func openAll(ctx context.Context, v *Verifier, p Provider, o Open) error {
	n := int(v.Challenge().N)
	openings, err := p.Open(ctx, o)
	if err != nil {
		return fmt.Errorf("provider: %w", err)
	}
	for _, op := range openings {
		if op, err = through(op, func(b []byte) (Opening, error) { return DecodeOpening(b, n) }); err != nil {
			return err
		}
		if err := v.Check(op); err != nil {
			return err
		}
	}
	return v.Verdict()
}

// through encodes msg and decodes it with dec.
func through[T any](msg T, dec func([]byte) (T, error)) (T, error) {
	raw, err := Encode(msg)
	if err != nil {
		var zero T
		return zero, err
	}
	return dec(raw)
}
