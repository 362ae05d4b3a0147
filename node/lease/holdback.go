package lease

import (
	"context"
	"fmt"
	"math/big"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/market/receipt"
)

// Pay held back until a result verifies (a spec's verify.holdback).
//
// The deal both sides sign carries the share (market.DealTerms'
// HoldbackBps). While the job runs, and once it ends, the requester's
// vouchers cover the cost less that share, and the provider counts the
// same as owed (payable). Settle, which the checker calls once the
// job's result is judged, pays the share with the channel's next
// voucher, or withholds it for a result the majority outvoted; the
// deal's receipt waits for the verdict and records it.

// Where a held-back share stands (Record.Holdback).
const (
	holdbackHeld     = "held"
	holdbackPaid     = "paid"
	holdbackWithheld = "withheld"
)

// heldBack is the share of cost the deal holds back, rounded down: a
// base unit of rounding goes to the provider.
func heldBack(deal market.Deal, cost *big.Int) *big.Int {
	if deal.HoldbackBps <= 0 {
		return new(big.Int)
	}
	h := new(big.Int).Mul(cost, big.NewInt(int64(deal.HoldbackBps)))
	return h.Div(h, big.NewInt(10000))
}

// payable is cost less the share the deal holds back: what vouchers
// cover before the result verifies, on both sides.
func payable(deal market.Deal, cost *big.Int) *big.Int {
	return new(big.Int).Sub(cost, heldBack(deal, cost))
}

// holdbackState is where rj's held-back share stands: "" when its deal
// holds none back.
func holdbackState(rj *Record) string {
	switch {
	case rj.Deal.HoldbackBps <= 0:
		return ""
	case rj.Holdback == "":
		return holdbackHeld
	}
	return rj.Holdback
}

// awaitsVerdict: rj ended with a share held back and no verdict yet, so
// its receipt waits for Settle.
func awaitsVerdict(rj *Record) bool {
	return holdbackState(rj) == holdbackHeld && ended(rj)
}

// withheldFor says whether a verdict keeps the held-back share: only a
// result another was preferred to by a majority or a spot check. A run
// that failed, a split with no majority and a job not drawn for a check
// are paid in full: nothing showed their result wrong.
func withheldFor(outcome string) bool {
	return outcome == receipt.Outvoted || outcome == receipt.SampledMismatch
}

// Settle records the verdict on job id's result (one of market/receipt's
// outcomes) once the job has ended: it pays the share its deal held back
// with the channel's next voucher unless the verdict withholds it, and
// makes the deal's receipt with the verdict. A job already settled keeps
// its first verdict.
func (rq *Requester) Settle(ctx context.Context, id, outcome string) error {
	if !receipt.ValidOutcome(outcome) {
		return invalid{fmt.Errorf("outcome %q: want one of %v", outcome, receipt.Outcomes())}
	}
	rq.mu.Lock()
	rj, ok := rq.records[id]
	switch {
	case !ok:
		rq.mu.Unlock()
		return fmt.Errorf("%w: market job %s", jobs.ErrNotFound, id)
	case !ended(rj):
		rq.mu.Unlock()
		return invalid{fmt.Errorf("job %s has not ended: its result cannot be judged yet", id)}
	case rj.Verdict != "":
		rq.mu.Unlock()
		return nil
	}
	rj.Verdict = outcome
	pay := holdbackState(rj) == holdbackHeld && !withheldFor(outcome)
	switch {
	case pay:
		// Unsettled again until a voucher with the share reaches the
		// provider: followOnce delivers it then, as any final voucher,
		// and makes the receipt once it is delivered.
		rj.Holdback, rj.Settled = holdbackPaid, false
	case holdbackState(rj) == holdbackHeld:
		rj.Holdback = holdbackWithheld
	}
	rq.mu.Unlock()
	if err := rq.saveRemote(rj); err != nil {
		return err
	}
	rq.log.Info("result judged", "job_id", id, "provider", rj.Provider, "outcome", outcome, "holdback", holdbackState(rj))
	if pay {
		rq.payChannel(ctx, rj)
		return nil
	}
	rq.spawn(func(ctx context.Context) { rq.settleReceipt(ctx, rj) })
	return nil
}

// holdbackView is rj's held-back share as job status shows it ("20%
// held"); rq.mu held.
func holdbackView(rj *Record) string {
	st := holdbackState(rj)
	if st == "" {
		return ""
	}
	return market.FormatBps(rj.Deal.HoldbackBps) + " " + st
}

// Holdback is job id's held-back share as job status shows it; empty
// when none is held back or id is no market job of this node.
func (rq *Requester) Holdback(id string) string {
	rq.mu.Lock()
	defer rq.mu.Unlock()
	if rj := rq.records[id]; rj != nil {
		return holdbackView(rj)
	}
	return ""
}
