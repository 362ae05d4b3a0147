package chain

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/params"
)

// The proxy's constants hang together: the presigned transaction is
// unprotected (valid on any chain), its sender recovers to the one-time
// deployer, and that deployer's first contract is the proxy's address.
// (That it leaves deployProxyCode there is checked on a chain below.)
func TestDeployProxyConstants(t *testing.T) {
	tx := new(types.Transaction)
	if err := tx.UnmarshalBinary(deployProxyTx); err != nil {
		t.Fatal(err)
	}
	if tx.Protected() || tx.To() != nil || tx.Nonce() != 0 {
		t.Fatalf("proxy tx: protected %v, to %v, nonce %d", tx.Protected(), tx.To(), tx.Nonce())
	}
	from, err := types.Sender(types.HomesteadSigner{}, tx)
	if err != nil || from != deployProxySigner {
		t.Fatalf("proxy tx sender %s, %v; want %s", from, err, deployProxySigner)
	}
	if a := crypto.CreateAddress(from, 0); a != DeployProxy {
		t.Fatalf("the deployer's first contract is %s, want %s", a, DeployProxy)
	}
	if tx.GasPrice().Cmp(big.NewInt(100e9)) != 0 || tx.Gas() != 100000 {
		t.Fatalf("proxy tx pays %s wei/gas for %d gas", tx.GasPrice(), tx.Gas())
	}
	// The runtime code is the tail of the init code, and what go-ethereum
	// allocates at the address in dev genesis blocks (EIP-7997).
	if !bytes.HasSuffix(tx.Data(), deployProxyCode) || !bytes.Equal(deployProxyCode, params.DeterministicFactoryCode) || DeployProxy != params.DeterministicFactoryAddress {
		t.Fatal("the proxy's runtime code is not what its deployment returns, or not go-ethereum's")
	}
	if a, b := EscrowAddress(time.Hour), EscrowAddress(time.Hour); EscrowAddress(time.Hour) == EscrowAddress(2*time.Hour) || a != b {
		t.Fatal("the escrow's address must depend on its challenge period, and only on it")
	}
}

// newBareSim is a simulated chain with dev accounts funded and nothing
// deployed, not even the proxy. unprotected lets its RPC take pre-EIP-155
// transactions, as geth does with --rpc.allow-unprotected-txs.
func newBareSim(t *testing.T, unprotected bool) mining {
	t.Helper()
	alloc := types.GenesisAlloc{}
	for i := 0; i < 3; i++ {
		alloc[crypto.PubkeyToAddress(DevKey(i).PublicKey)] = types.Account{Balance: DevCoin}
	}
	sim := simulated.NewBackend(alloc, func(nc *node.Config, ec *ethconfig.Config) {
		ec.Genesis.Config = DevChainParams()
		nc.AllowUnprotectedTxs = unprotected
		delete(ec.Genesis.Alloc, DeployProxy) // go-ethereum puts it in every dev genesis (EIP-7997)
	})
	t.Cleanup(func() { sim.Close() })
	return mining{sim.Client(), sim}
}

var discard = slog.New(slog.DiscardHandler)

func quiet() DeployConfig {
	return DeployConfig{Poll: time.Millisecond, Logger: discard}
}

// Deploy installs the proxy where it is missing, then the token and the
// escrow at their CREATE2 addresses; a second run finds them all and
// sends nothing; another challenge period is another escrow.
func TestDeployIsDeterministicAndIdempotent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := newBareSim(t, true)
	key := DevKey(0)
	from := crypto.PubkeyToAddress(key.PublicKey)
	cfg := quiet()
	cfg.ChallengePeriod, cfg.TestToken = time.Hour, true

	d, err := Deploy(ctx, b, key, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.Proxy.Found || d.Proxy.Tx == "" || d.Escrow.Found || d.Token.Found {
		t.Fatalf("first deploy found something on a bare chain: %+v", d)
	}
	if code, _ := b.CodeAt(ctx, DeployProxy, nil); !bytes.Equal(code, deployProxyCode) {
		t.Fatalf("proxy code after its deployment transaction: %x", code)
	}
	if d.Escrow.Address != EscrowAddress(time.Hour) || d.Token.Address != TestTokenAddress() || d.ChallengePeriodS != 3600 {
		t.Fatalf("deployed %+v, want escrow %s token %s", d, EscrowAddress(time.Hour), TestTokenAddress())
	}
	if d.TokenSymbol != "tUSD" || d.TokenDecimals != 6 || d.ChainID != 1337 || d.Network != "dev" {
		t.Fatalf("deployment %+v", d)
	}
	nonce, _ := b.PendingNonceAt(ctx, from)

	again, err := Deploy(ctx, b, key, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Proxy.Found || !again.Escrow.Found || !again.Token.Found || again.Escrow.Tx != "" || again.Escrow.Address != d.Escrow.Address || again.Token.Address != d.Token.Address {
		t.Fatalf("second deploy: %+v", again)
	}
	if n, _ := b.PendingNonceAt(ctx, from); n != nonce {
		t.Fatalf("the second deploy sent %d transactions", n-nonce)
	}

	cfg.ChallengePeriod, cfg.TestToken = 2*time.Hour, false
	other, err := Deploy(ctx, b, key, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if other.Escrow.Found || other.Escrow.Address == d.Escrow.Address || other.Token != nil {
		t.Fatalf("another challenge period: %+v", other)
	}

	// A client on the deployed escrow reads its challenge period.
	c, err := NewClient(ctx, b, &Wallet{addr: from, key: key}, Config{Escrow: other.Escrow.Address})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.ChallengePeriod(ctx); err != nil || p != 2*time.Hour {
		t.Fatalf("challenge period %s, %v", p, err)
	}
	if _, err := Deploy(ctx, b, key, DeployConfig{ChallengePeriod: 1500 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "whole seconds") {
		t.Fatalf("a challenge period of 1.5s: %v", err)
	}
}

// A node that refuses unprotected transactions over RPC (geth's default)
// gets an error that says what to do, with the deployer funded already.
func TestDeployProxyRefusedSaysWhatToDo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := newBareSim(t, false)
	// A poor key is told whose balance is short.
	_, err := Deploy(ctx, b, DevKey(7), quiet())
	if err == nil || !strings.Contains(err.Error(), "holds 0 ETH") {
		t.Fatalf("unfunded key: %v", err)
	}
	_, err = Deploy(ctx, b, DevKey(0), quiet())
	if !errors.Is(err, ErrUnprotectedRefused) || !strings.Contains(err.Error(), "--rpc.allow-unprotected-txs") {
		t.Fatalf("err = %v", err)
	}
	if bal, _ := b.BalanceAt(ctx, deployProxySigner, nil); bal.Cmp(big.NewInt(1e16)) != 0 {
		t.Fatalf("one-time deployer holds %s wei, want 0.01 ETH", bal)
	}
}

// CheckChain names what is wrong: the chain ID, an address without code,
// a contract that is not our escrow, a token without code.
func TestCheckChain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := newBareSim(t, true)
	cfg := quiet()
	cfg.TestToken = true
	d, err := Deploy(ctx, b, DevKey(0), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.ChallengePeriodS != uint64(DevChallengePeriod/time.Second) || d.Escrow.Address != Networks()[0].Escrow {
		t.Fatalf("on chain 1337 the default is the dev network's escrow: %+v", d)
	}
	esc, tok := d.Escrow.Address, d.Token.Address

	got, err := CheckChain(ctx, b, 1337, esc, tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.Escrow.ChallengePeriodS != 600 || got.TokenSymbol != "tUSD" || got.TokenDecimals != 6 || got.Network != "dev" {
		t.Fatalf("check %+v", got)
	}
	sepolia, err := LookupNetwork("Sepolia")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name        string
		chainID     uint64
		escrow, tok common.Address
		want        string
	}{
		{"wrong chain", sepolia.ChainID, esc, tok, "serves chain 1337 (dev), not 11155111 (sepolia)"},
		{"no code", 0, common.HexToAddress("0x1234"), tok, "no contract at the escrow address 0x0000000000000000000000000000000000001234 on chain 1337"},
		{"not an escrow", 0, tok, tok, "is not an AIxBlock escrow"},
		{"no token", 0, esc, common.HexToAddress("0x99"), "token 0x0000000000000000000000000000000000000099 on chain 1337 (dev): no contract"},
	} {
		_, err := CheckChain(ctx, b, c.chainID, c.escrow, c.tok)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := CheckChain(ctx, b, 0, common.HexToAddress("0x1234"), tok); !errors.Is(err, ErrNoEscrow) {
		t.Errorf("no code: %v is not ErrNoEscrow", err)
	}
	if _, err := LookupNetwork("kovan"); err == nil || !strings.Contains(err.Error(), "sepolia") {
		t.Errorf("unknown network: %v", err)
	}

	// Fund sends ETH and mints test tokens.
	to := common.HexToAddress("0xfeed")
	fs, err := Fund(ctx, b, DevKey(1), FundConfig{To: []common.Address{to}, ETH: big.NewInt(5), Token: tok, Tokens: big.NewInt(7), Poll: time.Millisecond, Logger: discard})
	if err != nil || len(fs) != 2 {
		t.Fatalf("fund: %+v, %v", fs, err)
	}
	if bal, _ := b.BalanceAt(ctx, to, nil); bal.Int64() != 5 {
		t.Fatalf("funded ETH %s", bal)
	}
	c, err := NewClient(ctx, b, &Wallet{addr: to}, Config{Escrow: esc, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	if bal, _ := c.Balance(ctx, tok); bal.Int64() != 7 {
		t.Fatalf("minted %s", bal)
	}
}

// The dev chain has the proxy in its genesis, and its escrow and token at
// the deterministic addresses, where Deploy finds them.
func TestDevChainDeterministicAddresses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dc, err := StartDevChain(ctx, DevChainConfig{Accounts: 1, IdleBlock: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	dev, _ := LookupNetwork("dev")
	if dc.Info.Escrow != dev.Escrow || dc.Info.Token != dev.Token || dc.Info.Escrow != EscrowAddress(10*time.Minute) {
		t.Fatalf("dev chain escrow %s token %s, table says %s and %s", dc.Info.Escrow, dc.Info.Token, dev.Escrow, dev.Token)
	}
	d, err := Deploy(ctx, dc.Client(), DevKey(0), DeployConfig{TestToken: true, Poll: time.Millisecond, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Proxy.Found || !d.Escrow.Found || !d.Token.Found || d.Escrow.Address != dc.Info.Escrow {
		t.Fatalf("deploy on the dev chain: %+v", d)
	}
}
