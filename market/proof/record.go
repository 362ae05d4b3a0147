package proof

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aixblock/aixblock/gpu/challenge"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// MaxRecordBytes bounds a signed record: 64 GPU UUIDs, an RSA key and
// signature, and a detail fit well within it.
const MaxRecordBytes = 8 << 10

// Outcomes of a challenge.
const (
	Pass = "pass"
	Fail = "fail"
)

// Reasons a challenge failed, as a record names them; Record.Detail says
// more.
const (
	ReasonTimeout      = "timeout"       // no commitment within the class's window (or a later answer in time)
	ReasonEnvelope     = "envelope"      // the commitment came too fast or too slow for the class, or n does not fit it
	ReasonWrongRow     = "wrong-row"     // an opened row is not that row of A·B
	ReasonNotCommitted = "not-committed" // an opened row is not in the committed tree
	ReasonWrongY       = "wrong-y"       // y is not C·r
	ReasonReplay       = "replay"        // the commitment answers another challenge
	ReasonProtocol     = "protocol"      // a message out of turn, malformed, or the provider broke off
	ReasonRefused      = "refused"       // the provider refused the challenge for good
)

var reasons = []string{ReasonTimeout, ReasonEnvelope, ReasonWrongRow, ReasonNotCommitted, ReasonWrongY, ReasonReplay, ReasonProtocol, ReasonRefused}

// Record is one challenge's verdict, signed by its verifier's libp2p key:
// who was challenged on which GPUs and class, with what parameters, how
// long the commitment took on the verifier's clock, and whether it
// passed. Records travel as Signed bytes: canonical CBOR of the record
// and the signature over it.
type Record struct {
	V       uint8  `cbor:"v" json:"v"`
	Network string `cbor:"net" json:"network"`
	// Verifier is the signer's peer ID; Key its public key (protobuf), so
	// that every key type verifies, not only those an ID inlines.
	Verifier string `cbor:"w" json:"verifier"`
	Key      []byte `cbor:"k" json:"-"`
	Provider string `cbor:"p" json:"provider"`
	// GPUs are the challenged GPUs' UUIDs, as the provider advertised
	// them; the challenge ran on all of them together.
	GPUs      []string            `cbor:"g" json:"gpus"`
	Class     string              `cbor:"c" json:"class"`
	N         uint32              `cbor:"n" json:"n"`
	Precision challenge.Precision `cbor:"q" json:"precision"`
	Rows      uint32              `cbor:"r" json:"rows"` // rows the verifier opened (k)
	// SeedHash is SHA-256 of the challenge's seed: it names the challenge
	// without handing anyone its seed.
	SeedHash []byte `cbor:"h" json:"seed_hash"`
	// At is when the verdict was reached, Unix milliseconds on the
	// verifier's clock.
	At int64 `cbor:"t" json:"at_ms"`
	// ElapsedUs is seed to commitment on the verifier's clock, in
	// microseconds (zero when no commitment came); RTTUs the round trip
	// it credited.
	ElapsedUs int64  `cbor:"e" json:"elapsed_us"`
	RTTUs     int64  `cbor:"l" json:"rtt_us"`
	Outcome   string `cbor:"o" json:"outcome"`
	// Reason is one of the Reason constants on a failure; Detail the
	// verifier's error, at most 512 bytes.
	Reason string `cbor:"y,omitempty" json:"reason,omitempty"`
	Detail string `cbor:"d,omitempty" json:"detail,omitempty"`
}

// signed is what travels: the record's canonical bytes and the
// signature over a domain tag and them.
type signed struct {
	Body []byte `cbor:"b"`
	Sig  []byte `cbor:"s"`
}

// sigInput keeps a record's signature from being anything else's.
func sigInput(body []byte) []byte {
	return append([]byte("aixblock-proof/record/1\x00"), body...)
}

// Time is when the verdict was reached.
func (r Record) Time() time.Time { return time.UnixMilli(r.At) }

// Elapsed is seed to commitment on the verifier's clock.
func (r Record) Elapsed() time.Duration { return time.Duration(r.ElapsedUs) * time.Microsecond }

// TFLOPS is the throughput the time implies: 2n³ over the time less the
// round trip (as the envelope credits it, at most challenge.MaxRTT), for
// all the GPUs together; zero without a time.
func (r Record) TFLOPS() float64 {
	rtt := min(r.RTTUs, r.ElapsedUs, challenge.MaxRTT.Microseconds())
	d := time.Duration(r.ElapsedUs-rtt) * time.Microsecond
	if r.ElapsedUs == 0 || d <= 0 {
		return 0
	}
	return challenge.Ops(int(r.N)) / d.Seconds() / 1e12
}

// WorkingSet is the bytes one GPU held for the product.
func (r Record) WorkingSet() uint64 {
	return challenge.WorkingSet(int(r.N), len(r.GPUs), r.Precision)
}

// Passed reports whether the provider passed.
func (r Record) Passed() bool { return r.Outcome == Pass }

// ID is the hex SHA-256 of the record's canonical bytes: one per
// record, whoever stores it.
func (r Record) ID() string {
	b, err := encode(r)
	if err != nil {
		return ""
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Sign checks the record, sets its Verifier and Key from key, and
// returns the signed bytes.
func (r Record) Sign(key crypto.PrivKey) ([]byte, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("proof: record signer: %w", err)
	}
	if r.Key, err = crypto.MarshalPublicKey(key.GetPublic()); err != nil {
		return nil, fmt.Errorf("proof: record signer: %w", err)
	}
	r.V, r.Verifier = Version, id.String()
	if err := r.validate(); err != nil {
		return nil, err
	}
	body, err := encode(r)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(sigInput(body))
	if err != nil {
		return nil, fmt.Errorf("proof: sign record: %w", err)
	}
	return encode(signed{Body: body, Sig: sig})
}

// DecodeRecord reads a signed record from anywhere: it bounds the size,
// refuses any encoding but the canonical one, checks every field, and
// verifies the signature with the key the record carries, which must be
// the key of the verifier it names. Whether the record is about the
// provider at hand and of this network is Check's.
func DecodeRecord(raw []byte) (Record, error) {
	var s signed
	if err := decode("signed record", raw, MaxRecordBytes, &s, func() uint8 { return Version }); err != nil {
		return Record{}, err
	}
	var r Record
	if err := decode("record", s.Body, MaxRecordBytes, &r, func() uint8 { return r.V }); err != nil {
		return Record{}, err
	}
	if err := r.validate(); err != nil {
		return Record{}, err
	}
	if err := r.verify(s); err != nil {
		return Record{}, err
	}
	return r, nil
}

// verify checks that the record's key is its verifier's and signed it.
func (r Record) verify(s signed) error {
	pub, err := crypto.UnmarshalPublicKey(r.Key)
	if err != nil {
		return fmt.Errorf("%w: record key: %v", ErrInvalid, err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return fmt.Errorf("%w: record key: %v", ErrInvalid, err)
	}
	if id.String() != r.Verifier {
		return fmt.Errorf("%w: record signed by %s, not by the verifier it names (%s)", ErrInvalid, id, r.Verifier)
	}
	if ok, err := pub.Verify(sigInput(s.Body), s.Sig); err != nil || !ok {
		return fmt.Errorf("%w: record signature does not verify for %s", ErrInvalid, r.Verifier)
	}
	return nil
}

// MaxSkew is how far ahead of the reader's clock a record's time may be.
const MaxSkew = 10 * time.Minute

// Check refuses a record of another network, about another provider
// than the one it came with or was asked of, or from the future.
func (r Record) Check(network string, provider peer.ID, now time.Time) error {
	switch {
	case r.Network != network:
		return fmt.Errorf("%w: record of network %q, this is %q", ErrInvalid, r.Network, network)
	case r.Provider != provider.String():
		return fmt.Errorf("%w: record about %s, not %s: replayed for another provider", ErrInvalid, r.Provider, provider)
	case r.Time().After(now.Add(MaxSkew)):
		return fmt.Errorf("%w: record dated %s, ahead of %s", ErrInvalid, r.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// validate checks every field of a record on its own.
func (r Record) validate() error {
	if err := r.validateWho(); err != nil {
		return fmt.Errorf("%w: record: %w", ErrInvalid, err)
	}
	if err := r.validateWhat(); err != nil {
		return fmt.Errorf("%w: record: %w", ErrInvalid, err)
	}
	return nil
}

func (r Record) validateWho() error {
	if r.V != Version {
		return fmt.Errorf("version %d, want %d", r.V, Version)
	}
	if r.Network == "" || len(r.Network) > 64 {
		return fmt.Errorf("network %q", r.Network)
	}
	if _, err := peer.Decode(r.Verifier); err != nil {
		return fmt.Errorf("verifier %q: %v", r.Verifier, err)
	}
	if _, err := peer.Decode(r.Provider); err != nil {
		return fmt.Errorf("provider %q: %v", r.Provider, err)
	}
	return checkGPUs(r.GPUs)
}

func (r Record) validateWhat() error {
	switch {
	case !token(r.Class, 64):
		return fmt.Errorf("class %q", r.Class)
	case r.N < 1 || r.N > challenge.MaxN:
		return fmt.Errorf("n=%d outside [1, %d]", r.N, challenge.MaxN)
	case !slices.Contains([]challenge.Precision{challenge.FP16, challenge.BF16, challenge.TF32, challenge.FP32}, r.Precision):
		return fmt.Errorf("precision %q", r.Precision)
	case r.Rows > challenge.MaxRows:
		return fmt.Errorf("%d rows over %d", r.Rows, challenge.MaxRows)
	case len(r.SeedHash) != sha256.Size:
		return fmt.Errorf("seed hash of %d bytes", len(r.SeedHash))
	case r.At <= 0 || r.ElapsedUs < 0 || r.RTTUs < 0:
		return fmt.Errorf("time %d, elapsed %d µs, round trip %d µs", r.At, r.ElapsedUs, r.RTTUs)
	case len(r.Detail) > maxReasonBytes:
		return fmt.Errorf("detail of %d bytes", len(r.Detail))
	}
	switch {
	case r.Outcome == Pass && r.Reason == "" && r.Detail == "":
	case r.Outcome == Fail && slices.Contains(reasons, r.Reason):
	default:
		return fmt.Errorf("outcome %q with reason %q", r.Outcome, r.Reason)
	}
	return nil
}

// checkGPUs accepts 1 to challenge.MaxGPUs distinct UUIDs.
func checkGPUs(gpus []string) error {
	if len(gpus) < 1 || len(gpus) > challenge.MaxGPUs {
		return fmt.Errorf("%d GPUs outside [1, %d]", len(gpus), challenge.MaxGPUs)
	}
	seen := make(map[string]bool, len(gpus))
	for _, u := range gpus {
		if !token(u, 64) || seen[u] {
			return fmt.Errorf("GPU %q twice or not a UUID", u)
		}
		seen[u] = true
	}
	return nil
}

// token accepts 1 to max printable ASCII characters without spaces: a
// UUID, a class key.
func token(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := range len(s) {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// reasonOf names err's reason; "" for an error that is no verdict on the
// provider.
func reasonOf(err error) string {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{ErrTimeout, ReasonTimeout},
		{ErrRefused, ReasonRefused},
		{challenge.ErrEnvelope, ReasonEnvelope},
		{challenge.ErrWrongRow, ReasonWrongRow},
		{challenge.ErrNotCommitted, ReasonNotCommitted},
		{challenge.ErrWrongY, ReasonWrongY},
		{challenge.ErrReplay, ReasonReplay},
		{challenge.ErrProtocol, ReasonProtocol},
		{challenge.ErrInvalid, ReasonProtocol},
		{ErrInvalid, ReasonProtocol},
		{ErrBrokeOff, ReasonProtocol},
	} {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return ""
}
