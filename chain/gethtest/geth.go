// Package gethtest runs a real geth, built from the go-ethereum module that
// go.mod pins, for tests of the money path against a real Ethereum client:
// a dev chain with a chosen block period and eth_getLogs range cap, the
// escrow and test token deployed where the embedded dev chain has them,
// funded dev accounts, and Stop/Restart for RPC outages.
//
//	g := gethtest.Start(t, gethtest.Options{Period: time.Second})
//	c := g.NewClient(t, g.Wallet(t, 1), chain.Config{})
//
// geth is built once per machine and version (make geth, or the first test
// that needs it; see Binary).
package gethtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/params"
)

// DevKey is geth's developer account key (cmd/utils.DeveloperKey): the
// account geth --dev unlocks and funds, and the fee recipient.
var DevKey = func() *ecdsa.PrivateKey {
	k, err := crypto.HexToECDSA("b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291")
	if err != nil {
		panic(err)
	}
	return k
}()

// Options configure a geth.
type Options struct {
	// Period is the block period, in whole seconds (--dev.period); zero
	// means 1 s, negative a block as soon as a transaction arrives.
	Period time.Duration
	// RangeLimit caps the blocks of one eth_getLogs request
	// (--rpc.rangelimit: to-from may be at most RangeLimit), as hosted
	// RPCs do; zero means no cap.
	RangeLimit uint64
	// GethGenesis starts from geth --dev's own genesis, whose forks
	// include ones not on mainnet yet (other gas costs); false means a
	// genesis with mainnet's rules (chain.DevChainParams, what
	// chain/testdata/gas.json is measured under), written with geth init.
	GethGenesis bool
	// Accounts is how many dev accounts (chain.DevKey(i)) get chain.DevCoin
	// and chain.DevToken; zero means 4. Account 0 deploys the contracts and
	// mints tokens: a test that sends from it races with Mint.
	Accounts int
	// Fund are further addresses funded the same way.
	Fund []common.Address
	// NoMint gives the accounts coins but no tokens (Mint gives them).
	NoMint bool
	// ChallengePeriod of the escrow, whole seconds; zero means 10 minutes.
	ChallengePeriod time.Duration
	// NoDeploy leaves the chain without the token and the escrow (and the
	// accounts without tokens).
	NoDeploy bool
	// Args are further geth flags.
	Args []string
}

// Geth is a geth --dev process with its own data directory and HTTP
// JSON-RPC port on loopback. Info says where the contracts are and which
// accounts hold coins and tokens, as the embedded dev chain's does.
type Geth struct {
	Info    chain.DevChainInfo
	DataDir string
	// LogFile receives geth's output (all of it, restarts appended).
	LogFile string

	t      testing.TB
	bin    string
	args   []string
	client *ethclient.Client

	mu   sync.Mutex // the process and funding
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start builds or finds geth (Binary), starts it in dev mode on a free
// loopback port, funds the accounts and deploys the contracts. The process
// is stopped and waited for when the test ends (its log tail is written to
// the test's log if the test failed).
func Start(t testing.TB, o Options) *Geth {
	t.Helper()
	bin := Binary(t)
	if o.Accounts == 0 {
		o.Accounts = 4
	}
	if o.ChallengePeriod == 0 {
		o.ChallengePeriod = 10 * time.Minute
	}
	if o.ChallengePeriod < time.Second {
		t.Fatalf("gethtest: challenge period %s: want at least 1s", o.ChallengePeriod)
	}
	period := uint64(1)
	switch {
	case o.Period < 0:
		period = 0
	case o.Period > 0:
		period = uint64(o.Period / time.Second)
		if period == 0 || o.Period%time.Second != 0 {
			t.Fatalf("gethtest: period %s: want whole seconds", o.Period)
		}
	}
	dir := t.TempDir()
	g := &Geth{t: t, bin: bin, DataDir: filepath.Join(dir, "data"), LogFile: filepath.Join(dir, "geth.log")}
	g.Info.ChallengePeriodS = uint64(o.ChallengePeriod / time.Second)
	g.Info.Funded = o.Fund
	var fund []common.Address
	for i := 0; i < o.Accounts; i++ {
		k := chain.DevKey(i)
		a := crypto.PubkeyToAddress(k.PublicKey)
		g.Info.Accounts = append(g.Info.Accounts, chain.DevAccount{Address: a, PrivateKey: hex.EncodeToString(crypto.FromECDSA(k))})
		fund = append(fund, a)
	}
	fund = append(fund, o.Fund...)
	t.Cleanup(g.cleanup)

	if !o.GethGenesis {
		if err := g.init(fund); err != nil {
			t.Fatalf("gethtest: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The port is free when picked; another process may take it before
	// geth binds it, so a failed start tries another.
	var err error
	for try := 0; ; try++ {
		port, perr := freePort()
		if perr != nil {
			t.Fatalf("gethtest: %v", perr)
		}
		g.setArgs(port, period, o)
		if err = g.start(ctx); err == nil || try == 2 {
			break
		}
	}
	if err != nil {
		t.Fatalf("gethtest: %v", err)
	}
	if g.client, err = ethclient.DialContext(ctx, g.Info.RPCURL); err != nil {
		t.Fatalf("gethtest: %v", err)
	}
	id, err := g.client.ChainID(ctx)
	if err != nil {
		t.Fatalf("gethtest: chain id: %v", err)
	}
	g.Info.ChainID = id.Uint64()
	if o.GethGenesis {
		// geth's genesis funds only its developer account.
		if err := g.sendCoins(ctx, fund); err != nil {
			t.Fatalf("gethtest: %v", err)
		}
	}
	if !o.NoDeploy {
		mint := fund
		if o.NoMint {
			mint = nil
		}
		if g.Info, err = chain.DeployDev(ctx, g.client, g.Info, mint); err != nil {
			t.Fatalf("gethtest: %v", err)
		}
	}
	return g
}

// setArgs sets geth's command line for the HTTP port.
func (g *Geth) setArgs(port int, period uint64, o Options) {
	g.Info.RPCURL = "http://127.0.0.1:" + strconv.Itoa(port)
	g.args = []string{
		"--dev", "--dev.period", strconv.FormatUint(period, 10),
		"--datadir", g.DataDir,
		"--http", "--http.addr", "127.0.0.1", "--http.port", strconv.Itoa(port),
		"--http.api", "eth,net,web3,txpool,debug,dev",
		"--nodiscover", "--maxpeers", "0", "--port", "0", "--nat", "none",
		"--ipcdisable", "--authrpc.addr", "127.0.0.1", "--authrpc.port", "0",
		"--cache", "128",
	}
	if o.RangeLimit > 0 {
		g.args = append(g.args, "--rpc.rangelimit", strconv.FormatUint(o.RangeLimit, 10))
	}
	g.args = append(g.args, o.Args...)
}

// init writes a genesis with mainnet's rules into the data directory, with
// the addresses and geth's developer account funded.
func (g *Geth) init(fund []common.Address) error {
	alloc := core.SystemContractAllocs()
	for _, a := range fund {
		alloc[a] = types.Account{Balance: chain.DevCoin}
	}
	alloc[crypto.PubkeyToAddress(DevKey.PublicKey)] = types.Account{Balance: new(big.Int).Mul(chain.DevCoin, big.NewInt(1000))}
	gen := core.Genesis{
		Config:     chain.DevChainParams(),
		GasLimit:   30_000_000,
		BaseFee:    big.NewInt(params.InitialBaseFee),
		Difficulty: big.NewInt(0), // geth --dev wants a chain merged at genesis
		Alloc:      alloc,
	}
	b, err := json.Marshal(&gen)
	if err != nil {
		return err
	}
	file := filepath.Join(filepath.Dir(g.DataDir), "genesis.json")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		return err
	}
	cmd := exec.Command(g.bin, "init", "--datadir", g.DataDir, file)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("geth init: %w\n%s", err, tail(out, 40))
	}
	return nil
}

// sendCoins sends chain.DevCoin to each address from geth's developer
// account.
func (g *Geth) sendCoins(ctx context.Context, to []common.Address) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	from := crypto.PubkeyToAddress(DevKey.PublicKey)
	nonce, err := g.client.PendingNonceAt(ctx, from)
	if err != nil {
		return fmt.Errorf("fund: %w", err)
	}
	tip, err := g.client.SuggestGasTipCap(ctx)
	if err != nil {
		return fmt.Errorf("fund: %w", err)
	}
	head, err := g.client.HeaderByNumber(ctx, nil)
	if err != nil {
		return fmt.Errorf("fund: %w", err)
	}
	feeCap := new(big.Int).Add(new(big.Int).Mul(head.BaseFee, big.NewInt(2)), tip)
	signer := types.LatestSignerForChainID(new(big.Int).SetUint64(g.Info.ChainID))
	var last common.Hash
	for _, a := range to {
		tx, err := types.SignNewTx(DevKey, signer, &types.DynamicFeeTx{
			ChainID: new(big.Int).SetUint64(g.Info.ChainID), Nonce: nonce, GasTipCap: tip, GasFeeCap: feeCap,
			Gas: 21000, To: &a, Value: chain.DevCoin,
		})
		if err != nil {
			return fmt.Errorf("fund: %w", err)
		}
		if err := g.client.SendTransaction(ctx, tx); err != nil {
			return fmt.Errorf("fund %s: %w", a, err)
		}
		nonce++
		last = tx.Hash()
	}
	if last == (common.Hash{}) {
		return nil
	}
	return g.waitMined(ctx, last)
}

// Fund sends chain.DevCoin from geth's developer account to each address.
func (g *Geth) Fund(ctx context.Context, addrs ...common.Address) error {
	return g.sendCoins(ctx, addrs)
}

// Mint mints chain.DevToken of the test token for each address that holds
// none (from dev account 0, as the embedded dev chain does).
func (g *Geth) Mint(ctx context.Context, addrs ...common.Address) error {
	if g.Info.Escrow == (common.Address{}) {
		return errors.New("mint: no contracts deployed (Options.NoDeploy)")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	_, err := chain.DeployDev(ctx, g.client, g.Info, addrs)
	return err
}

func (g *Geth) waitMined(ctx context.Context, h common.Hash) error {
	for {
		r, err := g.client.TransactionReceipt(ctx, h)
		if err == nil {
			if r.Status != types.ReceiptStatusSuccessful {
				return fmt.Errorf("transaction %s reverted", h)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("transaction %s: %w", h, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// URL is the HTTP JSON-RPC endpoint (the same across restarts).
func (g *Geth) URL() string { return g.Info.RPCURL }

// Client is a JSON-RPC client of the node, closed when the test ends. Over
// HTTP, it works again once a stopped node is restarted.
func (g *Geth) Client() *ethclient.Client { return g.client }

// Wallet is dev account i (chain.DevKey(i)) in a keystore of its own.
func (g *Geth) Wallet(t testing.TB, i int) *chain.Wallet {
	t.Helper()
	w, err := chain.ImportWallet(filepath.Join(t.TempDir(), "keystore"), "", chain.DevKey(i))
	if err != nil {
		t.Fatalf("gethtest: wallet %d: %v", i, err)
	}
	return w
}

// NewClient is a chain.Client of w on this node; cfg's zero Escrow and
// Token are this chain's.
func (g *Geth) NewClient(t testing.TB, w *chain.Wallet, cfg chain.Config) *chain.Client {
	t.Helper()
	if cfg.Escrow == (common.Address{}) {
		cfg.Escrow = g.Info.Escrow
	}
	if cfg.Token == (common.Address{}) {
		cfg.Token = g.Info.Token
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := chain.NewClient(ctx, g.client, w, cfg)
	if err != nil {
		t.Fatalf("gethtest: client: %v", err)
	}
	return c
}

// WaitBlock waits until the head is at least block n.
func (g *Geth) WaitBlock(ctx context.Context, n uint64) error {
	for {
		head, err := g.client.BlockNumber(ctx)
		if err == nil && head >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for block %d (head %d, %v): %w", n, head, err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops geth (SIGINT, as an operator would; SIGKILL if it has not
// exited in 30 s) and waits for it. The RPC refuses connections until
// Restart. Stopping a stopped node does nothing.
func (g *Geth) Stop() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stop()
}

// Restart starts a stopped geth again on the same data directory and port
// (Stop first if it runs) and waits until the RPC answers.
func (g *Geth) Restart() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.stop(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return g.start(ctx)
}

// Running tells whether the process runs.
func (g *Geth) Running() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cmd != nil
}

// start runs geth and waits until its RPC answers; with g.mu held or
// before g is shared.
func (g *Geth) start(ctx context.Context) error {
	logf, err := os.OpenFile(g.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== %s %v\n", time.Now().Format(time.RFC3339Nano), g.args)
	cmd := exec.Command(g.bin, g.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := spawn(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("start geth: %w", err)
	}
	logf.Close() // the child has its own copy
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	g.cmd, g.done = cmd, done

	// Wait for the RPC: a plain HTTP JSON-RPC request, so nothing is
	// cached across a restart.
	for {
		c, err := ethclient.DialContext(ctx, g.Info.RPCURL)
		if err == nil {
			_, err = c.BlockNumber(ctx)
			c.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-done:
			g.cmd, g.done = nil, nil
			return fmt.Errorf("geth exited at start (%s):\n%s", cmd.ProcessState, g.logTail(30))
		case <-ctx.Done():
			g.stop()
			return fmt.Errorf("geth's RPC at %s did not answer: %w\n%s", g.Info.RPCURL, ctx.Err(), g.logTail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop, with g.mu held.
func (g *Geth) stop() error {
	if g.cmd == nil {
		return nil
	}
	cmd, done := g.cmd, g.done
	g.cmd, g.done = nil, nil
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("geth did not stop on SIGINT in 30 s; killed")
	}
	return nil
}

func (g *Geth) cleanup() {
	if g.client != nil {
		g.client.Close()
	}
	g.mu.Lock()
	err := g.stop()
	g.mu.Unlock()
	if err != nil {
		g.t.Errorf("gethtest: %v", err)
	}
	if g.t.Failed() {
		g.t.Logf("gethtest: the end of %s:\n%s", g.LogFile, g.logTail(40))
	}
}

func (g *Geth) logTail(lines int) string {
	b, err := os.ReadFile(g.LogFile)
	if err != nil {
		return err.Error()
	}
	return tail(b, lines)
}

func tail(b []byte, lines int) string {
	b = bytes.TrimRight(b, "\n")
	for i, n := len(b)-1, 0; i >= 0; i-- {
		if b[i] == '\n' {
			if n++; n == lines {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}

// freePort is a TCP port on loopback that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
