package lease

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/ethereum/go-ethereum/common"
	"github.com/libp2p/go-libp2p/core/peer"
)

// jobPaused is how long a job was paused, up to its end.
func jobPaused(j *jobs.Job) time.Duration {
	end := time.Now()
	if j.FinishedAt != nil {
		end = *j.FinishedAt
	}
	return j.Paused(end)
}

// ranCost is what an ended job owes: its run time here less its pauses,
// within its deal's duration; nothing for a job that never ran.
func ranCost(deal market.Deal, started, finished *time.Time, paused time.Duration) *big.Int {
	if started == nil || finished == nil {
		return new(big.Int)
	}
	// Paused for want of pay: owed by no one, as the requester bills it.
	return dealCost(deal, min(max(finished.Sub(*started)-paused, 0), time.Duration(deal.MaxDurationS)*time.Second))
}

// voucherCheckWait bounds the chain read behind a voucher's check; a
// read that takes longer is an outage for the voucher's purpose.
const voucherCheckWait = 2 * time.Second

// outageGrace is how long unchecked vouchers count (Config.OutageGrace;
// zero means 10 min).
func (pv *Provider) outageGrace() time.Duration {
	if pv.cfg.OutageGrace > 0 {
		return pv.cfg.OutageGrace
	}
	return 10 * time.Minute
}

// holdUnchecked keeps v as the channel's unchecked voucher when the
// chain cannot be read and the outage is within its grace.
func (pv *Provider) holdUnchecked(v *chain.Voucher) bool {
	pv.mu.Lock()
	defer pv.mu.Unlock()
	now := time.Now()
	if pv.chainDown.IsZero() {
		pv.chainDown = now
	}
	if now.Sub(pv.chainDown) > pv.outageGrace() {
		return false
	}
	if old := pv.unchecked[v.Channel]; old == nil || old.CumulativeAmount.Cmp(v.CumulativeAmount.Big()) < 0 {
		pv.unchecked[v.Channel] = v
		pv.log.Warn("the chain cannot be read: voucher held unchecked within the outage grace", "channel", v.Channel,
			"amount", v.CumulativeAmount, "down_for", now.Sub(pv.chainDown).Round(time.Second), "grace", pv.outageGrace())
	}
	return true
}

// chainAnswered ends an outage: a read of the chain worked.
func (pv *Provider) chainAnswered() {
	pv.mu.Lock()
	if !pv.chainDown.IsZero() {
		pv.log.Info("the chain answers again", "down_for", time.Since(pv.chainDown).Round(time.Second))
	}
	pv.chainDown = time.Time{}
	pv.mu.Unlock()
}

// ChainDownSince is when this provider's reads of the chain began to
// fail, zero while they work.
func (pv *Provider) ChainDownSince() time.Time {
	pv.mu.Lock()
	defer pv.mu.Unlock()
	return pv.chainDown
}

// recheckUnchecked checks the unchecked vouchers against the chain once
// it answers: each is kept, or refused with the reason.
func (pv *Provider) recheckUnchecked(ctx context.Context) {
	pv.mu.Lock()
	pending := make([]*chain.Voucher, 0, len(pv.unchecked))
	for _, v := range pv.unchecked {
		pending = append(pending, v)
	}
	pv.mu.Unlock()
	for _, v := range pending {
		ch, err := pv.chain.Channel(ctx, v.Payer, v.Payee, v.Token)
		if err != nil {
			return // still down: coverage keeps counting within the grace
		}
		pv.chainAnswered()
		pv.mu.Lock()
		if pv.unchecked[v.Channel] == v {
			delete(pv.unchecked, v.Channel)
		}
		pv.mu.Unlock()
		if v.CumulativeAmount.Cmp(ch.Deposited.Big()) > 0 {
			why := fmt.Sprintf("voucher refused once the chain answered: cumulative amount %s exceeds channel %s's deposit of %s", v.CumulativeAmount, v.Channel, ch.Deposited)
			pv.mu.Lock()
			pv.refused[v.Channel] = why
			pv.mu.Unlock()
			pv.log.Warn("unchecked voucher refused", "channel", v.Channel, "why", why)
			continue
		}
		if _, err := pv.vouchers.keepIf(pv.vouchers.data.Received, v, func(old *chain.Voucher) bool {
			return old == nil || old.CumulativeAmount.Cmp(v.CumulativeAmount.Big()) < 0
		}); err != nil {
			pv.log.Error("unchecked voucher checked but not kept", "channel", v.Channel, "err", err)
		}
	}
}

// coverage is the money check of a channel at now: what its best voucher
// holds, what it owes (what was owed before its running jobs, plus each
// one's price × its run time here so far), and the slack allowed: two
// voucher intervals of each running job (the requester pays once an
// interval, for the time it saw, from when it first saw the job run).
func (pv *Provider) coverage(ch common.Hash, now time.Time) (held, owed, slack *big.Int) {
	held = new(big.Int)
	if v := pv.vouchers.get(pv.vouchers.data.Received, ch); v != nil {
		held = v.CumulativeAmount.Big()
	}
	pv.mu.Lock()
	defer pv.mu.Unlock()
	if v := pv.unchecked[ch]; v != nil && !pv.chainDown.IsZero() && now.Sub(pv.chainDown) <= pv.outageGrace() && v.CumulativeAmount.Cmp(held) > 0 {
		held = v.CumulativeAmount.Big() // within the outage grace (holdUnchecked)
	}
	owed, slack = new(big.Int), new(big.Int)
	if f := pv.floor[ch]; f != nil {
		owed.Set(f)
	}
	for id := range pv.live {
		deal := pv.provided[id]
		if pv.providedChannel(deal) != ch {
			continue
		}
		since, ok := pv.runSince[id]
		if !ok {
			continue // not running yet: nothing owed
		}
		until := now
		if p, paused := pv.pausedSince[id]; paused && p.Before(until) {
			until = p // a paused job's time is owed by no one
		}
		// A share held back until the result verifies is not owed yet.
		owed.Add(owed, payable(deal, dealCost(deal, min(max(until.Sub(since), 0), time.Duration(deal.MaxDurationS)*time.Second))))
		slack.Add(slack, dealCost(deal, paySlack(pv.interval)))
	}
	return held, owed, slack
}

// paySlack is the unpaid run time a provider allows each running job: the
// requester pays once an interval (for what it saw, plus an interval), so
// an honest one is up to an interval behind just before it pays; on top,
// a margin for the voucher's delivery, a quarter interval and at least 1 s.
func paySlack(interval time.Duration) time.Duration {
	return interval + max(interval/4, time.Second)
}

// unpaid says why a running provided job must stop for want of pay, or
// "" while the channel's vouchers keep up with its jobs.
func (pv *Provider) unpaid(id string, now time.Time) string {
	pv.mu.Lock()
	deal, ok := pv.provided[id]
	pv.mu.Unlock()
	if !ok {
		return ""
	}
	ch := pv.providedChannel(deal)
	held, owed, slack := pv.coverage(ch, now)
	short := new(big.Int).Sub(owed, held)
	if short.Cmp(slack) <= 0 {
		return ""
	}
	pv.mu.Lock()
	why := pv.refused[ch]
	pv.mu.Unlock()
	reason := fmt.Sprintf("the requester's vouchers stopped covering the job: channel %s holds %s base units, its running jobs owe %s (%s short, %s allowed)",
		ch, held, owed, short, slack)
	if why != "" {
		reason += "; last voucher refused: " + why
	}
	return reason
}

// pauseGrace is how long a job whose pay stopped stays paused before it
// is stopped (Config.PauseGrace; zero means 2 min).
func (pv *Provider) pauseGrace() time.Duration {
	if pv.cfg.PauseGrace > 0 {
		return pv.cfg.PauseGrace
	}
	return 2 * time.Minute
}

// pauseUnpaid pauses a job whose vouchers stopped covering it, its GPUs
// still held, rather than stopping it: a requester whose daemon was away
// longer than its prepay may still come back and pay. It reports whether
// the job stays (paused, within the grace); the paused time is owed by
// no one (coverage stops counting it, and the requester bills none).
func (pv *Provider) pauseUnpaid(ctx context.Context, id, why string) bool {
	pv.mu.Lock()
	_, paused := pv.pausedSince[id]
	pv.mu.Unlock()
	if pv.pauseGrace() < 0 {
		return false
	}
	// The grace is for the whole job, every pause together: a requester
	// that pays a little now and then cannot hold the GPUs paused for
	// the deal's whole duration.
	j, err := pv.jobs.Get(id)
	if err != nil || j.Paused(time.Now()) >= pv.pauseGrace() {
		return false
	}
	if paused {
		return true
	}
	if _, err := pv.jobs.Pause(ctx, id, why); err != nil {
		pv.log.Warn("could not pause an unpaid job; stopping it", "job_id", id, "err", err)
		return false
	}
	pv.mu.Lock()
	pv.pausedSince[id] = time.Now()
	pv.mu.Unlock()
	pv.log.Warn("vouchers stopped; job paused until they come again", "job_id", id, "grace", pv.pauseGrace(), "why", why)
	return true
}

// resumePaid resumes a job paused for want of pay once its vouchers cover
// it again; its run time owed starts again from where it was paused.
func (pv *Provider) resumePaid(ctx context.Context, id string) (stop string) {
	pv.mu.Lock()
	since, paused := pv.pausedSince[id]
	pv.mu.Unlock()
	if !paused {
		return ""
	}
	// Resumed once the vouchers cover it within the slack again (the two
	// sides' clocks differ by up to that). A requester paying a little
	// now and then cannot hold the GPUs paused for long: the grace is for
	// all of a job's pauses together (pauseUnpaid).
	if _, err := pv.jobs.Resume(ctx, id); err != nil {
		pv.log.Warn("could not resume a paid job", "job_id", id, "err", err)
		return ""
	}
	pv.mu.Lock()
	delete(pv.pausedSince, id)
	if s, ok := pv.runSince[id]; ok {
		pv.runSince[id] = s.Add(time.Since(since))
	}
	pv.mu.Unlock()
	pv.log.Info("vouchers cover the job again; resumed", "job_id", id, "paused_for", time.Since(since).Round(time.Second))
	return ""
}

// paysJobOf reports whether ch pays a job this node runs for peer from.
func (pv *Provider) paysJobOf(from peer.ID, ch common.Hash) bool {
	pv.mu.Lock()
	defer pv.mu.Unlock()
	for _, d := range pv.provided {
		if d.Requester == from.String() && pv.providedChannel(d) == ch {
			return true
		}
	}
	return false
}

// handleJobVoucher keeps a voucher for one of our jobs, only if it can be
// redeemed for more than the one held: signed by the payer, for this
// wallet, chain and escrow, on the channel of a deal of the sender's here,
// raising the cumulative amount, within the channel's deposit on chain.
// Anything else is refused with the reason, and the voucher held stays.
func (pv *Provider) handleJobVoucher(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
	v, err := chain.DecodeVoucher(req) // checks the fields and the signature
	if err != nil {
		return nil, err
	}
	if err := pv.acceptVoucher(ctx, from, v); err != nil {
		if !errors.Is(err, errVoucherHeld) {
			// Kept (and logged for the operator) only for a channel that
			// pays a job of the sender's here: a stranger's vouchers for
			// channels of its choosing must not grow the map or the log.
			if pv.paysJobOf(from, v.Channel) {
				pv.mu.Lock()
				pv.refused[v.Channel] = err.Error()
				pv.mu.Unlock()
				pv.log.Warn("voucher refused", "requester", from, "channel", v.Channel, "amount", v.CumulativeAmount, "err", err)
			} else {
				pv.log.Debug("voucher refused", "peer_id", from, "channel", v.Channel, "err", err)
			}
			return nil, err
		}
	}
	return []byte("ok"), nil
}

// errVoucherHeld: the voucher is the one already held (a requester resends
// its last when nothing more is owed); nothing changes.
var errVoucherHeld = errors.New("voucher already held")

func (pv *Provider) acceptVoucher(ctx context.Context, from peer.ID, v *chain.Voucher) error {
	if v.Payee != pv.wallet.Address() || v.ChainID.Big().Cmp(pv.chain.ChainID()) != 0 || v.Escrow != pv.chain.Escrow() {
		return fmt.Errorf("voucher refused: it pays %s on chain %s through escrow %s; this provider is %s on chain %s through %s",
			v.Payee, v.ChainID, v.Escrow, pv.wallet.Address(), pv.chain.ChainID(), pv.chain.Escrow())
	}
	ours := false
	pv.mu.Lock()
	for _, d := range pv.provided {
		if d.Requester == from.String() && pv.providedChannel(d) == v.Channel {
			ours = true
			break
		}
	}
	pv.mu.Unlock()
	if !ours {
		return fmt.Errorf("voucher refused: channel %s (payer %s, token %s) is not the channel of any deal of yours here", v.Channel, v.Payer, v.Token)
	}
	prev := pv.vouchers.get(pv.vouchers.data.Received, v.Channel)
	if prev != nil {
		switch c := v.CumulativeAmount.Cmp(prev.CumulativeAmount.Big()); {
		case c == 0:
			return errVoucherHeld
		case c < 0:
			return fmt.Errorf("voucher refused: cumulative amount %s is below the %s already held on channel %s; send a voucher for more", v.CumulativeAmount, prev.CumulativeAmount, v.Channel)
		}
	}
	// The check waits on the chain a short while only: a voucher must not
	// arrive late because the RPC is slow or gone (holdUnchecked).
	rctx, cancel := context.WithTimeout(ctx, voucherCheckWait)
	ch, err := pv.chain.Channel(rctx, v.Payer, v.Payee, v.Token)
	cancel()
	if err != nil {
		if pv.holdUnchecked(v) {
			return nil // checked when the chain answers again (recheckUnchecked)
		}
		return fmt.Errorf("voucher not kept: reading its channel to check the deposit: %w", err)
	}
	pv.chainAnswered()
	if v.CumulativeAmount.Cmp(ch.Deposited.Big()) > 0 {
		// Redeem skips it, and it would hide the one that can be redeemed.
		return fmt.Errorf("voucher refused: cumulative amount %s exceeds channel %s's deposit of %s; the voucher held (%s) stays", v.CumulativeAmount, v.Channel, ch.Deposited, amountOf(prev))
	}
	kept, err := pv.vouchers.keepIf(pv.vouchers.data.Received, v, func(old *chain.Voucher) bool {
		return old == nil || old.CumulativeAmount.Cmp(v.CumulativeAmount.Big()) < 0
	})
	if err != nil {
		return fmt.Errorf("voucher not kept: %w", err)
	}
	if !kept {
		return errVoucherHeld // a higher one came in meanwhile
	}
	pv.mu.Lock()
	delete(pv.refused, v.Channel)
	pv.mu.Unlock()
	return nil
}

func amountOf(v *chain.Voucher) string {
	if v == nil {
		return "none"
	}
	return v.CumulativeAmount.String()
}

// watchClosing is the provider's guard against a payer that closes a
// channel to withdraw: every voucher interval it reads the channels it
// holds vouchers for, and on one that is closing it redeems what it is
// owed at once (the payer may withdraw the rest when the challenge period
// ends) and stops the jobs running on it (nothing more can be paid).
func (pv *Provider) watchClosing(ctx context.Context) {
	every(ctx, pv.interval, func() { pv.checkClosing(ctx) })
}

// checkClosing is one round of watchClosing.
func (pv *Provider) checkClosing(ctx context.Context) {
	if pv.chain == nil || pv.vouchers == nil {
		return
	}
	owed := false
	var closing []common.Hash
	for _, v := range pv.vouchers.Received() {
		if v.ChainID.Big().Cmp(pv.chain.ChainID()) != 0 || v.Escrow != pv.chain.Escrow() {
			continue
		}
		ch, err := pv.chain.Channel(ctx, v.Payer, v.Payee, v.Token)
		if err != nil || ch.ClosesAt == 0 {
			continue
		}
		closing = append(closing, ch.ID)
		if v.CumulativeAmount.Cmp(ch.Redeemed.Big()) > 0 && v.CumulativeAmount.Cmp(ch.Deposited.Big()) <= 0 {
			owed = true
		}
	}
	if owed {
		res, err := pv.RedeemOwed(ctx, nil)
		if err != nil {
			pv.log.Error("a payer is closing a channel; redeeming failed, will try again", "err", err)
		} else if res.Receipt != nil {
			pv.log.Info("a payer is closing a channel: redeemed at once", "paid_base", res.Paid, "channels", len(res.Vouchers), "tx", res.Receipt.TxHash)
		}
	}
	for _, ch := range closing {
		pv.mu.Lock()
		var stop []string
		for id := range pv.live {
			if pv.providedChannel(pv.provided[id]) == ch {
				stop = append(stop, id)
			}
		}
		pv.mu.Unlock()
		for _, id := range stop {
			if pv.jobs == nil {
				continue
			}
			pv.log.Warn("the requester is closing the job's channel; stopping the job", "job_id", id, "channel", ch)
			pv.jobs.Fail(id, fmt.Sprintf("the requester started closing channel %s, which pays for the job: it could withdraw what the job earns from now", ch))
		}
	}
}

// autoRedeem is the provider's redeem policy: every interval, one
// transaction for every kept voucher owed more than its channel paid, when
// the total owed reaches the threshold.
func (pv *Provider) autoRedeem(ctx context.Context, interval time.Duration, above *big.Int) {
	every(ctx, interval, func() {
		res, err := pv.RedeemOwed(ctx, above)
		switch {
		case err != nil:
			pv.log.Warn("timed redeem failed; will try again", "err", err)
		case res.Receipt == nil:
			pv.log.Debug("timed redeem: nothing sent", "owed_base", res.Paid, "threshold_base", above)
		default:
			pv.log.Info("redeemed vouchers", "paid", pv.paidAmount(res), "paid_base", res.Paid, "channels", len(res.Vouchers), "tx", res.Receipt.TxHash)
		}
	})
}
