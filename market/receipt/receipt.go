package receipt

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aixblock/aixblock/p2p"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Outcomes of a deal's verification, as its receipt records them.
const (
	// None: the job ended and nothing checked its result.
	None = "none"
	// Agreed: the job was replicated and its result agreed with the
	// majority.
	Agreed = "agreed"
	// Outvoted: the job was replicated and the majority's result was
	// another.
	Outvoted = "outvoted"
	// Failed: the job did not complete (it failed, the provider stopped
	// it or broke off).
	Failed = "failed"
	// SampledOK and SampledMismatch: the job was re-run as a spot check
	// on another provider, which agreed or did not.
	SampledOK       = "sampled-ok"
	SampledMismatch = "sampled-mismatch"
)

var outcomes = []string{None, Agreed, Outvoted, Failed, SampledOK, SampledMismatch}

// ValidOutcome says whether o is one of the outcomes a receipt records.
func ValidOutcome(o string) bool { return slices.Contains(outcomes, o) }

// Outcomes lists the outcomes a receipt records.
func Outcomes() []string { return slices.Clone(outcomes) }

// Bounds of a receipt's fields.
const (
	// MaxProofs is the most proof-of-GPU records a receipt names.
	MaxProofs = 16
	// MaxRun is the longest run time a receipt records.
	MaxRun = 400 * 24 * time.Hour
	// maxCIDChars bounds the result's CID as a string.
	maxCIDChars = 128
)

var (
	walletRE = regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`)
	hashRE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// maxAmount is 2^96-1, the most a payment channel holds.
var maxAmount = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 96), big.NewInt(1))

// Receipt is what is left of an ended deal: who dealt with whom, for
// how long, what was paid, what came of it and what stood behind the
// provider's claim. Both sides sign it with their libp2p keys (Sign,
// Countersign); it travels as signed bytes (Signed.Raw).
type Receipt struct {
	V       uint8  `cbor:"v" json:"v"`
	Network string `cbor:"net" json:"network"`
	// Deal is the deal's ID (market.DealTerms.ID).
	Deal string `cbor:"d" json:"deal_id"`
	// Provider and Requester are the two sides' peer IDs; their wallets
	// the addresses that signed the deal.
	Provider        string `cbor:"p" json:"provider"`
	Requester       string `cbor:"r" json:"requester"`
	ProviderWallet  string `cbor:"pw" json:"provider_wallet"`
	RequesterWallet string `cbor:"rw" json:"requester_wallet"`
	// RunMs is the metered run time in milliseconds.
	RunMs int64 `cbor:"rt" json:"run_ms"`
	// Token is "native" or the ERC-20's address; Paid the base units the
	// final voucher paid, in decimal.
	Token string `cbor:"t" json:"token"`
	Paid  string `cbor:"a" json:"paid"`
	// Result is the result's CID, when there was one.
	Result  string `cbor:"c,omitempty" json:"result,omitempty"`
	Outcome string `cbor:"o" json:"outcome"`
	// Proofs are the IDs (market/proof Record.ID) of the proof-of-GPU
	// records that stood behind the deal, sorted.
	Proofs []string `cbor:"g,omitempty" json:"proofs,omitempty"`
	// EndedAt is when the deal ended, Unix milliseconds.
	EndedAt int64 `cbor:"e" json:"ended_at_ms"`
}

// Ended is when the deal ended.
func (r Receipt) Ended() time.Time { return time.UnixMilli(r.EndedAt) }

// Run is the metered run time.
func (r Receipt) Run() time.Duration { return time.Duration(r.RunMs) * time.Millisecond }

// Amount is what was paid, zero when Paid does not parse (a receipt that
// validated always does).
func (r Receipt) Amount() *big.Int {
	v, ok := new(big.Int).SetString(r.Paid, 10)
	if !ok {
		return new(big.Int)
	}
	return v
}

// ID is the hex SHA-256 of the receipt's canonical bytes: one per
// receipt, whoever signed it so far.
func (r Receipt) ID() string {
	b, err := encode(r)
	if err != nil {
		return ""
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// validate checks every field of a receipt on its own, naming the first
// one out of bounds.
func (r Receipt) validate() error {
	if err := r.validateWho(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := r.validateWhat(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

func (r Receipt) validateWho() error {
	if r.V != Version {
		return fmt.Errorf("version %d, want %d", r.V, Version)
	}
	if err := p2p.ValidateNetwork(r.Network); err != nil {
		return err
	}
	if !hashRE.MatchString(r.Deal) {
		return fmt.Errorf("deal ID %q: want 64 lower-case hex digits", clip(r.Deal))
	}
	if err := checkPeer("provider", r.Provider); err != nil {
		return err
	}
	if err := checkPeer("requester", r.Requester); err != nil {
		return err
	}
	switch {
	case r.Provider == r.Requester:
		return fmt.Errorf("provider and requester are one peer (%s)", r.Provider)
	case !walletRE.MatchString(r.ProviderWallet):
		return fmt.Errorf("provider wallet %q is not an address", clip(r.ProviderWallet))
	case !walletRE.MatchString(r.RequesterWallet):
		return fmt.Errorf("requester wallet %q is not an address", clip(r.RequesterWallet))
	case strings.EqualFold(r.ProviderWallet, r.RequesterWallet):
		return fmt.Errorf("provider and requester share wallet %s", r.ProviderWallet)
	}
	return nil
}

func (r Receipt) validateWhat() error {
	switch {
	case r.RunMs < 0 || r.RunMs > MaxRun.Milliseconds():
		return fmt.Errorf("run time %d ms outside [0, %d]", r.RunMs, MaxRun.Milliseconds())
	case r.Token != "native" && !walletRE.MatchString(r.Token):
		return fmt.Errorf("token %q is not an address or native", clip(r.Token))
	case !slices.Contains(outcomes, r.Outcome):
		return fmt.Errorf("outcome %q: want one of %v", clip(r.Outcome), outcomes)
	case r.EndedAt <= 0:
		return fmt.Errorf("ended at %d ms", r.EndedAt)
	}
	if err := checkPaid(r.Paid); err != nil {
		return err
	}
	if err := checkResult(r.Result); err != nil {
		return err
	}
	return checkProofs(r.Proofs)
}

func checkPeer(field, s string) error {
	if _, err := peer.Decode(s); err != nil {
		return fmt.Errorf("%s %q: %v", field, clip(s), err)
	}
	return nil
}

// checkPaid accepts base units in decimal, in their one spelling (no
// sign, no leading zero), up to what a channel holds.
func checkPaid(s string) error {
	v, ok := new(big.Int).SetString(s, 10)
	if !ok || v.Sign() < 0 || v.Cmp(maxAmount) > 0 || v.String() != s {
		return fmt.Errorf("paid %q is not an amount of base units", clip(s))
	}
	return nil
}

// checkResult accepts no CID or a CID in its one string form.
func checkResult(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > maxCIDChars {
		return fmt.Errorf("result CID of %d characters over %d", len(s), maxCIDChars)
	}
	c, err := cid.Decode(s)
	if err != nil || c.String() != s {
		return fmt.Errorf("result %q is not a CID in its canonical form (%v)", clip(s), err)
	}
	return nil
}

// checkProofs accepts at most MaxProofs record IDs, sorted, each once.
func checkProofs(ids []string) error {
	if len(ids) > MaxProofs {
		return fmt.Errorf("%d proof records over %d", len(ids), MaxProofs)
	}
	for i, id := range ids {
		if !hashRE.MatchString(id) {
			return fmt.Errorf("proof record ID %q: want 64 lower-case hex digits", clip(id))
		}
		if i > 0 && ids[i-1] >= id {
			return fmt.Errorf("proof record IDs not sorted or repeated at %d", i)
		}
	}
	return nil
}

// clip shortens what an error quotes of a stranger's field.
func clip(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:77] + "..."
}

// pubKey is the public key of key, in protobuf bytes, and its peer ID.
func pubKey(key crypto.PrivKey) ([]byte, peer.ID, error) {
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	b, err := crypto.MarshalPublicKey(key.GetPublic())
	return b, id, err
}
