package market

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/aixblock/aixblock/internal/canon"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ProtocolVersion is carried by every market message; others are refused.
const ProtocolVersion = 1

// Size limits of market messages on the wire.
const (
	MaxAdvertBytes = 8 << 10
	MaxOfferBytes  = 4 << 10
	MaxBidBytes    = 4 << 10
	MaxDealBytes   = 8 << 10
)

// ErrInvalid marks a message that failed decoding or validation; it is
// wrapped with the reason.
var ErrInvalid = errors.New("invalid market message")

// codec is canonical CBOR: one encoding per value, so a hash of it is an
// ID every peer computes alike.
var codec = canon.New(canon.Bounds{MaxArrayElements: 1024, MaxMapPairs: 256, MaxNestedLevels: 8})

func canonical(v any) ([]byte, error) { return codec.Marshal(v) }

// envelope is a signed message: Body is the canonical CBOR of the payload,
// Sig the signer's peer-key signature over a domain tag and Body.
type envelope struct {
	Kind string `cbor:"k"`
	Body []byte `cbor:"b"`
	Sig  []byte `cbor:"s"`
}

func sigInput(kind string, body []byte) []byte {
	return append([]byte("aixblock-market/"+kind+"\x00"), body...)
}

// seal encodes v, signs it with key and wraps both in an envelope.
func seal(kind string, v any, key crypto.PrivKey) ([]byte, []byte, error) {
	body, err := canonical(v)
	if err != nil {
		return nil, nil, err
	}
	sig, err := key.Sign(sigInput(kind, body))
	if err != nil {
		return nil, nil, err
	}
	raw, err := canonical(envelope{Kind: kind, Body: body, Sig: sig})
	return raw, body, err
}

// open checks the size, decodes the envelope and its payload into v, and
// verifies the signature by signer (the peer the payload names).
func open(kind string, raw []byte, max int, v interface{ signer() string }) ([]byte, error) {
	if len(raw) > max {
		return nil, fmt.Errorf("%w: %s of %d bytes over the %d limit", ErrInvalid, kind, len(raw), max)
	}
	var env envelope
	if err := codec.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("%w: %s envelope: %v", ErrInvalid, kind, err)
	}
	if env.Kind != kind {
		return nil, fmt.Errorf("%w: got a %q, want a %s", ErrInvalid, env.Kind, kind)
	}
	// The body must be canonical, or two encodings of one message would
	// have two IDs.
	if err := codec.Decode(env.Body, max, v); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, kind, err)
	}
	id, err := peer.Decode(v.signer())
	if err != nil {
		return nil, fmt.Errorf("%w: %s signer %q: %v", ErrInvalid, kind, v.signer(), err)
	}
	pub, err := id.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: %s signer %s has no inline key: %v", ErrInvalid, kind, id, err)
	}
	ok, err := pub.Verify(sigInput(kind, env.Body), env.Sig)
	if err != nil || !ok {
		return nil, fmt.Errorf("%w: %s signature does not verify for %s", ErrInvalid, kind, id)
	}
	return env.Body, nil
}

// hashID is the hex SHA-256 of canonical bytes.
func hashID(body []byte) string {
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:])
}
