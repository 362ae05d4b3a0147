package chain

import (
	"context"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/common"
)

// Confirmations is how deep a block must be before this client relies on
// what it holds (Config.Confirmations, at least 1).
func (c *Client) Confirmations() uint64 { return c.cfg.Confirmations }

// ConfirmedChannel reads the channel as of the newest block with the
// configured confirmations: what a provider may rely on. With one
// confirmation it is the latest block, as Channel reads.
func (c *Client) ConfirmedChannel(ctx context.Context, payer, payee, token common.Address) (Channel, error) {
	if c.cfg.Confirmations <= 1 {
		return c.Channel(ctx, payer, payee, token)
	}
	head, err := c.b.BlockNumber(ctx)
	if err != nil {
		return Channel{}, fmt.Errorf("read channel: head block: %w", err)
	}
	at := uint64(0)
	if head+1 > c.cfg.Confirmations {
		at = head + 1 - c.cfg.Confirmations
	}
	out, err := bind.Call(c.escrow, &bind.CallOpts{Context: ctx, BlockNumber: new(big.Int).SetUint64(at)}, c.esc.PackChannel(payer, payee, token), c.esc.UnpackChannel)
	if err != nil {
		return Channel{}, fmt.Errorf("read channel at block %d (%d confirmations): %w", at, c.cfg.Confirmations, err)
	}
	return Channel{
		ID: ChannelID(payer, payee, token), Payer: payer, Payee: payee, Token: token,
		Deposited: NewAmount(out.Deposited), Redeemed: NewAmount(out.Redeemed),
		Available: NewAmount(new(big.Int).Sub(out.Deposited, out.Redeemed)),
		ClosesAt:  out.ClosesAt.Uint64(),
	}, nil
}
