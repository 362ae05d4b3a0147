package market

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Bounds on the proof-of-GPU records an advert carries: a few, so that
// the advert stays well under MaxAdvertBytes.
const (
	MaxCarriedProofs     = 3
	maxCarriedProofBytes = 4 << 10
)

// ProofHook ties the market to proof of GPU (market/proof, wired by the
// daemon) without the market knowing how a challenge works. Nil turns it
// off: adverts carry no records, every provider stands unverified, and
// an offer that requires verified providers is refused.
type ProofHook interface {
	// Carried are the signed records this provider's advert carries.
	Carried() [][]byte
	// Seen takes an advert this node found: the records it carries are
	// checked and kept, and its provider is challenged when this node
	// has not verified it itself.
	Seen(a *ProviderAdvert)
	// Standing is a provider's proof-of-GPU standing for GPUs of class
	// (empty: any), as this node weighs the records it holds.
	Standing(provider, class string) ProofStanding
	// Vet challenges, now, the providers of adverts that do not stand
	// verified for class, and returns when each has a verdict or ctx
	// ends.
	Vet(ctx context.Context, adverts []*ProviderAdvert, class string)
}

// ProofStanding is how a provider stands: verified, unverified or
// failed, with the words the CLI shows ("verified by 2, last at T",
// "failed: answered outside the envelope", "unverified").
type ProofStanding struct {
	State string `json:"state"`
	Text  string `json:"text"`
}

// Proof-of-GPU states.
const (
	ProofVerified   = "verified"
	ProofUnverified = "unverified"
	ProofFailed     = "failed"
)

// tier orders standings for ranking: verified first, failed last.
func (s ProofStanding) tier() int {
	switch s.State {
	case ProofVerified:
		return 0
	case ProofFailed:
		return 2
	}
	return 1
}

// standing asks the hook, if any.
func (m *Market) standing(provider, class string) ProofStanding {
	if m.cfg.Proof == nil {
		return ProofStanding{State: ProofUnverified, Text: ProofUnverified}
	}
	return m.cfg.Proof.Standing(provider, class)
}

func checkCarried(proofs [][]byte) error {
	if len(proofs) > MaxCarriedProofs {
		return bad("advert carries %d proof records, at most %d", len(proofs), MaxCarriedProofs)
	}
	for _, p := range proofs {
		if len(p) == 0 || len(p) > maxCarriedProofBytes {
			return bad("advert carries a proof record of %d bytes: want 1 to %d", len(p), maxCarriedProofBytes)
		}
	}
	return nil
}

// carried are the records for this node's advert, cut to the bounds.
func (m *Market) carried() [][]byte {
	if m.cfg.Proof == nil {
		return nil
	}
	var out [][]byte
	for _, p := range m.cfg.Proof.Carried() {
		if len(out) == MaxCarriedProofs {
			break
		}
		if len(p) > 0 && len(p) <= maxCarriedProofBytes {
			out = append(out, p)
		}
	}
	return out
}

// vetTargets, for an offer that requires verified providers, challenges
// the providers about to be asked that this node does not hold verified,
// then keeps only those that stand verified; the others are refusals
// with their standing as the reason.
func (m *Market) vetTargets(ctx context.Context, targets []peer.ID, r OfferRequest) ([]peer.ID, []Refusal) {
	var adverts []*ProviderAdvert
	for _, p := range targets {
		if a := m.cachedAdvert(p); a != nil && m.standing(p.String(), r.Req.GPUClass).State != ProofVerified {
			adverts = append(adverts, a)
		}
	}
	if len(adverts) > 0 {
		vctx, cancel := context.WithTimeout(ctx, m.cfg.VetTimeout)
		m.cfg.Proof.Vet(vctx, adverts, r.Req.GPUClass)
		cancel()
	}
	var kept []peer.ID
	var refused []Refusal
	for _, p := range targets {
		if s := m.standing(p.String(), r.Req.GPUClass); s.State == ProofVerified {
			kept = append(kept, p)
		} else {
			refused = append(refused, unverifiedRefusal(p.String(), s))
		}
	}
	return kept, refused
}

func unverifiedRefusal(provider string, s ProofStanding) Refusal {
	return Refusal{Provider: provider, Code: CodeUnverified, Reason: "not a verified provider (" + s.Text + ")"}
}

// CodeUnverified is the refusal of a provider this requester would not
// deal with: the offer requires proof of GPU and the provider has none
// that counts here. The requester writes it; no provider sends it.
const CodeUnverified = "unverified"

// dropUnverified takes out of got the bids of providers that do not
// stand verified for their bid's class, as refusals.
func (m *Market) dropUnverified(got map[string]receivedBid) []Refusal {
	var refused []Refusal
	for p, b := range got {
		if s := m.standing(p, b.bid.GPUClass); s.State != ProofVerified {
			delete(got, p)
			refused = append(refused, unverifiedRefusal(p, s))
		}
	}
	return refused
}

// Hold keeps GPUs out of bids and deals for d, or until release is
// called: a proof-of-GPU challenge runs on them. It refuses, naming the
// GPU, when one is reserved, allocated or in use by a job.
func (m *Market) Hold(uuids []string, d time.Duration) (release func(), err error) {
	use := m.inUse()
	tag := fmt.Sprintf("proof:%d", time.Now().UnixNano())
	m.mu.Lock()
	for _, u := range uuids {
		if m.taken(u, use) {
			m.mu.Unlock()
			return nil, fmt.Errorf("GPU %s is in use", u)
		}
	}
	until := time.Now().Add(d)
	for _, u := range uuids {
		m.held[u] = &hold{dealID: tag, until: until}
	}
	m.mu.Unlock()
	m.requestRepublish()
	return func() {
		m.mu.Lock()
		for _, u := range uuids {
			if h := m.held[u]; h != nil && h.dealID == tag {
				delete(m.held, u)
			}
		}
		m.mu.Unlock()
		m.requestRepublish()
	}, nil
}
