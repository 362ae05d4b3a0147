package node

import (
	"context"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/node/api"
	"github.com/ethereum/go-ethereum/common"
)

// dealSigner signs the market's deals with the node's wallet (EIP-712,
// bound to the chain and escrow that will pay).
type dealSigner struct {
	w       *chain.Wallet
	chainID *big.Int
	escrow  common.Address
}

func (s dealSigner) Wallet() string { return s.w.Address().Hex() }

func (s dealSigner) SignDeal(t market.DealTerms) ([]byte, error) {
	d, err := chainDeal(t)
	if err != nil {
		return nil, err
	}
	return s.w.SignDeal(s.chainID, s.escrow, d)
}

func (s dealSigner) VerifyDeal(t market.DealTerms, sig []byte, wallet string) error {
	if !common.IsHexAddress(wallet) {
		return fmt.Errorf("wallet %q is not an address", wallet)
	}
	d, err := chainDeal(t)
	if err != nil {
		return err
	}
	return chain.VerifyDeal(s.chainID, s.escrow, d, sig, common.HexToAddress(wallet))
}

func chainDeal(t market.DealTerms) (chain.Deal, error) {
	price, err := chain.ParseBaseUnits(t.Price)
	if err != nil {
		return chain.Deal{}, fmt.Errorf("deal price: %w", err)
	}
	tok, err := chain.ParseTokenName(t.Token)
	if err != nil {
		return chain.Deal{}, fmt.Errorf("deal: %w", err)
	}
	return chain.Deal{
		ID: common.HexToHash(t.ID), OfferID: common.HexToHash(t.OfferID),
		RequesterWallet: common.HexToAddress(t.RequesterWallet), ProviderWallet: common.HexToAddress(t.ProviderWallet),
		Token: tok, Price: price, MaxDurationS: uint64(t.MaxDurationS), GPUs: uint32(len(t.GPUs)),
		SpecHash: common.HexToHash(t.SpecHash),
	}, nil
}

// dealFunds is the market's funds check before it reserves GPUs for a
// requester: what the requester's channel to this node holds (unless it
// is closing) plus its wallet's balance of the token.
type dealFunds struct {
	c    *chain.Client
	self common.Address
}

// CanPay reads the wallet's balance first, and the channel only when the
// balance alone falls short: the answer is the same (a channel holds
// nothing below zero), and a funded wallet costs one read, not two, on
// the path of every first bid to it. In a burst of offers every
// provider checks every requester, and the chain's queue of reads was
// what the bids waited on (make bench-scale-real's "funds" phase).
func (f dealFunds) CanPay(ctx context.Context, wallet, token string, amount *big.Int) (bool, error) {
	if !common.IsHexAddress(wallet) {
		return false, fmt.Errorf("wallet %q is not an address", wallet)
	}
	tok, err := chain.ParseTokenName(token)
	if err != nil {
		return false, err
	}
	payer := common.HexToAddress(wallet)
	return balanceThenChannel(amount,
		func() (*big.Int, error) { return f.c.BalanceOf(ctx, tok, payer) },
		func() (chain.Channel, error) { return f.c.Channel(ctx, payer, f.self, tok) })
}

// balanceThenChannel says whether balance plus what channel holds covers
// amount, reading the channel only when the balance does not.
func balanceThenChannel(amount *big.Int, balance func() (*big.Int, error), channel func() (chain.Channel, error)) (bool, error) {
	have, err := balance()
	if err != nil {
		return false, err
	}
	if have.Cmp(amount) >= 0 {
		return true, nil
	}
	ch, err := channel()
	if err != nil {
		return false, err
	}
	if ch.ClosesAt != 0 {
		return false, nil // a closing channel's deposit pays no new deal
	}
	return new(big.Int).Add(have, ch.Available.Big()).Cmp(amount) >= 0, nil
}

// openMarket starts the market with prices turned into base units of their
// tokens.
func (n *Node) openMarket(ctx context.Context, cfg parsed) error {
	mc := n.repo.Config.Market
	prices := map[string]map[string]string{}
	for class, byToken := range mc.Prices {
		prices[class] = map[string]string{}
		for tok, whole := range byToken {
			t, err := chain.ParsePriceToken(tok, n.chain.DefaultToken())
			if err != nil {
				return fmt.Errorf("market.prices[%s]: %w", class, err)
			}
			_, dec, err := n.chain.TokenInfo(ctx, t)
			if err != nil {
				return fmt.Errorf("market.prices[%s]: %w", class, err)
			}
			base, err := chain.ParseUnits(whole, dec)
			if err != nil {
				return fmt.Errorf("market.prices[%s][%s]: %w", class, tok, err)
			}
			prices[class][chain.TokenName(t)] = base.String()
		}
	}
	m, err := market.New(n.p2p, n.repo.Identity, n.gpus, dealSigner{n.wallet, n.chain.ChainID(), n.chain.Escrow()}, market.Config{
		Prices: prices, PricingCommand: mc.PricingCommand, AcceptedImages: mc.AcceptedImages,
		MaxDuration: cfg.marketMaxDuration, BidWindow: cfg.marketBidWindow, MaxHoldbackBps: cfg.marketMaxHoldback,
		ReserveFor: cfg.marketReserveFor, MaxReservations: mc.MaxReservations, FormatAmount: n.formatAmount,
		ReserveBudget: mc.ReserveBudget, RequireDiskMiB: mc.RequireDiskMiB, DefaultDiskMiB: mc.DefaultDiskMiB,
		Chain:          fmt.Sprintf("%s/%s", n.chain.ChainID(), strings.ToLower(n.chain.Genesis().Hex())),
		ReputationFile: n.repo.Dir + "/reputation.json", Logger: n.log,
		// Consulted only once the market runs, after openJobs and the
		// lease have reattached this node's jobs.
		Busy:     n.busyGPUs,
		Funds:    dealFunds{n.chain, n.wallet.Address()},
		Proof:    proofHook{n},
		Receipts: receiptHook{n},
	})
	if err != nil {
		return err
	}
	n.market = m
	return nil
}

// busyGPUs are the GPUs of this node's live jobs, market or local: the
// job records outlive a restart, so the GPUs of a job reattached after one
// are not advertised or bid again while it runs (the market's own holds
// do not survive the restart).
func (n *Node) busyGPUs() []string {
	if n.jobs == nil {
		return nil
	}
	var out []string
	for _, j := range n.jobs.List() {
		// A challenge's GPUs are lent, not taken: a bid preempts it.
		if _, challenge := n.challenges.Load(j.ID); !j.State.Terminal() && !challenge {
			out = append(out, j.GPUs...)
		}
	}
	return out
}

// formatAmount writes base units of a market token in whole units with
// its symbol ("2 tUSD"), for the reasons a job gives; base units when the
// token's decimals cannot be read.
func (n *Node) formatAmount(token, base string) string {
	v, err := chain.ParseBaseUnits(base)
	if err != nil {
		return base
	}
	tok, err := chain.ParseTokenName(token)
	if err != nil {
		return base + " base units"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sym, dec, err := n.chain.TokenInfo(ctx, tok)
	if err != nil {
		return base + " base units"
	}
	return chain.FormatUnits(v, dec) + " " + sym
}

func (n *Node) marketRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/market/providers", func(w http.ResponseWriter, r *http.Request) {
		info, err := n.providers(r.Context(), r.URL.Query().Get("gpu"))
		reply(w, info, err)
	})
	mux.HandleFunc("POST /v1/market/offer", func(w http.ResponseWriter, r *http.Request) {
		var req api.OfferRequest
		if !readJSON(w, r, &req) {
			return
		}
		req.Resources.Normalize()
		res, err := n.lease.Requester().Negotiate(r.Context(), req)
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/market/verify", n.handleVerify)
	mux.HandleFunc("GET /v1/market/deals", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.market.Deals())
	})
}

func (n *Node) providers(ctx context.Context, class string) (api.ProvidersInfo, error) {
	found, err := n.market.FindProviders(ctx, class, 50)
	if err != nil {
		return api.ProvidersInfo{}, badRequest{err}
	}
	if class == "" {
		class = market.AnyGPU
	}
	out := api.ProvidersInfo{Class: class, Providers: []api.ProviderSummary{}}
	for _, f := range found {
		a := f.Advert
		s := api.ProviderSummary{PeerID: a.PeerID, Wallet: a.Wallet, GPUs: a.GPUs, Reputation: f.Reputation, Proof: f.Proof,
			ExpiresAt: time.UnixMilli(a.ExpiresAtMs).UTC(),
			Health:    fmt.Sprintf("%d healthy, %d degraded, %d unhealthy", a.Healthy, a.Degraded, a.Unhealthy)}
		if s.GPUs == nil {
			s.GPUs = []market.GPUGroup{}
		}
		for _, p := range a.Prices {
			pv := api.PriceView{Token: p.Token, PerGPUHour: p.PerGPUHour, Symbol: "?", Units: p.PerGPUHour}
			tok, terr := chain.ParseTokenName(p.Token)
			v, verr := chain.ParseBaseUnits(p.PerGPUHour)
			if terr == nil && verr == nil {
				if sym, dec, err := n.chain.TokenInfo(ctx, tok); err == nil {
					pv.Symbol, pv.Units = sym, chain.FormatUnits(v, dec)
				}
			}
			s.Price = append(s.Price, pv)
		}
		out.Providers = append(out.Providers, s)
	}
	n.receiptSummaries(ctx, out.Providers)
	return out, nil
}
