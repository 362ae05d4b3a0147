package chain

import (
	"context"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
)

// devWallet imports dev account i into a keystore of its own.
func devWallet(t *testing.T, i int) *Wallet {
	t.Helper()
	w, err := ImportWallet(filepath.Join(t.TempDir(), "keystore"), "", DevKey(i))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// The dev chain over HTTP JSON-RPC: a funded account deposits, another
// redeems, through a client that knows nothing but the URL and addresses.
func TestDevChainOverHTTP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dc, err := StartDevChain(ctx, DevChainConfig{HTTP: "127.0.0.1:0", Accounts: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	if dc.Info.RPCURL == "" || dc.Info.ChainID != 1337 || len(dc.Info.Accounts) != 3 {
		t.Fatalf("info %+v", dc.Info)
	}
	rpc, err := ethclient.DialContext(ctx, dc.Info.RPCURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rpc.Close()
	id, err := rpc.ChainID(ctx)
	if err != nil || id.Uint64() != 1337 {
		t.Fatalf("eth_chainId = %v, %v", id, err)
	}
	code, err := rpc.CodeAt(ctx, dc.Info.Escrow, nil)
	if err != nil || len(code) == 0 {
		t.Fatalf("escrow code: %d bytes, %v", len(code), err)
	}
	cfg := Config{Escrow: dc.Info.Escrow, Token: dc.Info.Token, Poll: 20 * time.Millisecond}
	payer, err := NewClient(ctx, rpc, devWallet(t, 1), cfg)
	if err != nil {
		t.Fatal(err)
	}
	payee, err := NewClient(ctx, rpc, devWallet(t, 2), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := payer.Deposit(ctx, payee.Address(), dc.Info.Token, big.NewInt(5_000_000)); err != nil {
		t.Fatal(err)
	}
	v, err := payer.SignVoucher(payee.Address(), dc.Info.Token, big.NewInt(1_250_000))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := payee.Balance(ctx, dc.Info.Token)
	if _, err := payee.Redeem(ctx, v); err != nil {
		t.Fatal(err)
	}
	after, _ := payee.Balance(ctx, dc.Info.Token)
	if got := new(big.Int).Sub(after, before); got.Cmp(big.NewInt(1_250_000)) != 0 {
		t.Fatalf("payee got %s, want 1250000", got)
	}
	// The payee's earnings; the payer earned nothing.
	red, err := payee.Redemptions(ctx)
	if err != nil || len(red) != 1 || red[0].Amount.Big().Cmp(big.NewInt(1_250_000)) != 0 || red[0].Time.IsZero() {
		t.Fatalf("payee's redemptions %+v, %v", red, err)
	}
	if red, err := payer.Redemptions(ctx); err != nil || len(red) != 0 {
		t.Fatalf("payer's redemptions %+v, %v", red, err)
	}
	if crypto.PubkeyToAddress(DevKey(1).PublicKey) != dc.Info.Accounts[1].Address {
		t.Fatal("dev account keys are not the derived ones")
	}
}

// Two dev chains are told apart by their genesis hash, though they share
// the chain ID and the contract addresses; a chain kept on disk keeps its
// genesis when it starts again.
func TestDevChainsHaveTheirOwnGenesis(t *testing.T) {
	// Three chains started one after another: minutes under -race on a
	// loaded 2-core machine.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	genesis := func(dir string) string {
		t.Helper()
		dc, err := StartDevChain(ctx, DevChainConfig{DataDir: dir, Accounts: 1, IdleBlock: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer dc.Close()
		h, err := dc.client.HeaderByNumber(ctx, big.NewInt(0))
		if err != nil {
			t.Fatal(err)
		}
		return h.Hash().Hex()
	}
	dir := filepath.Join(t.TempDir(), "kept")
	a, b := genesis(dir), genesis(filepath.Join(t.TempDir(), "other"))
	if a == b {
		t.Fatalf("two dev chains share the genesis %s", a)
	}
	if again := genesis(dir); again != a {
		t.Fatalf("the kept chain's genesis changed on restart: %s, then %s", a, again)
	}
}
