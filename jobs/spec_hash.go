package jobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// SpecHashVersion names the canonical form that Hash covers; a deal binds
// the hash, so a change of form is a new version, never a silent change.
const SpecHashVersion = "aixblock-spec-hash/1"

var specEnc cbor.EncMode

func init() {
	var err error
	if specEnc, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
}

// Hash is what a deal binds of a spec: SHA-256 over SpecHashVersion and
// the spec's canonical bytes, hex. The canonical bytes are deterministic
// CBOR (RFC 8949 core: sorted keys, shortest forms) of the spec's JSON
// object model, so they depend neither on the order of the Go struct's
// fields nor on fields left empty: a daemon that adds an optional field
// still makes the same deals with one that has not.
func (s *Spec) Hash() (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("spec hash: %w", err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", fmt.Errorf("spec hash: %w", err)
	}
	c, err := specEnc.Marshal(canonicalNumbers(v))
	if err != nil {
		return "", fmt.Errorf("spec hash: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(SpecHashVersion))
	h.Write([]byte{0})
	h.Write(c)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// canonicalNumbers turns JSON numbers into integers where they are whole
// (the spec's counts and sizes) and floats otherwise (CPU), so that 2 and
// 2.0 are one value.
func canonicalNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = canonicalNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = canonicalNumbers(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		if f == float64(int64(f)) {
			return int64(f)
		}
		return f
	}
	return v
}
