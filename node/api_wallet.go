package node

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/node/api"
	"github.com/aixblock/aixblock/node/lease"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

func (n *Node) walletRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/wallet", func(w http.ResponseWriter, r *http.Request) {
		info, err := n.walletInfo(r.Context())
		reply(w, info, err)
	})
	mux.HandleFunc("GET /v1/wallet/channels", func(w http.ResponseWriter, r *http.Request) {
		info, err := n.channels(r.Context())
		reply(w, info, err)
	})
	mux.HandleFunc("POST /v1/wallet/deposit", func(w http.ResponseWriter, r *http.Request) {
		var req api.PaymentRequest
		if !readJSON(w, r, &req) {
			return
		}
		info, err := n.deposit(r.Context(), req)
		reply(w, info, err)
	})
	mux.HandleFunc("POST /v1/wallet/voucher", func(w http.ResponseWriter, r *http.Request) {
		var req api.PaymentRequest
		if !readJSON(w, r, &req) {
			return
		}
		v, err := n.signVoucher(r.Context(), req)
		reply(w, v, err)
	})
	mux.HandleFunc("POST /v1/wallet/redeem", func(w http.ResponseWriter, r *http.Request) {
		var req api.RedeemRequest
		if !readJSON(w, r, &req) {
			return
		}
		res, err := n.redeem(r.Context(), req)
		reply(w, res, err)
	})
	for _, op := range []struct {
		path string
		do   func(context.Context, common.Address, common.Address) (*types.Receipt, error)
	}{
		{"POST /v1/wallet/close", func(ctx context.Context, p, t common.Address) (*types.Receipt, error) {
			return n.chain.StartClose(ctx, p, t)
		}},
		{"POST /v1/wallet/withdraw", func(ctx context.Context, p, t common.Address) (*types.Receipt, error) {
			return n.chain.Withdraw(ctx, p, t)
		}},
	} {
		mux.HandleFunc(op.path, func(w http.ResponseWriter, r *http.Request) {
			var req api.ChannelRequest
			if !readJSON(w, r, &req) {
				return
			}
			payee, token, err := n.channelArgs(req.Payee, req.Token)
			if err != nil {
				reply(w, nil, err)
				return
			}
			rc, err := op.do(r.Context(), payee, token)
			reply(w, txInfo(rc, chain.ChannelID(n.wallet.Address(), payee, token)), err)
		})
	}
}

// badRequest marks errors that are the caller's, not the chain's.
type badRequest struct{ error }

func (e badRequest) Unwrap() error { return e.error }

// reply answers v, or the error: 400 for bad input, a refused voucher or a
// contract's revert (which names the reason), 502 for the chain failing.
func reply(w http.ResponseWriter, v any, err error) {
	if err == nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	var br badRequest
	var re *chain.RevertError
	code := http.StatusBadGateway
	if errors.As(err, &br) || errors.Is(err, lease.ErrInvalid) || errors.As(err, &re) || errors.Is(err, chain.ErrVoucherInvalid) || errors.Is(err, chain.ErrVoucherSignature) {
		code = http.StatusBadRequest
	}
	writeJSON(w, code, apiError(err.Error()))
}

func txInfo(r *types.Receipt, ch common.Hash) api.TxInfo {
	if r == nil {
		return api.TxInfo{}
	}
	return api.TxInfo{Tx: r.TxHash.Hex(), Block: r.BlockNumber.Uint64(), GasUsed: r.GasUsed, Channel: ch.Hex()}
}

func (n *Node) channelArgs(payee, token string) (common.Address, common.Address, error) {
	if !common.IsHexAddress(payee) {
		return common.Address{}, common.Address{}, badRequest{fmt.Errorf("payee: %q is not an address (0x and 40 hex digits)", payee)}
	}
	t, err := chain.ParseToken(token, n.chain.DefaultToken())
	if err != nil {
		return common.Address{}, common.Address{}, badRequest{err} // the error names the token
	}
	return common.HexToAddress(payee), t, nil
}

// amountArgs parses a payment request's payee, token and amount.
func (n *Node) amountArgs(ctx context.Context, req api.PaymentRequest) (payee, token common.Address, amount *big.Int, err error) {
	if payee, token, err = n.channelArgs(req.Payee, req.Token); err != nil {
		return
	}
	_, dec, err := n.chain.TokenInfo(ctx, token)
	if err != nil {
		return
	}
	if amount, err = chain.ParseUnits(req.Amount, dec); err != nil {
		err = badRequest{err}
		return
	}
	if amount.Sign() <= 0 || amount.Cmp(chain.MaxAmount) > 0 {
		err = badRequest{fmt.Errorf("amount %q: want more than 0 and at most 2^96-1 base units", req.Amount)}
	}
	return
}

func (n *Node) walletInfo(ctx context.Context) (api.WalletInfo, error) {
	c := n.chain
	info := api.WalletInfo{Address: c.Address().Hex(), ChainID: c.ChainID().Uint64(), RPC: n.repo.Config.Chain.RPC,
		Escrow: c.Escrow().Hex(), Token: c.DefaultToken().Hex()}
	if info.RPC == "" {
		info.RPC = "embedded"
	}
	var err error
	if info.TokenSymbol, info.TokenDecimals, err = c.TokenInfo(ctx, c.DefaultToken()); err != nil {
		return info, err
	}
	tb, err := c.Balance(ctx, c.DefaultToken())
	if err != nil {
		return info, err
	}
	nb, err := c.Balance(ctx, chain.NativeToken)
	if err != nil {
		return info, err
	}
	info.TokenBalance, info.TokenBalanceUnits = chain.NewAmount(tb), chain.FormatUnits(tb, info.TokenDecimals)
	info.NativeBalance, info.NativeBalanceUnits = chain.NewAmount(nb), chain.FormatUnits(nb, 18)
	cp, err := c.ChallengePeriod(ctx)
	if err != nil {
		return info, err
	}
	info.ChallengePeriodS = uint64(cp / time.Second)
	return info, nil
}

func (n *Node) deposit(ctx context.Context, req api.PaymentRequest) (api.TxInfo, error) {
	payee, token, amount, err := n.amountArgs(ctx, req)
	if err != nil {
		return api.TxInfo{}, err
	}
	bal, err := n.chain.Balance(ctx, token)
	if err != nil {
		return api.TxInfo{}, err
	}
	if bal.Cmp(amount) < 0 {
		sym, dec, _ := n.chain.TokenInfo(ctx, token)
		return api.TxInfo{}, badRequest{fmt.Errorf("insufficient funds: wallet %s holds %s %s, deposit needs %s",
			n.wallet.Address(), chain.FormatUnits(bal, dec), sym, chain.FormatUnits(amount, dec))}
	}
	r, err := n.chain.Deposit(ctx, payee, token, amount)
	return txInfo(r, chain.ChannelID(n.wallet.Address(), payee, token)), err
}

// signVoucher signs a cumulative voucher; it refuses one above what the
// channel holds, since the escrow would not pay it.
func (n *Node) signVoucher(ctx context.Context, req api.PaymentRequest) (*chain.Voucher, error) {
	payee, token, amount, err := n.amountArgs(ctx, req)
	if err != nil {
		return nil, err
	}
	ch, err := n.chain.Channel(ctx, n.wallet.Address(), payee, token)
	if err != nil {
		return nil, err
	}
	if amount.Cmp(ch.Deposited.Big()) > 0 {
		return nil, badRequest{fmt.Errorf("voucher for %s base units exceeds the channel's deposit of %s: deposit more first", amount, ch.Deposited)}
	}
	v, err := n.chain.SignVoucher(payee, token, amount)
	if err != nil {
		return nil, err
	}
	if _, err := n.vouchers.KeepSigned(v); err != nil {
		return nil, err
	}
	return v, nil
}

func (n *Node) redeem(ctx context.Context, req api.RedeemRequest) (api.RedeemResult, error) {
	for i, raw := range req.Vouchers {
		v, err := chain.DecodeVoucher(raw)
		if err != nil {
			return api.RedeemResult{}, fmt.Errorf("voucher %d: %w", i, err)
		}
		if v.Payee != n.wallet.Address() {
			return api.RedeemResult{}, badRequest{fmt.Errorf("voucher %d pays %s, not this wallet %s", i, v.Payee, n.wallet.Address())}
		}
		if _, err := n.vouchers.KeepReceived(v); err != nil {
			return api.RedeemResult{}, err
		}
	}
	red, err := n.lease.Provider().RedeemOwed(ctx, nil)
	if err != nil {
		return api.RedeemResult{}, err
	}
	views := []api.ChannelView{}
	paid := red.Paid
	r, todo := red.Receipt, red.Vouchers
	for _, v := range todo {
		ch, err := n.chain.Channel(ctx, v.Payer, v.Payee, v.Token)
		if err != nil {
			return api.RedeemResult{}, err
		}
		views = append(views, n.view(ctx, ch))
	}
	res := api.RedeemResult{TxInfo: txInfo(r, common.Hash{}), Redeemed: views, Paid: chain.NewAmount(paid)}
	one := true
	for _, v := range views {
		one = one && v.Token == views[0].Token
	}
	if one && len(views) > 0 {
		res.PaidUnits, res.Symbol = chain.FormatUnits(paid, views[0].Decimals), views[0].Symbol
	}
	return res, nil
}

func (n *Node) channels(ctx context.Context) (api.ChannelsInfo, error) {
	chs, err := n.chain.Channels(ctx)
	if err != nil {
		return api.ChannelsInfo{}, err
	}
	out := api.ChannelsInfo{Address: n.wallet.Address().Hex(), Channels: []api.ChannelView{}}
	for _, ch := range chs {
		out.Channels = append(out.Channels, n.view(ctx, ch))
	}
	return out, nil
}

func (n *Node) view(ctx context.Context, ch chain.Channel) api.ChannelView {
	v := api.ChannelView{Channel: ch, Role: "payee", Vouched: chain.NewAmount(nil), Withdrawable: chain.NewAmount(nil)}
	payer := ch.Payer == n.wallet.Address()
	if payer {
		v.Role = "payer"
		if ch.ClosesAt != 0 && uint64(time.Now().Unix()) >= ch.ClosesAt {
			v.Withdrawable = ch.Available
		}
	}
	if best := n.vouchers.Best(ch.ID, payer); best != nil {
		v.Vouched = best.CumulativeAmount
	}
	v.Symbol, v.Decimals, _ = n.chain.TokenInfo(ctx, ch.Token)
	return v
}
