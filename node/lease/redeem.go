package lease

import (
	"context"
	"math/big"

	"github.com/aixblock/aixblock/chain"
	"github.com/ethereum/go-ethereum/core/types"
)

// Redeemed is one redeem transaction: the vouchers it redeemed and what it
// paid in all, in base units.
type Redeemed struct {
	Receipt  *types.Receipt
	Vouchers []*chain.Voucher
	Paid     *big.Int
}

// RedeemOwed redeems, in one transaction, the best kept voucher of each
// channel of this chain that is owed more than the channel has paid and
// fits its deposit (one over it waits for a top-up). Nothing owed, or
// less than above (nil: any): no transaction, and Paid says what is owed.
func (pv *Provider) RedeemOwed(ctx context.Context, above *big.Int) (Redeemed, error) {
	var todo []*chain.Voucher
	paid := new(big.Int)
	for _, v := range pv.vouchers.Received() {
		if v.ChainID.Big().Cmp(pv.chain.ChainID()) != 0 || v.Escrow != pv.chain.Escrow() {
			continue
		}
		ch, err := pv.chain.Channel(ctx, v.Payer, v.Payee, v.Token)
		if err != nil {
			return Redeemed{}, err
		}
		owed := new(big.Int).Sub(v.CumulativeAmount.Big(), ch.Redeemed.Big())
		if owed.Sign() <= 0 {
			continue
		}
		if v.CumulativeAmount.Cmp(ch.Deposited.Big()) > 0 {
			pv.log.Warn("voucher exceeds its channel's deposit; waiting for a top-up", "channel", v.Channel, "vouched", v.CumulativeAmount, "deposited", ch.Deposited)
			continue
		}
		todo = append(todo, v)
		paid.Add(paid, owed)
	}
	if len(todo) == 0 || (above != nil && paid.Cmp(above) < 0) {
		return Redeemed{Paid: paid}, nil
	}
	var r *types.Receipt
	var err error
	if len(todo) == 1 {
		r, err = pv.chain.Redeem(ctx, todo[0])
	} else {
		r, err = pv.chain.RedeemBatch(ctx, todo)
	}
	if err != nil {
		return Redeemed{}, err
	}
	return Redeemed{Receipt: r, Vouchers: todo, Paid: paid}, nil
}

// paidAmount is what a redeem paid, in token units when every voucher is
// in one token (base units otherwise).
func (pv *Provider) paidAmount(r Redeemed) string {
	for _, v := range r.Vouchers[1:] {
		if v.Token != r.Vouchers[0].Token {
			return r.Paid.String() + " base units of several tokens"
		}
	}
	return pv.formatAmount(chain.TokenName(r.Vouchers[0].Token), r.Paid.String())
}
