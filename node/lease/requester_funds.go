package lease

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs"
	"github.com/aixblock/aixblock/market"
	"github.com/ethereum/go-ethereum/common"
)

// checkFunds refuses a market job that could not be paid for at any
// price: the token and max price must parse, the wallet or a channel
// already funded must hold something of the token, and a wallet that
// will have to deposit must hold the gas for it. Each refusal names the
// amounts and the token by its symbol.
func (rq *Requester) checkFunds(ctx context.Context, spec *jobs.Spec) error {
	tok, sym, dec, worst, err := rq.specWorst(ctx, spec)
	if err != nil {
		return err
	}
	if rq.channelHolds(ctx, tok, worst) {
		return nil // paid from a channel funded before: no deposit, no gas
	}
	bal, err := rq.chain.Balance(ctx, tok)
	if err != nil {
		return err
	}
	if bal.Sign() == 0 {
		return invalid{fmt.Errorf("%w: the job may cost up to %s %s (max_price × GPUs × timeouts.execution) and wallet %s holds no %s: fund the wallet first",
			errFunds, chain.FormatUnits(worst, dec), sym, rq.wallet.Address(), sym)}
	}
	return rq.checkGas(ctx)
}

// specWorst is the token a spec pays in (its symbol and decimals) and
// the most the spec may cost: max_price × GPUs × its execution timeout.
// A token or max_price that does not parse is the caller's error.
func (rq *Requester) specWorst(ctx context.Context, spec *jobs.Spec) (tok common.Address, sym string, dec uint8, worst *big.Int, err error) {
	if tok, err = chain.ParseToken("", rq.chain.DefaultToken()); err != nil {
		return tok, "", 0, nil, invalid{err} // the error names the token
	}
	if sym, dec, err = rq.chain.TokenInfo(ctx, tok); err != nil {
		return tok, "", 0, nil, err
	}
	price, err := chain.ParseUnits(spec.MaxPrice, dec)
	if err != nil {
		return tok, "", 0, nil, invalid{fmt.Errorf("max_price: %w", err)}
	}
	worst = new(big.Int).Mul(price, big.NewInt(int64(max(spec.Resources.GPUs, 1))))
	worst.Mul(worst, big.NewInt(int64(spec.ExecutionTimeout()/time.Second)))
	return tok, sym, dec, worst.Div(worst, big.NewInt(3600)), nil
}

// awaitFunds keeps a job queued, with the reason, while this node cannot
// pay its worst case (max_price × GPUs × timeouts.execution) on top of
// what the other jobs waiting to start may cost: from the wallet, or from
// what a channel it already funded holds. One top-up of the wallet lets
// the whole queue go. Nothing is asked of any provider meanwhile.
func (rq *Requester) awaitFunds(ctx context.Context, rj *Record, progress func(string)) error {
	tok, _, _, worst, err := rq.specWorst(ctx, &rj.Spec)
	if err != nil {
		return err
	}
	t := time.NewTicker(max(rq.interval/2, time.Second))
	defer t.Stop()
	for {
		bal, err := rq.chain.Balance(ctx, tok)
		if err != nil {
			return fmt.Errorf("reading the wallet's balance: %w", err)
		}
		rq.mu.Lock()
		others := new(big.Int)
		for id, w := range rq.awaiting {
			if id != rj.ID {
				others.Add(others, w)
			}
		}
		enough := new(big.Int).Add(others, worst).Cmp(bal) <= 0
		if enough {
			rq.awaiting[rj.ID] = worst
		}
		rq.mu.Unlock()
		if rq.channelHolds(ctx, tok, worst) {
			return nil // no deposit needed: no gas either
		}
		if enough {
			return rq.checkGas(ctx)
		}
		if time.Now().After(rj.QueueUntil) {
			return invalid{fmt.Errorf("%w within timeouts.queue: the job may cost up to %s and the jobs queued before it %s; wallet %s holds %s: fund the wallet, or lower max_price or timeouts.execution",
				errFunds, rq.formatAmount(chain.TokenName(tok), worst.String()), rq.formatAmount(chain.TokenName(tok), others.String()), rq.wallet.Address(), rq.formatAmount(chain.TokenName(tok), bal.String()))}
		}
		progress(fmt.Sprintf("waiting for funds: the job may cost up to %s, jobs queued before it %s, wallet %s holds %s; top up the wallet",
			rq.formatAmount(chain.TokenName(tok), worst.String()), rq.formatAmount(chain.TokenName(tok), others.String()), rq.wallet.Address(), rq.formatAmount(chain.TokenName(tok), bal.String())))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// checkGas refuses, before any deal, a job whose deposit the wallet
// could not send: it holds too little of the chain's coin for the gas.
func (rq *Requester) checkGas(ctx context.Context) error {
	cost, err := rq.chain.DepositGasCost(ctx)
	if err != nil {
		return err
	}
	bal, err := rq.chain.Balance(ctx, chain.NativeToken)
	if err != nil {
		return fmt.Errorf("reading the wallet's balance: %w", err)
	}
	if bal.Cmp(cost) < 0 {
		return invalid{fmt.Errorf("%w for gas: depositing into the provider's channel costs about %s ETH of gas at the chain's current fees, and wallet %s holds %s ETH: send it some ETH (the chain's coin) first",
			errFunds, chain.FormatUnits(cost, 18), rq.wallet.Address(), chain.FormatUnits(bal, 18))}
	}
	return nil
}

// doneAwaiting drops a job's claim on the wallet (awaitFunds) once its
// funding is settled either way.
func (rq *Requester) doneAwaiting(id string) {
	rq.mu.Lock()
	delete(rq.awaiting, id)
	rq.mu.Unlock()
}

// channelHolds reports whether a channel this node already funded in
// token holds need beyond what it owes and its jobs may still cost.
func (rq *Requester) channelHolds(ctx context.Context, tok common.Address, need *big.Int) bool {
	payees := map[common.Address]bool{}
	rq.mu.Lock()
	for _, o := range rq.records {
		if !o.queued() && dealToken(o.Deal) == tok {
			payees[common.HexToAddress(o.Deal.ProviderWallet)] = true
		}
	}
	rq.mu.Unlock()
	for p := range payees {
		ch, err := rq.chain.Channel(ctx, rq.wallet.Address(), p, tok)
		if err != nil {
			continue
		}
		free := new(big.Int).Sub(ch.Deposited.Big(), rq.channelCommitted(p, tok, "", nil))
		if free.Cmp(need) >= 0 {
			return true
		}
	}
	return false
}

// fundChannel makes sure the channel to the provider holds everything
// owed on it, what its running jobs and the deals being started on it may
// still cost, and this deal's maximum: one deposit or top-up, reused by
// later jobs. The deal counts as being started (for the other fundings of
// the channel) until release is called, once its start is settled either
// way. Fundings of one channel take turns, and each covers every deal
// registered by then: a burst of jobs to one provider makes one or two
// deposits, and none is refused for a deposit that its neighbour counted
// too.
func (rq *Requester) fundChannel(ctx context.Context, deal market.Deal, pending ...market.Deal) (release func(), err error) {
	payee, token := common.HexToAddress(deal.ProviderWallet), dealToken(deal)
	id := chain.ChannelID(rq.wallet.Address(), payee, token)
	rq.mu.Lock()
	rq.inflight[deal.ID] = deal
	lock := rq.funding[id]
	if lock == nil {
		lock = &sync.Mutex{}
		rq.funding[id] = lock
	}
	rq.mu.Unlock()
	release = func() {
		rq.mu.Lock()
		delete(rq.inflight, deal.ID)
		rq.mu.Unlock()
	}
	defer func() {
		if err != nil {
			release()
			release = nil
		}
	}()
	lock.Lock()
	defer lock.Unlock()

	need := rq.channelNeeds(payee, token, deal, pending)
	ch, err := rq.chain.Channel(ctx, rq.wallet.Address(), payee, token)
	if err != nil {
		return nil, err
	}
	short := new(big.Int).Sub(need, ch.Deposited.Big())
	if short.Sign() <= 0 {
		return release, nil
	}
	bal, err := rq.chain.Balance(ctx, token)
	if err != nil {
		return nil, err
	}
	if bal.Cmp(short) < 0 {
		return nil, invalid{fmt.Errorf("%w: the deal may cost up to %s, the channel needs %s more, wallet %s holds %s; fund the wallet, or lower max_price or timeouts.execution",
			errFunds, rq.formatAmount(chain.TokenName(token), dealCost(deal, time.Duration(deal.MaxDurationS)*time.Second).String()),
			rq.formatAmount(chain.TokenName(token), short.String()), rq.wallet.Address(), rq.formatAmount(chain.TokenName(token), bal.String()))}
	}
	if _, err := rq.chain.Deposit(ctx, payee, token, short); err != nil {
		return nil, fmt.Errorf("fund the channel: %w", err)
	}
	return release, nil
}

// errFunds: the wallet cannot pay what a deal needs deposited.
var errFunds = errors.New("insufficient funds")

// channelNeeds is what the channel to payee must hold for deal to start:
// what is owed on it (the voucher signed, or the exact cost of its jobs
// if more: an ended job's final voucher may not be out yet), the rest of
// its running jobs' and its other starting deals' maximum cost, the
// deal's own, and one voucher interval of it as a margin (a provider
// counts an ended job it has not yet watched end by its own clock).
func (rq *Requester) channelNeeds(payee, token common.Address, deal market.Deal, pending []market.Deal) *big.Int {
	need := dealCost(deal, time.Duration(deal.MaxDurationS)*time.Second+rq.interval)
	return need.Add(need, rq.channelCommitted(payee, token, deal.ID, pending))
}

// channelCommitted is what the channel to payee holds already spoken for:
// what is owed on it, and what its running jobs, the deals being started
// on it other than dealID, and pending may still cost.
func (rq *Requester) channelCommitted(payee, token common.Address, dealID string, pending []market.Deal) *big.Int {
	need := new(big.Int)
	same := func(d market.Deal) bool {
		return common.HexToAddress(d.ProviderWallet) == payee && dealToken(d) == token
	}
	for _, p := range pending { // a gang's earlier ranks, funded just before
		if same(p) && p.ID != dealID {
			need.Add(need, dealCost(p, time.Duration(p.MaxDurationS)*time.Second))
		}
	}
	owed := new(big.Int)
	if v := rq.vouchers.get(rq.vouchers.data.Signed, chain.ChannelID(rq.wallet.Address(), payee, token)); v != nil {
		owed = v.CumulativeAmount.Big()
	}
	rq.mu.Lock()
	costs := new(big.Int)
	for _, o := range rq.records {
		if !o.queued() && same(o.Deal) && ended(o) {
			costs.Add(costs, jobCost(o))
		}
	}
	for id, d := range rq.inflight {
		if id != dealID && same(d) && !slices.ContainsFunc(pending, func(p market.Deal) bool { return p.ID == id }) {
			need.Add(need, dealCost(d, time.Duration(d.MaxDurationS)*time.Second))
		}
	}
	rq.mu.Unlock()
	need.Add(need, rq.committedRunning(payee, token))
	if costs.Cmp(owed) > 0 {
		owed = costs
	}
	return need.Add(need, owed)
}

// committedRunning is the rest of the maximum cost of this node's running
// jobs on the channel (what they may still be vouched).
func (rq *Requester) committedRunning(payee, token common.Address) *big.Int {
	sum := new(big.Int)
	rq.mu.Lock()
	defer rq.mu.Unlock()
	for _, rj := range rq.records {
		if rj.Last != nil && rj.Last.State.Terminal() {
			continue
		}
		if common.HexToAddress(rj.Deal.ProviderWallet) != payee || dealToken(rj.Deal) != token {
			continue
		}
		sum.Add(sum, dealCost(rj.Deal, time.Duration(rj.Deal.MaxDurationS)*time.Second))
	}
	return sum
}
