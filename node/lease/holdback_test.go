package lease

import (
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/market/receipt"
	"github.com/aixblock/aixblock/p2p/p2ptest"
)

// A deal that holds back 20%: the vouchers cover the rest as the job
// runs and at its end; the verdict then pays the share, or keeps it for
// a result the majority outvoted. Nothing is held back twice and a
// verdict is given once.
func TestHoldbackPaidOnlyOnAgreement(t *testing.T) {
	for _, tc := range []struct {
		verdict  string
		paid     bool
		holdback string
	}{
		{receipt.Agreed, true, holdbackPaid},
		{receipt.SampledOK, true, holdbackPaid},
		{receipt.None, true, holdbackPaid}, // not drawn for a check, or no majority
		{receipt.Failed, true, holdbackPaid},
		{receipt.Outvoted, false, holdbackWithheld},
		{receipt.SampledMismatch, false, holdbackWithheld},
	} {
		t.Run(tc.verdict, func(t *testing.T) {
			// 1000 base units a second, paid every 200 ms: what runs ahead
			// of the run (one interval, 160 after the holdback) is less
			// than the share held back from a run of 2 s (400).
			r := newRequesterRig(t, "3600000", 2000)
			id := r.runToEnd(t, RemoteOptions{HoldbackBps: 2000}, 2*time.Second)
			rj := r.record(id)
			full := jobCost(&rj)
			part := payable(r.deal, full)
			ahead := payable(r.deal, dealCost(r.deal, r.rq.interval))
			p2ptest.WaitFor(t, waitLong, func() bool { return r.fp.best().Cmp(part) >= 0 }, "the final voucher, less the holdback")
			r.rq.payChannel(t.Context(), &rj) // a round more: still not the share
			if r.fp.best().Cmp(new(big.Int).Add(part, ahead)) > 0 {
				t.Fatalf("vouched %s before the verdict, the cost less the holdback is %s (full %s): more than one interval ahead", r.fp.best(), part, full)
			}
			if err := r.rq.Settle(t.Context(), id, tc.verdict); err != nil {
				t.Fatal(err)
			}
			if err := r.rq.Settle(t.Context(), id, receipt.Outvoted); err != nil {
				t.Fatalf("a second verdict: %v", err)
			}
			if got := r.record(id); got.Holdback != tc.holdback || got.Verdict != tc.verdict {
				t.Fatalf("holdback %q, verdict %q: want %q, %q (the first verdict kept)", got.Holdback, got.Verdict, tc.holdback, tc.verdict)
			}
			rj = r.record(id)
			r.rq.payChannel(t.Context(), &rj)
			if tc.paid {
				p2ptest.WaitFor(t, waitLong, func() bool { return r.fp.best().Cmp(full) >= 0 }, "the held-back share paid")
			} else if r.fp.best().Cmp(new(big.Int).Add(part, ahead)) > 0 {
				t.Fatalf("vouched %s after an outvoted result: want at most %s, the cost less the holdback and one interval ahead", r.fp.best(), new(big.Int).Add(part, ahead))
			}
			if most := dealCost(r.deal, time.Duration(r.deal.MaxDurationS)*time.Second); r.fp.best().Cmp(most) > 0 {
				t.Fatalf("vouched %s, over the deal's most %s", r.fp.best(), most)
			}
		})
	}
}

// A verdict on a job that has not ended, on a job this node does not
// have, or that is no outcome is refused with the reason.
func TestSettleRefused(t *testing.T) {
	r := newRequesterRig(t, "3600", 2000)
	spec := jobs.Spec{Image: "x", MaxPrice: "1", Resources: jobs.Resources{GPUs: 1}}
	j, err := r.rq.SubmitRemote(t.Context(), &spec, RemoteOptions{HoldbackBps: 2000})
	if err != nil {
		t.Fatal(err)
	}
	p2ptest.WaitFor(t, waitLong, func() bool { return r.state(j.ID) == jobs.Running }, "the job running")
	for _, tc := range []struct{ id, verdict, want string }{
		{j.ID, receipt.Agreed, "has not ended"},
		{"00000000000000aa", receipt.Agreed, "no such job"},
		{j.ID, "great", `outcome "great"`},
	} {
		err := r.rq.Settle(t.Context(), tc.id, tc.verdict)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("Settle(%s, %s): %v, want %q", tc.id, tc.verdict, err, tc.want)
		}
	}
	if err := r.rq.Settle(t.Context(), "00000000000000aa", receipt.Agreed); !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("an unknown job: %v, want jobs.ErrNotFound", err)
	}
}

// The provider counts as owed only what the deal does not hold back: a
// job paid its cost less the share runs on, one paid less is short.
func TestProviderOwedLessHoldback(t *testing.T) {
	deal := market.Deal{DealTerms: market.DealTerms{Price: "3600", MaxDurationS: 3600, GPUs: []string{"GPU-0"}, HoldbackBps: 2000}}
	cost := dealCost(deal, 100*time.Second) // 100
	for _, tc := range []struct {
		bps  int
		want int64
	}{{0, 100}, {2000, 80}, {2500, 75}, {5000, 50}} {
		deal.HoldbackBps = tc.bps
		if got := payable(deal, cost); got.Cmp(big.NewInt(tc.want)) != 0 {
			t.Fatalf("%d bps of 100 held back: payable %s, want %d", tc.bps, got, tc.want)
		}
	}
	// A base unit of rounding goes to the provider.
	deal.HoldbackBps = 3333
	if got := payable(deal, big.NewInt(10)); got.Cmp(big.NewInt(7)) != 0 {
		t.Fatalf("33.33%% of 10 held back: payable %s, want 7 (3.333 rounded down)", got)
	}
}

// A provider's money check of a deal that holds back 20%: vouchers that
// cover the run less the share keep the job running; less stops it.
func TestProviderCoverageWithHoldback(t *testing.T) {
	h := newHostile(t)
	h.deal.HoldbackBps = 2000
	const id = "00000000000000b1"
	h.prov.trackProvided(id, h.deal)
	t0 := time.Now()
	h.prov.mu.Lock()
	h.prov.runSince[id] = t0
	h.prov.mu.Unlock()
	if err := h.send(big.NewInt(48)); err != nil { // 80% of 60 s at 1 a second
		t.Fatal(err)
	}
	if why := h.prov.unpaid(id, t0.Add(61*time.Second)); why != "" {
		t.Fatalf("paid 48 for 60 s of 61 with 20%% held back, stopped: %s", why)
	}
	if why := h.prov.unpaid(id, t0.Add(120*time.Second)); !strings.Contains(why, "vouchers stopped") {
		t.Fatalf("paid 48 for 120 s with 20%% held back (96 owed): %q, want it stopped", why)
	}
}

// A requester that calls a result outvoted to keep the holdback gets no
// provider's signature on it: the receipt stays its word alone.
func TestProviderSignsNoVerdictAgainstItself(t *testing.T) {
	for _, tc := range []struct {
		verdict string
		signs   bool
	}{
		{receipt.Agreed, true}, {receipt.SampledOK, true}, {receipt.None, true},
		{receipt.Outvoted, false}, {receipt.SampledMismatch, false}, {"bogus", false},
	} {
		err := signsVerdict(tc.verdict)
		if (err == nil) != tc.signs {
			t.Fatalf("verdict %q: %v, want signed %v", tc.verdict, err, tc.signs)
		}
		if !tc.signs && receipt.ValidOutcome(tc.verdict) && !strings.Contains(err.Error(), "your word alone") {
			t.Fatalf("verdict %q refused without saying why: %v", tc.verdict, err)
		}
	}
}
