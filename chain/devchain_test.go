package chain

import (
	"context"
	"math/big"
	"path/filepath"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/core/types"
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

// A dev chain that closes while transactions still arrive closes cleanly:
// geth seals a block for each arrival on a goroutine of its own, and a
// seal that ran into a closed chain panicked the whole test binary, and
// a close under traffic hung for up to a minute.
func TestDevChainClosesUnderTraffic(t *testing.T) {
	for round := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		dc, err := StartDevChain(ctx, DevChainConfig{Accounts: 2})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		rpc := ethclient.NewClient(dc.stack.Attach())
		sent := make(chan int, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			sent <- spam(ctx, rpc, dc.Info.ChainID)
		}()
		// Close once the spammer is under way: a few blocks sealed.
		start, err := rpc.BlockNumber(ctx)
		if err != nil {
			t.Fatal(err)
		}
		waitBlocks(t, ctx, rpc, start+3)
		closed := make(chan error, 1)
		go func() { closed <- dc.Close() }()
		// A hang check, not a speed check: a clean close takes under a
		// second here, and without quiesce it hung for 20 to 60 s.
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("round %d: close: %v", round, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("round %d: close still waiting after 15 s with transactions arriving", round)
		}
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatalf("round %d: a transaction sent as the chain closed still hangs after 15 s", round)
		}
		rpc.Close()
		cancel()
		if n := <-sent; n < 3 {
			t.Fatalf("round %d: only %d transactions went in before close", round, n)
		}
	}
}

// spam sends zero-value transactions from dev account 1 until one fails
// (the chain closed), and says how many went in.
func spam(ctx context.Context, rpc *ethclient.Client, chainID uint64) int {
	key := DevKey(1)
	from := crypto.PubkeyToAddress(key.PublicKey)
	signer := types.LatestSignerForChainID(new(big.Int).SetUint64(chainID))
	first, err := rpc.PendingNonceAt(ctx, from)
	if err != nil {
		return 0
	}
	for nonce := first; ; nonce++ {
		tx, err := types.SignTx(types.NewTx(&types.DynamicFeeTx{ChainID: new(big.Int).SetUint64(chainID), Nonce: nonce,
			GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(100e9), Gas: 21000, To: &from, Value: new(big.Int)}), signer, key)
		if err != nil {
			return int(nonce - first)
		}
		if err := rpc.SendTransaction(ctx, tx); err != nil {
			return int(nonce - first)
		}
	}
}

// waitBlocks waits until the chain's head is at least block n.
func waitBlocks(t *testing.T, ctx context.Context, rpc *ethclient.Client, n uint64) {
	t.Helper()
	for {
		h, err := rpc.BlockNumber(ctx)
		if err == nil && h >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("head %d, want %d: %v", h, n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
