package proof

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// How records count in a Status: a signer's weight halves every
// HalfLife of its record's age; records older than MaxAge count for
// nothing.
const (
	HalfLife = 7 * 24 * time.Hour
	MaxAge   = 30 * 24 * time.Hour
)

// Weights of Trust: one of this node's own records outweighs several of
// peers it has dealt with.
const (
	TrustSelf  = 8
	TrustDealt = 1
)

// Trust weighs signers as a requester does: itself first (TrustSelf),
// then the peers it has dealt with (TrustDealt), and nobody else: a
// stranger's records cost nothing to make.
func Trust(self peer.ID, dealt func(peer.ID) bool) func(peer.ID) int {
	return func(p peer.ID) int {
		switch {
		case p == self:
			return TrustSelf
		case dealt != nil && dealt(p):
			return TrustDealt
		}
		return 0
	}
}

// States of a provider.
const (
	Verified   = "verified"
	Failed     = "failed"
	Unverified = "unverified"
)

// Status sums up the records about a provider from the signers trusted.
type Status struct {
	Provider string `json:"provider"`
	State    string `json:"state"`
	// VerifiedBy and FailedBy count the trusted signers whose newest
	// record (within MaxAge) is a pass or a failure.
	VerifiedBy int `json:"verified_by"`
	FailedBy   int `json:"failed_by,omitempty"`
	// LastAt is the newest pass counted; Classes the classes passed.
	LastAt  time.Time `json:"last_at,omitzero"`
	Classes []string  `json:"classes,omitempty"`
	// Reason and Detail are the weightiest failure counted.
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Score is the passes' weights less the failures', each its signer's
	// weight halved every HalfLife: verified above zero, failed at or
	// below it when anything counted.
	Score float64 `json:"score"`
}

// String is how the CLI shows it: "verified by N, last at T",
// "failed: why" or "unverified".
func (s Status) String() string {
	switch s.State {
	case Verified:
		return fmt.Sprintf("verified by %d, last at %s", s.VerifiedBy, s.LastAt.UTC().Format(time.RFC3339))
	case Failed:
		if s.Detail != "" {
			return "failed: " + s.Detail
		}
		return "failed: " + s.Reason
	}
	return Unverified
}

// Status weighs the records about provider: each signer's newest within
// MaxAge counts, at trusted(signer) (zero or less: not at all) halved
// every HalfLife of its age.
func (s *Store) Status(provider peer.ID, trusted func(peer.ID) int, now time.Time) Status {
	st := Status{Provider: provider.String(), State: Unverified}
	worst := 0.0
	for _, rec := range newestBySigner(s.Records(provider)) {
		age := now.Sub(rec.Time())
		signer, err := peer.Decode(rec.Verifier)
		if err != nil || age > MaxAge || age < -MaxSkew {
			continue
		}
		w := float64(trusted(signer)) * math.Exp2(-max(age, 0).Hours()/HalfLife.Hours())
		if w <= 0 {
			continue
		}
		if rec.Passed() {
			st.Score += w
			st.VerifiedBy++
			if rec.Time().After(st.LastAt) {
				st.LastAt = rec.Time()
			}
			if !slices.Contains(st.Classes, rec.Class) {
				st.Classes = append(st.Classes, rec.Class)
			}
			continue
		}
		st.Score -= w
		st.FailedBy++
		if w > worst {
			worst, st.Reason, st.Detail = w, rec.Reason, rec.Detail
		}
	}
	slices.Sort(st.Classes)
	switch {
	case st.VerifiedBy+st.FailedBy == 0:
	case st.Score > 0:
		st.State = Verified
	default:
		st.State = Failed
	}
	return st
}

// newestBySigner keeps each signer's first record of recs (newest
// first).
func newestBySigner(recs []Record) []Record {
	seen := map[string]bool{}
	var out []Record
	for _, r := range recs {
		if !seen[r.Verifier] {
			seen[r.Verifier] = true
			out = append(out, r)
		}
	}
	return out
}
