package api

import (
	"encoding/json"
	"time"

	"github.com/aixblock/aixblock/chain"
)

// WalletInfo is GET /v1/wallet.
type WalletInfo struct {
	Address string `json:"address"`
	ChainID uint64 `json:"chain_id"`
	// RPC is the chain's URL, or "embedded" for the daemon's dev chain.
	RPC                string        `json:"rpc"`
	Escrow             string        `json:"escrow"`
	Token              string        `json:"token"`
	TokenSymbol        string        `json:"token_symbol"`
	TokenDecimals      uint8         `json:"token_decimals"`
	TokenBalance       *chain.Amount `json:"token_balance"`
	TokenBalanceUnits  string        `json:"token_balance_units"`
	NativeBalance      *chain.Amount `json:"native_balance"`
	NativeBalanceUnits string        `json:"native_balance_units"`
	// ChallengePeriodS is the escrow's: how long a closing channel stays
	// redeemable, in seconds.
	ChallengePeriodS uint64 `json:"challenge_period_s"`
}

// PaymentRequest is POST /v1/wallet/deposit and /v1/wallet/voucher: Amount
// in whole units of the token ("1.5"); Token empty means the configured one,
// "native" the chain's coin. For a voucher, Amount is cumulative.
type PaymentRequest struct {
	Payee  string `json:"payee"`
	Token  string `json:"token,omitempty"`
	Amount string `json:"amount"`
}

// ChannelRequest is POST /v1/wallet/close and /v1/wallet/withdraw.
type ChannelRequest struct {
	Payee string `json:"payee"`
	Token string `json:"token,omitempty"`
}

// RedeemRequest is POST /v1/wallet/redeem: vouchers to redeem (each also
// kept); none means every kept voucher that is owed more than was redeemed.
type RedeemRequest struct {
	Vouchers []json.RawMessage `json:"vouchers,omitempty"`
}

// TxInfo is a mined transaction.
type TxInfo struct {
	Tx      string `json:"tx"`
	Block   uint64 `json:"block"`
	GasUsed uint64 `json:"gas_used"`
	Channel string `json:"channel,omitempty"`
}

// RedeemResult is the answer to POST /v1/wallet/redeem.
type RedeemResult struct {
	TxInfo
	Redeemed []ChannelView `json:"redeemed"`
	// Paid is the sum paid by this transaction, in base units; PaidUnits
	// and Symbol say it for people when every channel is in one token.
	Paid      *chain.Amount `json:"paid"`
	PaidUnits string        `json:"paid_units,omitempty"`
	Symbol    string        `json:"symbol,omitempty"`
}

// ChannelView is a channel with this wallet's side of it.
type ChannelView struct {
	chain.Channel
	Role     string `json:"role"` // payer or payee
	Symbol   string `json:"symbol"`
	Decimals uint8  `json:"decimals"`
	// Vouched is the best voucher kept for the channel: received (payee)
	// or signed (payer); zero when none.
	Vouched *chain.Amount `json:"vouched"`
	// Withdrawable is what the payer can withdraw now.
	Withdrawable *chain.Amount `json:"withdrawable"`
}

// ChannelsInfo is GET /v1/wallet/channels.
type ChannelsInfo struct {
	Address  string        `json:"address"`
	Channels []ChannelView `json:"channels"`
}

// Earning is one payment into the wallet, for the earnings chart.
type Earning struct {
	Time     time.Time     `json:"time"`
	Channel  string        `json:"channel"`
	Token    string        `json:"token"`
	Symbol   string        `json:"symbol"`
	Decimals uint8         `json:"decimals"`
	Amount   *chain.Amount `json:"amount"`
	Units    string        `json:"amount_units"`
	Tx       string        `json:"tx"`
}

// EarningsInfo is GET /v1/wallet/earnings.
type EarningsInfo struct {
	Address  string    `json:"address"`
	Earnings []Earning `json:"earnings"`
}
