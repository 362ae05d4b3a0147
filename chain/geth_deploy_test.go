package chain_test

import (
	"context"
	"testing"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/chain/gethtest"
)

// chain deploy on a real geth (mainnet rules, 1 s blocks) with nothing of
// ours on it: the proxy is there (geth's genesis has it, EIP-7997), the
// test token and the escrow go to the table's dev addresses, a second run
// finds them and sends nothing, and the chain checks out as init checks it.
func TestGethDeploy(t *testing.T) {
	t.Parallel()
	g := gethtest.Start(t, gethtest.Options{Period: time.Second, NoDeploy: true, Accounts: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := chain.DeployConfig{TestToken: true, Poll: 100 * time.Millisecond}
	d, err := chain.Deploy(ctx, g.Client(), chain.DevKey(0), cfg)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := chain.LookupNetwork("dev")
	if err != nil {
		t.Fatal(err)
	}
	if !d.Proxy.Found || d.Escrow.Found || d.Token.Found || d.Escrow.Address != dev.Escrow || d.Token.Address != dev.Token || d.ChallengePeriodS != 600 {
		t.Fatalf("first deploy: %+v", d)
	}
	again, err := chain.Deploy(ctx, g.Client(), chain.DevKey(0), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Escrow.Found || !again.Token.Found || again.Escrow.Tx != "" || again.Escrow.Address != d.Escrow.Address {
		t.Fatalf("second deploy: %+v", again)
	}
	got, err := chain.CheckChain(ctx, g.Client(), dev.ChainID, dev.Escrow, dev.Token)
	if err != nil {
		t.Fatal(err)
	}
	if got.Escrow.ChallengePeriodS != 600 || got.TokenSymbol != "tUSD" || got.Network != "dev" {
		t.Fatalf("check: %+v", got)
	}
}
