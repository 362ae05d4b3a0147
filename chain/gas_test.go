package chain

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
)

var updateGas = flag.Bool("update-gas", false, "rewrite testdata/gas.json with the gas measured now")

// Budgets the issue set for one job's on-chain cost.
const (
	firstJobBudget = 150_000
	laterJobBudget = 60_000
)

// TestGasSnapshot measures each operation's gas on the simulated backend
// (deterministic for the same bytecode) and compares it with the committed
// snapshot; `make bench-gas` prints the table, `-update-gas` rewrites it.
func TestGasSnapshot(t *testing.T) {
	e := newSim(t)
	gas := GasRun{Payer: e.payer, Payee: e.payee, Other: e.other, Token: e.token,
		Approve: func(ctx context.Context) (*types.Receipt, error) {
			return e.payer.tx.send(ctx, "approve", e.token, nil, e.payer.erc20.PackApprove(e.escrow, new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))))
		},
		PassChallenge: func(context.Context) {
			// AdjustTime refuses a pending block that holds a
			// transaction (a resend the client's fee bump made under
			// load): mine it first, and try again if one slips in.
			var err error
			for range 5 {
				e.sim.Commit()
				if err = e.sim.AdjustTime(testChallenge * time.Second); err == nil {
					return
				}
			}
			t.Fatal(err)
		},
	}.Measure(t, context.Background())
	names := slices.Sorted(maps.Keys(gas))
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%-40s %8d\n", n, gas[n])
	}
	t.Logf("gas used:\n%s", b.String())
	checkGasBudgets(t, gas)
	file := filepath.Join("testdata", "gas.json")
	if *updateGas {
		out, _ := json.MarshalIndent(gas, "", "  ")
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(file, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	checkGasSnapshot(t, file, gas)
}

// GasRun is the sequence of escrow operations whose gas the snapshot
// holds, on a chain of the caller's: Payer and Other pay Payee in Token.
// Approve has the payer approve the escrow for the most of Token;
// PassChallenge lets the payer's closing channel's challenge period pass.
// Exported (from a test file) for the geth tests of chain_test.
type GasRun struct {
	Payer, Payee, Other *Client
	Token               common.Address
	Approve             func(context.Context) (*types.Receipt, error)
	PassChallenge       func(context.Context)
}

// Measure runs the operations in order and returns each one's gas by
// name, and one job's cost derived from them.
func (g GasRun) Measure(t testing.TB, ctx context.Context) map[string]uint64 {
	gas := map[string]uint64{}
	note := func(name string, r *types.Receipt, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		gas[name] = r.GasUsed
	}
	voucher := func(from *Client, token common.Address, amount int64) *Voucher {
		t.Helper()
		v, err := from.SignVoucher(g.Payee.Address(), token, big.NewInt(amount))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	payer, payee, tok := g.Payer, g.Payee.Address(), g.Token
	// A live escrow already holds the token for other channels: the very
	// first deposit into a new escrow also pays for creating its balance.
	r, err := g.Other.Deposit(ctx, payee, tok, big.NewInt(5_000_000))
	note("erc20_deposit_first_ever_into_escrow", r, err)
	// ERC-20: a wallet approves the escrow once per token, then opens the
	// channel.
	r, err = g.Approve(ctx)
	note("erc20_approve_once_per_wallet", r, err)
	r, err = payer.Deposit(ctx, payee, tok, big.NewInt(10_000_000))
	note("erc20_deposit_new_channel", r, err)
	r, err = payer.Deposit(ctx, payee, tok, big.NewInt(5_000_000))
	note("erc20_deposit_top_up", r, err)
	r, err = g.Payee.Redeem(ctx, voucher(payer, tok, 1_000_000))
	note("erc20_redeem_first", r, err)
	r, err = g.Payee.Redeem(ctx, voucher(payer, tok, 2_000_000))
	note("erc20_redeem_later", r, err)
	// A batch of vouchers from two payers in one transaction.
	r, err = g.Payee.RedeemBatch(ctx, []*Voucher{voucher(payer, tok, 3_000_000), voucher(g.Other, tok, 1_000_000)})
	note("erc20_redeem_batch_of_2", r, err)
	r, err = payer.StartClose(ctx, payee, tok)
	note("start_close", r, err)
	g.PassChallenge(ctx)
	r, err = payer.Withdraw(ctx, payee, tok)
	note("erc20_withdraw", r, err)
	r, err = payer.Deposit(ctx, payee, NativeToken, big.NewInt(1e15))
	note("native_deposit_new_channel", r, err)
	r, err = g.Payee.Redeem(ctx, voucher(payer, NativeToken, 1e14))
	note("native_redeem_first", r, err)
	r, err = g.Payee.Redeem(ctx, voucher(payer, NativeToken, 2e14))
	note("native_redeem_later", r, err)
	// One job's cost: the first between a pair opens the channel and is
	// redeemed (the payee's first receipt of the token included); a later
	// one is a redeem of a larger cumulative voucher on the same channel
	// (the deposit already covers it).
	gas["job_first_erc20"] = gas["erc20_deposit_new_channel"] + gas["erc20_redeem_first"]
	gas["job_later_erc20"] = gas["erc20_redeem_later"]
	gas["job_first_native"] = gas["native_deposit_new_channel"] + gas["native_redeem_first"]
	gas["job_later_native"] = gas["native_redeem_later"]
	return gas
}

// checkGasBudgets holds one job's cost to the budgets.
func checkGasBudgets(t *testing.T, gas map[string]uint64) {
	for _, n := range []string{"job_first_erc20", "job_first_native"} {
		if gas[n] >= firstJobBudget {
			t.Errorf("%s costs %d gas, budget %d", n, gas[n], firstJobBudget)
		}
	}
	for _, n := range []string{"job_later_erc20", "job_later_native"} {
		if gas[n] >= laterJobBudget {
			t.Errorf("%s costs %d gas, budget %d", n, gas[n], laterJobBudget)
		}
	}
}

// checkGasSnapshot compares gas with the snapshot in file, figure by
// figure, both ways.
func checkGasSnapshot(t *testing.T, file string, gas map[string]uint64) {
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run make bench-gas UPDATE=1 to write the snapshot)", err)
	}
	var want map[string]uint64
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	for _, n := range slices.Sorted(maps.Keys(gas)) {
		if want[n] != gas[n] {
			t.Errorf("%s: %d gas, snapshot says %d", n, gas[n], want[n])
		}
	}
	for n := range want {
		if _, ok := gas[n]; !ok {
			t.Errorf("snapshot has %s, not measured any more", n)
		}
	}
	if t.Failed() {
		t.Log("if the change is intended: make bench-gas UPDATE=1, and commit testdata/gas.json")
	}
}

// lowTipOnce suggests a tip far below what the miner takes, once, so the
// first transaction sticks in the pool.
type lowTipOnce struct {
	Backend
	used *atomic.Bool
}

func (l lowTipOnce) SuggestGasTipCap(ctx context.Context) (*big.Int, error) {
	if !l.used.Swap(true) {
		return big.NewInt(1), nil
	}
	return l.Backend.SuggestGasTipCap(ctx)
}

// A transaction the miner will not take is sent again, same nonce, with
// higher fees, and the replacement is what gets mined.
func TestFeeBump(t *testing.T) {
	var used atomic.Bool
	e := newSim(t, func(o *simEnvOpts) {
		o.backend = append(o.backend, simulated.WithMinerMinTip(big.NewInt(1e9)))
		o.bumpAfter = 20 * time.Millisecond
		o.wrap = func(b Backend) Backend { return lowTipOnce{b, &used} }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nonce, _ := e.b.NonceAt(ctx, e.payer.Address(), nil)
	r, err := e.payer.Deposit(ctx, e.payee.Address(), NativeToken, big.NewInt(1000))
	if err != nil {
		t.Fatal(err)
	}
	tx, _, err := e.b.TransactionByHash(ctx, r.TxHash)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Nonce() != nonce || tx.GasTipCap().Cmp(big.NewInt(1e9)) < 0 {
		t.Fatalf("mined tx nonce %d tip %s; want nonce %d and a bumped tip", tx.Nonce(), tx.GasTipCap(), nonce)
	}
	if !used.Load() {
		t.Fatal("the low tip was never suggested")
	}
	if ch := e.channel(NativeToken); ch.Deposited.Int64() != 1000 {
		t.Fatalf("deposited %s", ch.Deposited)
	}
}
