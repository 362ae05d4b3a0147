// Package canon is the project's canonical CBOR for what travels between
// peers: one encoding per value (core deterministic), so a hash of it is
// an ID every peer computes alike and a signature covers exactly what was
// decoded; and a bounded decoder that refuses duplicate keys, unknown
// fields, indefinite lengths and any encoding but the canonical one. The
// market, the compute challenge and the proof records each hold a Codec
// with the bounds of their own messages.
package canon

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Bounds are what a decoder accepts of one message's structure.
type Bounds struct {
	MaxArrayElements int
	MaxMapPairs      int
	MaxNestedLevels  int
}

// Codec encodes canonically and decodes within its bounds.
type Codec struct {
	enc cbor.EncMode
	dec cbor.DecMode
}

// ErrNotCanonical: the bytes decoded, but are not the value's one
// canonical encoding.
var ErrNotCanonical = errors.New("not canonical CBOR")

// New is a codec for messages within b; bounds that the CBOR library
// refuses are a programming error, so it panics (it runs at init).
func New(b Bounds) Codec {
	enc, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	dec, err := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxArrayElements:  b.MaxArrayElements,
		MaxMapPairs:       b.MaxMapPairs,
		MaxNestedLevels:   b.MaxNestedLevels,
		IndefLength:       cbor.IndefLengthForbidden,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return Codec{enc: enc, dec: dec}
}

// Marshal is v's canonical bytes.
func (c Codec) Marshal(v any) ([]byte, error) { return c.enc.Marshal(v) }

// Unmarshal decodes raw into v within the codec's bounds, accepting any
// valid encoding (see Decode for the canonical one).
func (c Codec) Unmarshal(raw []byte, v any) error { return c.dec.Unmarshal(raw, v) }

// Decode checks raw's size against limit, decodes it into v, and fails
// with ErrNotCanonical unless raw was v's one canonical encoding.
func (c Codec) Decode(raw []byte, limit int, v any) error {
	if len(raw) > limit {
		return fmt.Errorf("%d bytes over the %d limit", len(raw), limit)
	}
	if err := c.dec.Unmarshal(raw, v); err != nil {
		return err
	}
	if again, err := c.enc.Marshal(v); err != nil || !bytes.Equal(again, raw) {
		return ErrNotCanonical
	}
	return nil
}

// DecodeVersion is Decode, then a check that the value's version, read
// by version once decoded, is want: every versioned message's decoder.
func (c Codec) DecodeVersion(raw []byte, limit int, v any, version func() uint8, want uint8) error {
	if err := c.Decode(raw, limit, v); err != nil {
		return err
	}
	if got := version(); got != want {
		return fmt.Errorf("version %d, want %d", got, want)
	}
	return nil
}
