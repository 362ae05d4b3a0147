package receipt

import (
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Kind is who signed a receipt: both sides, or one alone, whose word is
// then all that backs it.
type Kind string

const (
	Both          Kind = "both"
	ProviderOnly  Kind = "provider-only"
	RequesterOnly Kind = "requester-only"
)

// Signed is a receipt that decoded and verified, its kind, and the bytes
// it came in.
type Signed struct {
	Receipt
	Kind Kind   `json:"kind"`
	Raw  []byte `json:"-"`
}

// envelope is what travels: the receipt's canonical bytes and each
// side's public key (protobuf, so that every key type verifies, not only
// those a peer ID inlines) and signature over a domain tag and the body.
type envelope struct {
	Body         []byte `cbor:"b"`
	ProviderKey  []byte `cbor:"pk,omitempty"`
	ProviderSig  []byte `cbor:"ps,omitempty"`
	RequesterKey []byte `cbor:"rk,omitempty"`
	RequesterSig []byte `cbor:"rs,omitempty"`
}

// The sides' domain tags: a receipt's signature is nothing else's, and
// one side's signature never stands for the other's.
const (
	providerTag  = "aixblock-receipt/1/provider\x00"
	requesterTag = "aixblock-receipt/1/requester\x00"
)

func sigInput(tag string, body []byte) []byte { return append([]byte(tag), body...) }

// MaxSkew is how far ahead of the reader's clock a receipt may be dated.
const MaxSkew = 10 * time.Minute

// Sign checks the receipt, sets its version, sorts its proofs, and signs it with key as
// the side key belongs to (the provider first, in the daemon): the
// result is a one-sided receipt until the other side countersigns it.
func (r Receipt) Sign(key crypto.PrivKey) ([]byte, error) {
	r.V, r.Proofs = Version, slices.Sorted(slices.Values(r.Proofs))
	if err := r.validate(); err != nil {
		return nil, err
	}
	body, err := encode(r)
	if err != nil {
		return nil, err
	}
	var env envelope
	env.Body = body
	if err := env.add(r, key); err != nil {
		return nil, err
	}
	return encode(env)
}

// Countersign adds the other side's signature to a one-sided receipt,
// made with key, once check (the countersigner's own view of the deal)
// accepts the receipt.
func Countersign(raw []byte, key crypto.PrivKey, check func(Receipt) error) ([]byte, error) {
	s, env, err := decodeSigned(raw)
	if err != nil {
		return nil, err
	}
	if s.Kind == Both {
		return nil, fmt.Errorf("%w: countersign: signed by both sides already", ErrInvalid)
	}
	if err := check(s.Receipt); err != nil {
		return nil, fmt.Errorf("receipt: countersign: %w", err)
	}
	if err := env.add(s.Receipt, key); err != nil {
		return nil, err
	}
	if env.ProviderSig == nil || env.RequesterSig == nil {
		return nil, fmt.Errorf("receipt: countersign: the receipt's %s signed it already", s.Kind)
	}
	return encode(env)
}

// add signs the envelope's body as the side key belongs to.
func (env *envelope) add(r Receipt, key crypto.PrivKey) error {
	pub, id, err := pubKey(key)
	if err != nil {
		return fmt.Errorf("receipt: signer: %w", err)
	}
	tag, k, sig := providerTag, &env.ProviderKey, &env.ProviderSig
	switch id.String() {
	case r.Provider:
	case r.Requester:
		tag, k, sig = requesterTag, &env.RequesterKey, &env.RequesterSig
	default:
		return fmt.Errorf("receipt: signer %s is neither side of deal %s", id, r.Deal)
	}
	s, err := key.Sign(sigInput(tag, env.Body))
	if err != nil {
		return fmt.Errorf("receipt: sign: %w", err)
	}
	*k, *sig = pub, s
	return nil
}

// Decode reads a signed receipt from anywhere: it bounds the size,
// refuses any encoding but the canonical one, checks every field, and
// verifies each signature present with the key beside it, which must be
// the key of the side it stands for. Whether the receipt is of this
// network and not from the future is Check's.
func Decode(raw []byte) (Signed, error) {
	s, _, err := decodeSigned(raw)
	return s, err
}

func decodeSigned(raw []byte) (Signed, envelope, error) {
	env, err := decode("signed receipt", raw, MaxReceiptBytes, func(envelope) uint8 { return Version })
	if err != nil {
		return Signed{}, envelope{}, err
	}
	r, err := decode("receipt", env.Body, MaxReceiptBytes, func(r Receipt) uint8 { return r.V })
	if err != nil {
		return Signed{}, envelope{}, err
	}
	if err := r.validate(); err != nil {
		return Signed{}, envelope{}, err
	}
	kind, err := env.verify(r)
	if err != nil {
		return Signed{}, envelope{}, err
	}
	return Signed{Receipt: r, Kind: kind, Raw: raw}, env, nil
}

// verify checks each side's signature that is present, and that one is.
func (env envelope) verify(r Receipt) (Kind, error) {
	p, err := verifySide("provider", r.Provider, providerTag, env.Body, env.ProviderKey, env.ProviderSig)
	if err != nil {
		return "", err
	}
	q, err := verifySide("requester", r.Requester, requesterTag, env.Body, env.RequesterKey, env.RequesterSig)
	if err != nil {
		return "", err
	}
	switch {
	case p && q:
		return Both, nil
	case p:
		return ProviderOnly, nil
	case q:
		return RequesterOnly, nil
	}
	return "", fmt.Errorf("%w: deal %s: signed by neither side", ErrForged, r.Deal)
}

// verifySide reports whether side signed: false with neither key nor
// signature, an error with one of them, or a key that is not the
// side's, or a signature that does not verify.
func verifySide(side, id, tag string, body, key, sig []byte) (bool, error) {
	if key == nil && sig == nil {
		return false, nil
	}
	pub, err := crypto.UnmarshalPublicKey(key)
	if err != nil {
		return false, fmt.Errorf("%w: %s key: %v", ErrForged, side, err)
	}
	kid, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return false, fmt.Errorf("%w: %s key: %v", ErrForged, side, err)
	}
	if kid.String() != id {
		return false, fmt.Errorf("%w: %s signature made by %s, not by the %s it names (%s)", ErrForged, side, kid, side, id)
	}
	if ok, err := pub.Verify(sigInput(tag, body), sig); err != nil || !ok {
		return false, fmt.Errorf("%w: %s signature does not verify for %s", ErrForged, side, id)
	}
	return true, nil
}

// Check refuses a receipt of another network than network, or dated
// more than MaxSkew ahead of now.
func (s Signed) Check(network string, now time.Time) error {
	switch {
	case s.Network != network:
		return fmt.Errorf("%w: deal %s: network %q, this is %q", ErrNetwork, s.Deal, s.Network, network)
	case s.Ended().After(now.Add(MaxSkew)):
		return fmt.Errorf("%w: deal %s: ended at %s, ahead of %s", ErrFuture, s.Deal,
			s.Ended().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// SignedBy reports whether p signed the receipt.
func (s Signed) SignedBy(p peer.ID) bool {
	switch p.String() {
	case s.Provider:
		return s.Kind != RequesterOnly
	case s.Requester:
		return s.Kind != ProviderOnly
	}
	return false
}
