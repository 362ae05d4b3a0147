package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/market/receipt"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// The receipt of an ended deal (market/receipt), made on
// jobs/receipt/1 once the final voucher reached the provider:
//
//  1. The requester sends its account of the deal: what it paid, the
//     run time it paid for, when it saw the job end.
//  2. The provider adds what only it knows (the result's CID, the
//     outcome as its job records it), signs, keeps its signed copy and
//     answers with it.
//  3. The requester checks every field against its own view and
//     countersigns, keeps the receipt, and sends it back; the provider
//     keeps that one.
//
// Where the provider does not answer or signs something else, the
// requester signs its own account alone: a one-sided receipt, which only
// its word backs. A node with no Config.Receipts makes none.

// receiptRequest is step 1 (Signed empty) or step 3 (Signed the receipt
// both sides signed).
type receiptRequest struct {
	ID      string `json:"id"`
	Paid    string `json:"paid,omitempty"`
	RunMs   int64  `json:"run_ms,omitempty"`
	EndedMs int64  `json:"ended_ms,omitempty"`
	// Outcome is the requester's verdict on a checked job's result
	// (Requester.Settle); empty: the provider says how its job ended.
	Outcome string `json:"outcome,omitempty"`
	Signed  []byte `json:"signed,omitempty"`
}

// key is this node's peer key, which signs receipts.
func (b *base) key() crypto.PrivKey { return b.p2p.Host.Peerstore().PrivKey(b.p2p.Host.ID()) }

// providerFault reports whether a job's end is its provider's fault: a
// failure with no exit code (the GPU, the container, the inputs on the
// provider's side), unless another rank's failure stopped it.
func providerFault(j *jobs.Job) bool {
	return j.State == jobs.Failed && j.ExitCode == nil && !strings.HasPrefix(j.Reason, "another rank failed")
}

// receiptOutcome is what a job's end says of its deal.
func receiptOutcome(j *jobs.Job) string {
	if providerFault(j) {
		return receipt.Failed
	}
	return receipt.None
}

// handleJobReceipt is the provider's side: it signs the requester's
// account of a deal that ended here, or keeps the receipt both signed.
func (pv *Provider) handleJobReceipt(_ context.Context, from peer.ID, raw []byte) ([]byte, error) {
	if pv.cfg.Receipts == nil {
		return nil, errors.New("this node keeps no receipts")
	}
	var req receiptRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("receipt request: %w", err)
	}
	deal, j, err := pv.endedDeal(from, req.ID)
	if err != nil {
		return nil, err
	}
	if req.Signed != nil {
		return pv.keepReceipt(deal, req.Signed)
	}
	r := dealReceipt(pv.cfg.Receipts.Network(), deal, req)
	r.Result, r.Outcome = j.ResultCID, receiptOutcome(j)
	if req.Outcome != "" {
		if err := signsVerdict(req.Outcome); err != nil {
			return nil, err
		}
		r.Outcome = req.Outcome
	}
	if pv.cfg.Proofs != nil {
		r.Proofs = pv.cfg.Proofs()
	}
	signed, err := r.Sign(pv.key())
	if err != nil {
		return nil, err
	}
	if _, err := pv.cfg.Receipts.Add(signed, time.Now()); err != nil {
		pv.log.Warn("own receipt not kept", "deal_id", deal.ID, "err", err)
	}
	return signed, nil
}

// signsVerdict says whether a provider signs a requester's verdict on
// its result: one that its result agreed, never one against it, which
// stays the requester's word alone (a one-sided receipt).
func signsVerdict(outcome string) error {
	switch outcome {
	case receipt.Agreed, receipt.SampledOK, receipt.None:
		return nil
	case receipt.Outvoted, receipt.SampledMismatch:
		return fmt.Errorf("verdict %q on this provider's result: not signed here; it stays your word alone", outcome)
	}
	return fmt.Errorf("verdict %q: want one of %v", outcome, receipt.Outcomes())
}

// keepReceipt keeps the receipt of deal that both sides signed.
func (pv *Provider) keepReceipt(deal market.Deal, raw []byte) ([]byte, error) {
	got, err := receipt.Decode(raw)
	if err != nil {
		return nil, err
	}
	if got.Deal != deal.ID || got.Kind != receipt.Both {
		return nil, fmt.Errorf("receipt of deal %s (%s), not of deal %s by both sides", short(got.Deal), got.Kind, short(deal.ID))
	}
	if _, err := pv.cfg.Receipts.Add(raw, time.Now()); err != nil {
		return nil, err
	}
	return []byte("ok"), nil
}

// endedDeal is the deal of a job that ended here, which from bought.
func (pv *Provider) endedDeal(from peer.ID, id string) (market.Deal, *jobs.Job, error) {
	if err := checkJobID(id); err != nil {
		return market.Deal{}, nil, err
	}
	pv.mu.Lock()
	deal, ok := pv.provided[id]
	pv.mu.Unlock()
	if !ok || deal.Requester != from.String() || pv.jobs == nil {
		return market.Deal{}, nil, fmt.Errorf("no deal of yours ran job %s here", id)
	}
	j, err := pv.jobs.Get(id)
	if err != nil {
		return market.Deal{}, nil, err
	}
	if !j.State.Terminal() {
		return market.Deal{}, nil, fmt.Errorf("job %s has not ended (%s)", id, j.State)
	}
	return deal, j, nil
}

// dealReceipt is a receipt of deal on the requester's account req.
func dealReceipt(network string, deal market.Deal, req receiptRequest) receipt.Receipt {
	return receipt.Receipt{V: receipt.Version, Network: network, Deal: deal.ID, Provider: deal.Provider, Requester: deal.Requester,
		ProviderWallet: deal.ProviderWallet, RequesterWallet: deal.RequesterWallet, RunMs: req.RunMs,
		Token: deal.Token, Paid: req.Paid, Outcome: receipt.None, EndedAt: req.EndedMs}
}

// settleReceipt makes the receipt of an ended, settled job once: with
// its provider when it answers, else on this node's word alone.
func (rq *Requester) settleReceipt(ctx context.Context, rj *Record) {
	store := rq.cfg.Receipts
	if store == nil || rj.Deal.ID == "" {
		return
	}
	if held, ok := store.Get(rj.Deal.ID); ok && held.SignedBy(rq.p2p.Host.ID()) {
		return
	}
	rq.mu.Lock()
	want := rq.ownReceipt(rj)
	id, verdict := rj.remoteID(), rj.Verdict
	rq.mu.Unlock()
	err := rq.exchangeReceipt(ctx, rj.Provider, id, want, verdict)
	if err == nil {
		return
	}
	rq.log.Warn("receipt not countersigned: keeping this node's own", "job_id", rj.ID, "deal_id", rj.Deal.ID, "err", err)
	raw, err := want.Sign(rq.key())
	if err == nil {
		_, err = store.Add(raw, time.Now())
	}
	if err != nil {
		rq.log.Warn("receipt not kept", "job_id", rj.ID, "deal_id", rj.Deal.ID, "err", err)
	}
}

// ownReceipt is this node's account of rj's deal: what it paid, for the
// run time it saw, and how the job ended; rq.mu held.
func (rq *Requester) ownReceipt(rj *Record) receipt.Receipt {
	end := rj.EndSeen
	if end.IsZero() {
		end = rj.LastSeen
	}
	r := dealReceipt(rq.cfg.Receipts.Network(), rj.Deal, receiptRequest{Paid: jobPayable(rj, 0).String(),
		RunMs: billedRun(rj).Milliseconds(), EndedMs: max(end.UnixMilli(), 1)})
	switch {
	case rj.Unreachable:
		r.Outcome = receipt.Failed
	case rj.Last != nil:
		r.Result, r.Outcome = rj.Last.ResultCID, receiptOutcome(&rj.Last.Job)
	}
	if rj.Verdict != "" && !rj.Unreachable {
		r.Outcome = rj.Verdict
	}
	return r
}

// exchangeReceipt has the provider sign want, countersigns it when it
// is want, keeps it and sends it back.
func (rq *Requester) exchangeReceipt(ctx context.Context, provider, id string, want receipt.Receipt, verdict string) error {
	prov, err := peer.Decode(provider)
	if err != nil {
		return err
	}
	req, _ := json.Marshal(receiptRequest{ID: id, Paid: want.Paid, RunMs: want.RunMs, EndedMs: want.EndedAt, Outcome: verdict})
	signed, err := rq.request(ctx, prov, wireReceipt, req)
	if err != nil {
		return err
	}
	both, err := receipt.Countersign(signed, rq.key(), func(got receipt.Receipt) error {
		got.Proofs = nil // the provider's to name
		if got.ID() != want.ID() {
			return fmt.Errorf("the provider signed another account of deal %s: %+v, this node's %+v", short(want.Deal), got, want)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := rq.cfg.Receipts.Add(both, time.Now()); err != nil {
		return err
	}
	req, _ = json.Marshal(receiptRequest{ID: id, Signed: both})
	if _, err := rq.request(ctx, prov, wireReceipt, req); err != nil {
		rq.log.Warn("countersigned receipt not delivered", "provider", provider, "deal_id", want.Deal, "err", err)
	}
	return nil
}
