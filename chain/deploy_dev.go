package chain

import (
	"context"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/ethclient"
)

// DeployDev does on any dev chain reached through c what StartDevChain does
// on the embedded one, by the same code: it sets info's Token and Escrow to
// the dev chain's addresses for info.ChallengePeriodS, has dev account 0
// (DevKey(0), which must hold coins) deploy the test token and the escrow
// there unless the escrow is there already, then mints DevToken for each
// address of fund that holds none. info.ChainID must be the chain's. For
// tests against a real client (chain/gethtest).
func DeployDev(ctx context.Context, c *ethclient.Client, info DevChainInfo, fund []common.Address) (DevChainInfo, error) {
	var err error
	if info.Token, info.Escrow, err = devChainAddresses(ctx, c, info.ChallengePeriodS); err != nil {
		return info, err
	}
	return info, (&DevChain{client: c}).deploy(ctx, DevKey(0), info, fund)
}
