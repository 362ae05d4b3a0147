package chain

import (
	"context"
	"fmt"
	"math/big"

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
	ch, err := c.channelAt(ctx, new(big.Int).SetUint64(at), payer, payee, token)
	if err != nil {
		return Channel{}, fmt.Errorf("%w (%d confirmations)", err, c.cfg.Confirmations)
	}
	return ch, nil
}

// depositGas bounds the gas of an ERC-20 approve and a first deposit
// (chain/testdata/gas.json: 46,629 and 85,480), with the sender's 20%
// margin on each estimate.
const depositGas = (46_629 + 85_480) * 6 / 5

// DepositGasCost is about what the gas of a deposit (with its approve)
// costs at the chain's current fees, in wei: what the wallet must hold of
// the native coin besides the tokens it deposits.
func (c *Client) DepositGasCost(ctx context.Context) (*big.Int, error) {
	_, feeCap, err := c.tx.fees(ctx)
	if err != nil {
		return nil, fmt.Errorf("gas price: %w", err)
	}
	return new(big.Int).Mul(feeCap, big.NewInt(depositGas)), nil
}
