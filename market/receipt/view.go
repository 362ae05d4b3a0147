package receipt

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// PaidOnChain is what the escrow paid a provider's wallet, counted by
// distinct payers: money paid by many wallets is costly to fake. The
// chain implements it and the daemon hands it in.
type PaidOnChain interface {
	PaidOnChain(ctx context.Context, providerWallet string) (payers int, total *big.Int, err error)
}

// How receipts count in a Summary: a receipt's weight halves every
// HalfLife of its age; receipts older than MaxAge count for nothing.
const (
	HalfLife = 30 * 24 * time.Hour
	MaxAge   = 180 * 24 * time.Hour
)

// Weights of the requesters whose word backs a receipt: this node's own
// receipts outweigh several of peers it has dealt with; a stranger's
// count for nothing, since a stranger costs nothing to make.
const (
	TrustSelf  = 8
	TrustDealt = 1
	// MaxPerRequester is the most receipts of one dealt peer that count
	// about one provider (its newest): a peer that colludes with a
	// provider lends it at most this many.
	MaxPerRequester = 8
)

// What an outcome is worth in a Summary's score: a verified result more
// than an unchecked one, a result the majority outvoted more than a
// failure.
var outcomeValue = map[string]float64{None: 1, Agreed: 2, SampledOK: 2, Failed: -2, Outvoted: -4, SampledMismatch: -4}

// ViewConfig is whom a requester trusts and what else it asks.
type ViewConfig struct {
	// Self is the requester's own peer ID.
	Self peer.ID
	// Dealt names the peers it has dealt with; nil: none.
	Dealt func(peer.ID) bool
	// Chain, when set, is asked what the escrow paid Wallet.
	Chain  PaidOnChain
	Wallet string
}

// Summary is a requester's view of a provider from receipts, and how
// much evidence stands behind it.
type Summary struct {
	Provider string `json:"provider"`
	// Completed counts the deals that ended with a result (unchecked,
	// agreed or sampled-ok), Verified those of them that were checked;
	// Failed those that did not complete; Outvoted those whose result
	// the majority or a spot check contradicted. Each from the receipts
	// that count: this node's own and dealt peers' (MaxPerRequester
	// each), within MaxAge.
	Completed int `json:"completed"`
	Verified  int `json:"verified"`
	Failed    int `json:"failed"`
	Outvoted  int `json:"outvoted"`
	// Paid is what those receipts say was paid, per token; Payers the
	// distinct requester wallets that paid.
	Paid   []Amount `json:"paid,omitempty"`
	Payers int      `json:"distinct_payers"`
	// LastAt is the newest receipt counted.
	LastAt time.Time `json:"last_at,omitzero"`
	// Score is the counted outcomes' values, each weighted by its
	// requester's trust and halved every HalfLife.
	Score    float64  `json:"score"`
	Evidence Evidence `json:"evidence"`
	OnChain  *OnChain `json:"on_chain,omitempty"`
}

// Evidence counts the receipts behind a Summary by trust level.
type Evidence struct {
	// Own: receipts this node signed as requester. Dealt: receipts a
	// peer it dealt with signed as requester. Those two count.
	Own   int `json:"own"`
	Dealt int `json:"dealt"`
	// Beyond: receipts older than MaxAge, and dealt peers' over
	// MaxPerRequester each; Stranger: receipts only strangers signed as
	// requester; ProviderOnly: receipts only the provider signed. None
	// of those count.
	Beyond       int `json:"beyond"`
	Stranger     int `json:"stranger"`
	ProviderOnly int `json:"provider_only"`
	// OneSided: of those counted, the requester's word alone (the
	// provider did not sign).
	OneSided int `json:"one_sided"`
}

// Amount is base units of a token.
type Amount struct {
	Token  string `json:"token"`
	Amount string `json:"amount"`
}

// OnChain is what the escrow paid the provider's wallet, or why that is
// not known.
type OnChain struct {
	Wallet string `json:"wallet"`
	Payers int    `json:"distinct_payers"`
	Total  string `json:"total"`
	Error  string `json:"error,omitempty"`
}

// String is how the CLI shows it.
func (s Summary) String() string {
	ev := s.Evidence
	out := fmt.Sprintf("%d completed (%d verified), %d failed, %d outvoted; %d payers; evidence: %d own, %d from peers dealt with, %d untrusted",
		s.Completed, s.Verified, s.Failed, s.Outvoted, s.Payers, ev.Own, ev.Dealt, ev.Beyond+ev.Stranger+ev.ProviderOnly)
	if c := s.OnChain; c != nil && c.Error == "" {
		out += fmt.Sprintf("; on chain %s paid by %d payers", c.Total, c.Payers)
	}
	return out
}

// View sums up the receipts about provider as cfg's requester trusts
// them: its own and its dealt peers' count, each weighted and aged;
// strangers' and the provider's own word are only counted as evidence.
func View(ctx context.Context, provider peer.ID, receipts []Signed, cfg ViewConfig, now time.Time) Summary {
	sum := Summary{Provider: provider.String()}
	t := tally{paid: map[string]*big.Int{}, payers: map[string]bool{}, per: map[string]int{}}
	for _, r := range newestFirst(provider, receipts) {
		t.add(&sum, r, cfg, now)
	}
	sum.Payers = len(t.payers)
	for _, tok := range slices.Sorted(maps.Keys(t.paid)) {
		sum.Paid = append(sum.Paid, Amount{Token: tok, Amount: t.paid[tok].String()})
	}
	if cfg.Chain != nil && cfg.Wallet != "" {
		sum.OnChain = onChain(ctx, cfg.Chain, cfg.Wallet)
	}
	return sum
}

// View sums up the store's receipts about provider.
func (s *Store) View(ctx context.Context, provider peer.ID, cfg ViewConfig, now time.Time) Summary {
	return View(ctx, provider, s.Receipts(provider), cfg, now)
}

// newestFirst is the receipts about provider, one per deal, newest
// first.
func newestFirst(provider peer.ID, receipts []Signed) []Signed {
	seen := map[string]bool{}
	var out []Signed
	for _, r := range receipts {
		if r.Provider == provider.String() && !seen[r.Deal] {
			seen[r.Deal] = true
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b Signed) int { return -cmp.Compare(a.EndedAt, b.EndedAt) })
	return out
}

// tally is what View adds up besides the Summary's own fields.
type tally struct {
	paid   map[string]*big.Int // by token
	payers map[string]bool     // requester wallets, lower case
	per    map[string]int      // counted receipts by dealt requester
}

// add counts r as its requester's trust says.
func (t *tally) add(sum *Summary, r Signed, cfg ViewConfig, now time.Time) {
	w := t.weigh(&sum.Evidence, r, cfg, now)
	if w == 0 {
		return
	}
	if r.Kind == RequesterOnly {
		sum.Evidence.OneSided++
	}
	switch r.Outcome {
	case None, Agreed, SampledOK:
		sum.Completed++
		if r.Outcome != None {
			sum.Verified++
		}
	case Failed:
		sum.Failed++
	case Outvoted, SampledMismatch:
		sum.Outvoted++
	}
	age := max(now.Sub(r.Ended()), 0)
	sum.Score += w * outcomeValue[r.Outcome] * math.Exp2(-age.Hours()/HalfLife.Hours())
	if r.Ended().After(sum.LastAt) {
		sum.LastAt = r.Ended()
	}
	if amt := r.Amount(); amt.Sign() > 0 {
		if t.paid[r.Token] == nil {
			t.paid[r.Token] = new(big.Int)
		}
		t.paid[r.Token].Add(t.paid[r.Token], amt)
		t.payers[strings.ToLower(r.RequesterWallet)] = true
	}
}

// weigh is r's requester's weight, zero when r does not count; it counts
// r in ev by its trust level.
func (t *tally) weigh(ev *Evidence, r Signed, cfg ViewConfig, now time.Time) float64 {
	req, _ := peer.Decode(r.Requester)
	switch {
	case r.Kind == ProviderOnly:
		ev.ProviderOnly++
		return 0
	case now.Sub(r.Ended()) > MaxAge:
		ev.Beyond++
		return 0
	case req == cfg.Self:
		ev.Own++
		return TrustSelf
	case cfg.Dealt == nil || !cfg.Dealt(req):
		ev.Stranger++
		return 0
	case t.per[r.Requester] >= MaxPerRequester:
		ev.Beyond++
		return 0
	}
	t.per[r.Requester]++
	ev.Dealt++
	return TrustDealt
}

// onChain asks the chain what the escrow paid wallet.
func onChain(ctx context.Context, c PaidOnChain, wallet string) *OnChain {
	oc := &OnChain{Wallet: wallet}
	payers, total, err := c.PaidOnChain(ctx, wallet)
	if err != nil {
		oc.Error = err.Error()
		return oc
	}
	oc.Payers = payers
	if total != nil {
		oc.Total = total.String()
	}
	return oc
}
