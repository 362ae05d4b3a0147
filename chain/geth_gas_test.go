package chain_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/chain/gethtest"
	"github.com/aixblock/aixblock/contracts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind/v2"
	"github.com/ethereum/go-ethereum/core/types"
)

// gethGasTolerance is how far a figure on geth may be from the simulated
// backend's snapshot. The operations are the same; what differs is
// calldata: the contracts sit at other addresses (a zero byte of calldata
// costs 4 gas, another 16) and signatures are other bytes.
const gethGasTolerance = 100

// The gas of each escrow operation on a real geth under mainnet rules, the
// same sequence as TestGasSnapshot on the simulated backend, compared with
// chain/testdata/gas.json.
func TestGethGas(t *testing.T) {
	t.Parallel()
	g := gethtest.Start(t, gethtest.Options{Period: time.Second, NoMint: true, ChallengePeriod: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := chain.Config{Poll: 100 * time.Millisecond}
	pw, yw, ow := g.Wallet(t, 1), g.Wallet(t, 2), g.Wallet(t, 3)
	// As on the simulated backend: the payer and the other payer hold
	// tokens, the payee none (its first redeem creates its balance).
	if err := g.Mint(ctx, pw.Address(), ow.Address()); err != nil {
		t.Fatal(err)
	}
	payer, payee, other := g.NewClient(t, pw, cfg), g.NewClient(t, yw, cfg), g.NewClient(t, ow, cfg)
	gas := chain.GasRun{Payer: payer, Payee: payee, Other: other, Token: g.Info.Token,
		Approve: func(ctx context.Context) (*types.Receipt, error) { return approve(ctx, g, pw) },
		PassChallenge: func(ctx context.Context) {
			ch, err := payer.Channel(ctx, payer.Address(), payee.Address(), g.Info.Token)
			if err != nil {
				t.Fatal(err)
			}
			waitChainTime(t, ctx, g, ch.ClosesAt)
		},
	}.Measure(t, ctx)
	compareGethGas(t, gas)
}

// compareGethGas holds gas measured on geth to chain/testdata/gas.json,
// within gethGasTolerance.
func compareGethGas(t *testing.T, gas map[string]uint64) {
	raw, err := os.ReadFile(filepath.Join("testdata", "gas.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]uint64
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-40s %8s %8s %6s\n", "operation", "geth", "sim", "diff")
	for _, n := range slices.Sorted(maps.Keys(want)) {
		got, ok := gas[n]
		if !ok {
			t.Errorf("%s: not measured on geth", n)
			continue
		}
		d := int64(got) - int64(want[n])
		fmt.Fprintf(&b, "%-40s %8d %8d %+6d\n", n, got, want[n], d)
		if d > gethGasTolerance || d < -gethGasTolerance {
			t.Errorf("%s: %d gas on geth, %d in gas.json (more than %d apart)", n, got, want[n], gethGasTolerance)
		}
	}
	t.Logf("gas on geth (mainnet rules) against chain/testdata/gas.json:\n%s", b.String())
}

// approve has w approve the escrow for the most of the token, as
// Client.Deposit does when the allowance is short.
func approve(ctx context.Context, g *gethtest.Geth, w *chain.Wallet) (*types.Receipt, error) {
	erc := contracts.NewERC20()
	opts := w.Transactor(new(big.Int).SetUint64(g.Info.ChainID))
	opts.Context = ctx
	max := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
	tx, err := bind.Transact(erc.Instance(g.Client(), g.Info.Token), opts, erc.PackApprove(g.Info.Escrow, max))
	if err != nil {
		return nil, err
	}
	return bind.WaitMined(ctx, g.Client(), tx.Hash())
}
