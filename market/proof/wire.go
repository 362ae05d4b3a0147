package proof

import (
	"errors"
	"fmt"
	"time"

	"github.com/aixblock/aixblock/gpu/challenge"
	"github.com/aixblock/aixblock/internal/canon"
	"github.com/aixblock/aixblock/p2p"
)

// Version is carried by every message of this package; others are
// refused.
const Version = 1

// wire is one stream protocol: its name under the network's prefix and
// the limits its provider side holds requests to. The verifier's side
// sets the response limit and the deadline per step (they grow with n).
type wire struct {
	name   string
	limits p2p.StreamLimits
}

// The two protocols. Every request and answer is one length-prefixed
// frame (p2p.Request), canonical CBOR.
var (
	// request → reply, one per step of a challenge: "challenge" (a
	// challenge.Challenge and the GPUs' UUIDs) → a challenge.Commitment;
	// "query" → a challenge.Answer; "open" (some of the rows) → their
	// challenge.Opening each; "record" (the verifier's signed record) →
	// an empty reply. The largest request is an open of MaxRows rows or a
	// record; the deadline covers the workload's run.
	wireChallenge = wire{"proof/challenge/1", p2p.StreamLimits{MaxRequest: maxRequestBytes, Timeout: 15 * time.Minute}}
	// recordsRequest → recordsReply: the signed records a provider keeps
	// about itself, newest first.
	wireRecords = wire{"proof/records/1", p2p.StreamLimits{MaxRequest: 64, MaxResponse: maxRecordsReply, Timeout: 30 * time.Second}}
)

// Size limits.
const (
	// maxRequestBytes holds an open of challenge.MaxRows rows or a
	// record, with the request's own fields.
	maxRequestBytes = MaxRecordBytes + challenge.MaxOpenBytes + 1<<10
	// maxReplyOverhead is a reply's fields besides its payload: a refusal
	// reason at most maxReasonBytes long.
	maxReplyOverhead = maxReasonBytes + 256
	// maxReasonBytes bounds a refusal's reason and a record's detail.
	maxReasonBytes = 512
	// maxOpenBatchBytes is the most openings one reply carries: the
	// verifier asks its rows in batches that fit (an H100's n is 357 KB
	// a row).
	maxOpenBatchBytes = 16 << 20
	// maxServedRecords is the most records one records reply carries.
	maxServedRecords = 64
	maxRecordsReply  = maxServedRecords*(MaxRecordBytes+8) + 64
)

// The steps of the challenge protocol, in order.
const (
	stepChallenge = "challenge"
	stepQuery     = "query"
	stepOpen      = "open"
	stepRecord    = "record"
)

// request is one step from the verifier.
type request struct {
	V    uint8  `cbor:"v"`
	Step string `cbor:"t"`
	// Seed names the challenge a later step belongs to (the first carries
	// it in Msg).
	Seed []byte `cbor:"s,omitempty"`
	// Msg is the step's message: a challenge.Challenge, Query or Open in
	// challenge.Encode's bytes, or a signed record.
	Msg []byte `cbor:"m"`
	// GPUs are the UUIDs a challenge runs on, one per challenged GPU.
	GPUs []string `cbor:"g,omitempty"`
}

// Refusal codes: a refusal with a code is for later (the verifier asked
// too often, or the GPUs are taken) and no verdict on the provider; one
// without is final, and the verifier records it as a failure.
const (
	codeRateLimit = "rate-limit"
	codeBusy      = "busy"
)

// reply is the provider's answer to one step.
type reply struct {
	V uint8 `cbor:"v"`
	// Msg is the step's answer: a challenge.Commitment or Answer.
	Msg []byte `cbor:"m,omitempty"`
	// Openings are challenge.Opening messages, one per row asked.
	Openings [][]byte `cbor:"o,omitempty"`
	// Refused says why the provider will not run the challenge; Code
	// and RetryS say whether and when to ask again.
	Refused string `cbor:"r,omitempty"`
	Code    string `cbor:"c,omitempty"`
	RetryS  uint32 `cbor:"w,omitempty"`
}

// recordsRequest asks a provider for its records.
type recordsRequest struct {
	V uint8 `cbor:"v"`
}

// recordsReply is a provider's signed records about itself.
type recordsReply struct {
	V       uint8    `cbor:"v"`
	Records [][]byte `cbor:"r"`
}

// ErrInvalid marks a message or record that failed decoding or
// validation; it is wrapped with the reason.
var ErrInvalid = errors.New("invalid proof message")

var codec = canon.New(canon.Bounds{MaxArrayElements: challenge.MaxRows, MaxMapPairs: 32, MaxNestedLevels: 4})

// encode is v's canonical bytes: a record's hash is an ID every peer
// computes alike and its signature covers exactly what was decoded.
func encode(v any) ([]byte, error) {
	b, err := codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("proof: encode %T: %w", v, err)
	}
	return b, nil
}

// decode checks raw's size, decodes it into v, and makes sure it was the
// one canonical encoding of v and carries this version.
func decode(kind string, raw []byte, limit int, v any, version func() uint8) error {
	if err := codec.DecodeVersion(raw, limit, v, version, Version); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, kind, err)
	}
	return nil
}

func decodeRequest(raw []byte) (request, error) {
	var r request
	if err := decode("request", raw, maxRequestBytes, &r, func() uint8 { return r.V }); err != nil {
		return request{}, err
	}
	return r, nil
}

func decodeReply(raw []byte, limit int) (reply, error) {
	var r reply
	if err := decode("reply", raw, limit, &r, func() uint8 { return r.V }); err != nil {
		return reply{}, err
	}
	if len(r.Refused) > maxReasonBytes {
		return reply{}, fmt.Errorf("%w: refusal of %d bytes", ErrInvalid, len(r.Refused))
	}
	return r, nil
}

func decodeRecordsReply(raw []byte) (recordsReply, error) {
	var r recordsReply
	if err := decode("records reply", raw, maxRecordsReply, &r, func() uint8 { return r.V }); err != nil {
		return recordsReply{}, err
	}
	if len(r.Records) > maxServedRecords {
		return recordsReply{}, fmt.Errorf("%w: %d records, at most %d", ErrInvalid, len(r.Records), maxServedRecords)
	}
	return r, nil
}

// clip shortens s to at most maxReasonBytes, on a rune boundary.
func clip(s string) string {
	if len(s) <= maxReasonBytes {
		return s
	}
	cut := maxReasonBytes - len("…")
	for cut > 0 && s[cut]&0xc0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
