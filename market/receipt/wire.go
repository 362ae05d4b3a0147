package receipt

import (
	"errors"
	"fmt"
	"time"

	"github.com/aixblock/aixblock/internal/canon"
	"github.com/aixblock/aixblock/p2p"
)

// Version is carried by every receipt and message of this package;
// others are refused.
const Version = 1

// Size limits.
const (
	// MaxReceiptBytes bounds a signed receipt: the body with MaxProofs
	// record IDs and a long CID, and two RSA keys and signatures, fit
	// well within it.
	MaxReceiptBytes = 4 << 10
	// MaxServed is the most receipts one reply carries.
	MaxServed = 64
	// maxReply is a reply of MaxServed receipts and its own fields.
	maxReply = MaxServed*(MaxReceiptBytes+8) + maxReasonBytes + 64
	// maxRequest is a request: the version and a peer ID.
	maxRequest = 256
	// maxReasonBytes bounds a refusal's reason.
	maxReasonBytes = 256
)

// protocolName is the receipts protocol under the network's prefix:
// /aixblock/<network>/receipts/1.
const protocolName = "receipts/1"

// limits are what the serving side holds a request to, and the asking
// side a reply.
var limits = p2p.StreamLimits{MaxRequest: maxRequest, MaxResponse: maxReply, Timeout: 30 * time.Second}

// request asks a peer for the receipts it is a party to about Provider:
// a provider's about itself, a requester's about a provider it dealt
// with.
type request struct {
	V        uint8  `cbor:"v"`
	Provider string `cbor:"p"`
}

// reply is the receipts, newest first, or why none are served and when
// to ask again.
type reply struct {
	V        uint8    `cbor:"v"`
	Receipts [][]byte `cbor:"r,omitempty"`
	Refused  string   `cbor:"x,omitempty"`
	RetryS   uint32   `cbor:"w,omitempty"`
}

// Errors, each wrapped with the reason; a refused receipt's error names
// the field or the check it failed.
var (
	// ErrInvalid marks bytes that are no valid receipt or message: a
	// size, an encoding, a version or a field out of bounds.
	ErrInvalid = errors.New("invalid receipt")
	// ErrForged marks a receipt whose signature does not verify, or was
	// made by another key than the party's it stands for.
	ErrForged = errors.New("forged receipt")
	// ErrReplay marks a second, different receipt for a deal already
	// held.
	ErrReplay = errors.New("replayed receipt")
	// ErrNetwork marks a receipt of another network.
	ErrNetwork = errors.New("receipt of another network")
	// ErrFuture marks a receipt dated ahead of the reader's clock.
	ErrFuture = errors.New("receipt from the future")
	// ErrRateLimited is a peer's refusal to serve for now.
	ErrRateLimited = errors.New("rate limited")
)

var codec = canon.New(canon.Bounds{MaxArrayElements: MaxServed, MaxMapPairs: 32, MaxNestedLevels: 4})

// encode is v's canonical bytes: a receipt's hash is an ID every peer
// computes alike and its signatures cover exactly what was decoded.
func encode(v any) ([]byte, error) {
	b, err := codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("receipt: encode %T: %w", v, err)
	}
	return b, nil
}

// decode reads a T of kind from raw within limit: its one canonical
// encoding, of this version (read by version).
func decode[T any](kind string, raw []byte, limit int, version func(T) uint8) (T, error) {
	var v T
	if err := codec.DecodeVersion(raw, limit, &v, func() uint8 { return version(v) }, Version); err != nil {
		var zero T
		return zero, fmt.Errorf("%w: %s: %v", ErrInvalid, kind, err)
	}
	return v, nil
}

func decodeRequest(raw []byte) (request, error) {
	return decode("request", raw, maxRequest, func(r request) uint8 { return r.V })
}

func decodeReply(raw []byte) (reply, error) {
	r, err := decode("reply", raw, maxReply, func(r reply) uint8 { return r.V })
	if err != nil {
		return reply{}, err
	}
	switch {
	case len(r.Receipts) > MaxServed:
		return reply{}, fmt.Errorf("%w: reply of %d receipts, at most %d", ErrInvalid, len(r.Receipts), MaxServed)
	case len(r.Refused) > maxReasonBytes:
		return reply{}, fmt.Errorf("%w: refusal of %d bytes", ErrInvalid, len(r.Refused))
	}
	return r, nil
}
