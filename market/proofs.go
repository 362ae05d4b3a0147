package market

import (
	"context"
	"fmt"

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

// loan is GPUs lent to a proof-of-GPU challenge.
type loan struct {
	preempt func()
}

// Lend lends free GPUs to a proof-of-GPU challenge: they stay free in the
// advert and to every bid, and a bid or deal that takes one calls preempt
// first (jobs come first; the challenge is asked again later). It
// refuses, naming the GPU, one reserved, allocated, in use by a job or
// lent already. release ends the loan.
func (m *Market) Lend(uuids []string, preempt func()) (release func(), err error) {
	use := m.inUse()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range uuids {
		if m.taken(u, use) || m.lent[u] != nil {
			return nil, fmt.Errorf("GPU %s is in use", u)
		}
	}
	l := &loan{preempt: preempt}
	for _, u := range uuids {
		m.lent[u] = l
	}
	return func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for u, x := range m.lent {
			if x == l {
				delete(m.lent, u)
			}
		}
	}, nil
}

// preemptLocked ends the loan of GPU u, if any, calling its preempt once
// (on a goroutine: it must not wait on the market's lock).
func (m *Market) preemptLocked(u string) {
	l := m.lent[u]
	if l == nil {
		return
	}
	for v, x := range m.lent {
		if x == l {
			delete(m.lent, v)
		}
	}
	m.log.Info("a bid takes GPUs lent to a challenge; the challenge stops", "gpu", u)
	m.spawn(context.Background(), func(context.Context) { l.preempt() })
}
