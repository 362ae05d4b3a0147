package market

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"
)

// Funds tells a provider whether a requester can pay, before it reserves
// GPUs for it: a fresh identity has a peer ID and a wallet for nothing,
// but no money. Package node implements it over package chain.
type Funds interface {
	// CanPay reports whether wallet can put amount (base units of token:
	// "native" or an address) behind a deal with this provider: what its
	// payment channel to this provider holds, plus its balance of token.
	CanPay(ctx context.Context, wallet, token string, amount *big.Int) (bool, error)
}

// Bounds on the funds checks: each asks the chain, so an answer is kept a
// while (a refusal shortly: the requester may be funding its wallet), and
// only a few run at once, so a stream of offers from fresh wallets cannot
// turn into a stream of RPC calls.
const (
	fundsOKFor       = 30 * time.Second
	fundsShortFor    = 5 * time.Second
	fundsTimeout     = 5 * time.Second
	maxFundsInFlight = 8
	maxFundsAnswers  = 1024
)

type fundsChecks struct {
	mu       sync.Mutex
	answers  map[string]fundsAnswer // wallet/token -> last answer
	inFlight int
}

type fundsAnswer struct {
	ok     bool
	amount *big.Int
	at     time.Time
}

var errFundsBusy = errors.New("busy")

// canPay asks f, or answers from a recent answer for the same wallet and
// token that settles it.
func (c *fundsChecks) canPay(f Funds, wallet, token string, amount *big.Int, now time.Time) (bool, error) {
	key := strings.ToLower(wallet) + "/" + token
	c.mu.Lock()
	if a, ok := c.answers[key]; ok {
		switch {
		case a.ok && now.Sub(a.at) < fundsOKFor && amount.Cmp(a.amount) <= 0:
			c.mu.Unlock()
			return true, nil
		case !a.ok && now.Sub(a.at) < fundsShortFor && amount.Cmp(a.amount) >= 0:
			c.mu.Unlock()
			return false, nil
		}
	}
	if c.inFlight >= maxFundsInFlight {
		c.mu.Unlock()
		return false, errFundsBusy
	}
	c.inFlight++
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), fundsTimeout)
	ok, err := f.CanPay(ctx, wallet, token, amount)
	cancel()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.inFlight--
	if err != nil {
		return false, err
	}
	if c.answers == nil {
		c.answers = map[string]fundsAnswer{}
	}
	if _, ok := c.answers[key]; !ok && len(c.answers) >= maxFundsAnswers {
		for k, a := range c.answers {
			if now.Sub(a.at) >= fundsOKFor {
				delete(c.answers, k)
			}
		}
		for k := range c.answers {
			if len(c.answers) < maxFundsAnswers {
				break
			}
			delete(c.answers, k)
		}
	}
	c.answers[key] = fundsAnswer{ok: ok, amount: new(big.Int).Set(amount), at: now}
	return ok, nil
}

func walletKey(wallet string) string { return "wallet:" + strings.ToLower(wallet) }

// checkPayer is asked before GPUs are reserved for an offer: the wallet
// it names must have signed it (WalletSig), and, with Config.Funds, must
// be able to pay the deal's maximum cost at price here. It returns the
// wallet's key for the reservation limits, or "" for an offer with no
// wallet signature (accepted only without Config.Funds, and then counted
// by peer ID alone). A refusal is a *refusal.
func (m *Market) checkPayer(o *JobOffer, price *big.Int, gpus int, ph *phases) (string, error) {
	if len(o.WalletSig) == 0 {
		if m.cfg.Funds != nil {
			return "", refuse(NoBidFunds, "the offer carries no signature by its wallet %s: this provider reserves GPUs only for a wallet that signs its offer", o.Wallet)
		}
		return "", nil
	}
	proof, err := walletProof(o)
	if err != nil {
		return "", err
	}
	if err := m.signer.VerifyDeal(proof, o.WalletSig, o.Wallet); err != nil {
		return "", refuse(NoBidFunds, "the offer's wallet signature is not by wallet %s", o.Wallet)
	}
	ph.mark("wallet_sig")
	if m.cfg.Funds == nil {
		return walletKey(o.Wallet), nil
	}
	amount := maxCost(price, gpus, o.MaxDurationS)
	ok, err := m.funds.canPay(m.cfg.Funds, o.Wallet, o.Token, amount, m.now())
	ph.mark("funds")
	switch {
	case errors.Is(err, errFundsBusy):
		return "", refuse(NoBidLimit, "this provider is checking other requesters' funds; ask again shortly")
	case err != nil:
		m.log.Warn("funds check failed", "wallet", o.Wallet, "err", err)
		return "", refuse(NoBidFunds, "this provider cannot check your funds now (its chain did not answer); ask again later")
	case !ok:
		return "", refuse(NoBidFunds, "insufficient funds: wallet %s cannot cover this deal's %s base units here (channel plus balance); fund it first", o.Wallet, amount)
	}
	return walletKey(o.Wallet), nil
}

// maxCost is the most a deal can cost: price per GPU-hour (core-hour for
// cpu) × GPUs (at least one) × its maximum duration, rounded up to a base
// unit, as the provider's start check counts it.
func maxCost(price *big.Int, gpus int, durationS int64) *big.Int {
	c := new(big.Int).Mul(price, big.NewInt(int64(max(gpus, 1))))
	c.Mul(c, big.NewInt(durationS*1000))
	ms := big.NewInt(3600 * 1000)
	c.Add(c, new(big.Int).Sub(ms, big.NewInt(1)))
	return c.Div(c, ms)
}

// walletProof is what a requester's wallet signs to show that the offer's
// wallet is its own: deal terms that name the offer (its ID with
// WalletSig left out), the requester and its wallet, with no provider and
// a price of 0. No provider countersigns a deal that does not name it, so
// the signature commits the wallet to nothing; and it is bound to this
// one offer, so it cannot be lent to another.
func walletProof(o *JobOffer) (DealTerms, error) {
	c := *o
	c.WalletSig = nil
	body, err := canonical(c)
	if err != nil {
		return DealTerms{}, err
	}
	t := DealTerms{
		Version: ProtocolVersion, OfferID: hashID(body), Requester: o.Requester, RequesterWallet: o.Wallet,
		Token: o.Token, Price: "0", MaxDurationS: o.MaxDurationS, SpecHash: o.SpecHash,
	}
	if err := t.computeID(); err != nil {
		return DealTerms{}, err
	}
	return t, nil
}

// signOffer has this node's wallet sign o (see walletProof).
func (m *Market) signOffer(o *JobOffer) error {
	proof, err := walletProof(o)
	if err != nil {
		return err
	}
	sig, err := m.signer.SignDeal(proof)
	if err != nil {
		return fmt.Errorf("sign the offer with the wallet: %w", err)
	}
	o.WalletSig = sig
	return nil
}
