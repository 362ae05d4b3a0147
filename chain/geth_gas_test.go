package chain_test

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/ethereum/go-ethereum/common"
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
	tok := g.Info.Token
	gas := map[string]uint64{}
	note := func(name string, r *types.Receipt, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		gas[name] = r.GasUsed
	}
	voucher := func(c *chain.Client, token common.Address, amount int64) *chain.Voucher {
		t.Helper()
		v, err := c.SignVoucher(payee.Address(), token, big.NewInt(amount))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	r, err := other.Deposit(ctx, payee.Address(), tok, big.NewInt(5_000_000))
	note("erc20_deposit_first_ever_into_escrow", r, err)
	r, err = approve(ctx, g, pw)
	note("erc20_approve_once_per_wallet", r, err)
	r, err = payer.Deposit(ctx, payee.Address(), tok, big.NewInt(10_000_000))
	note("erc20_deposit_new_channel", r, err)
	r, err = payer.Deposit(ctx, payee.Address(), tok, big.NewInt(5_000_000))
	note("erc20_deposit_top_up", r, err)
	r, err = payee.Redeem(ctx, voucher(payer, tok, 1_000_000))
	note("erc20_redeem_first", r, err)
	r, err = payee.Redeem(ctx, voucher(payer, tok, 2_000_000))
	note("erc20_redeem_later", r, err)
	r, err = payee.RedeemBatch(ctx, []*chain.Voucher{voucher(payer, tok, 3_000_000), voucher(other, tok, 1_000_000)})
	note("erc20_redeem_batch_of_2", r, err)
	r, err = payer.StartClose(ctx, payee.Address(), tok)
	note("start_close", r, err)
	ch, err := payer.Channel(ctx, payer.Address(), payee.Address(), tok)
	if err != nil {
		t.Fatal(err)
	}
	for {
		h, err := g.Client().HeaderByNumber(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if h.Time >= ch.ClosesAt {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	r, err = payer.Withdraw(ctx, payee.Address(), tok)
	note("erc20_withdraw", r, err)
	r, err = payer.Deposit(ctx, payee.Address(), chain.NativeToken, big.NewInt(1e15))
	note("native_deposit_new_channel", r, err)
	r, err = payee.Redeem(ctx, voucher(payer, chain.NativeToken, 1e14))
	note("native_redeem_first", r, err)
	r, err = payee.Redeem(ctx, voucher(payer, chain.NativeToken, 2e14))
	note("native_redeem_later", r, err)
	gas["job_first_erc20"] = gas["erc20_deposit_new_channel"] + gas["erc20_redeem_first"]
	gas["job_later_erc20"] = gas["erc20_redeem_later"]
	gas["job_first_native"] = gas["native_deposit_new_channel"] + gas["native_redeem_first"]
	gas["job_later_native"] = gas["native_redeem_later"]

	raw, err := os.ReadFile(filepath.Join("testdata", "gas.json"))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]uint64
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	fmt.Fprintf(&b, "%-40s %8s %8s %6s\n", "operation", "geth", "sim", "diff")
	for _, n := range names {
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
