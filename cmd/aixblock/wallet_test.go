package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aixblock/aixblock/p2p/p2ptest"
)

type devchainInfo struct {
	RPCURL   string `json:"rpc_url"`
	ChainID  uint64 `json:"chain_id"`
	Escrow   string `json:"escrow"`
	Token    string `json:"token"`
	Accounts []struct {
		Address    string `json:"address"`
		PrivateKey string `json:"private_key"`
	} `json:"accounts"`
}

// startDevchain runs `aixblock devchain` and reads the file it writes.
func startDevchain(t testing.TB, extra ...string) (devchainInfo, string) {
	t.Helper()
	return startDevchainIn(t, "", "127.0.0.1", extra...)
}

// devchainProcs: each started dev chain's process, by its info file, for
// tests that take its RPC away (an outage).
var devchainProcs sync.Map

// startDevchainIn starts the dev chain inside network namespace ns (none:
// this one), serving on ip.
func startDevchainIn(t testing.TB, ns, ip string, extra ...string) (devchainInfo, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "devchain.json")
	args := append([]string{"devchain", "--http", ip + ":0", "--accounts", "6", "--out", out, "--json"}, extra...)
	cmd := exec.Command(bin, args...)
	if ns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	devchainProcs.Store(out, cmd.Process)
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
	})
	var b []byte
	p2ptest.WaitFor(t, 90*time.Second, func() bool { // a busy machine starts it slowly
		select {
		case err := <-done:
			t.Fatalf("devchain exited: %v\n%s", err, &stderr)
		default:
		}
		var err error
		b, err = os.ReadFile(out)
		return err == nil && len(b) > 0 && bytes.HasSuffix(b, []byte("\n"))
	}, "devchain not ready\n%s", &stderr)
	var info devchainInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	return info, out
}

// rpc calls a JSON-RPC method the way any Ethereum tool would.
func rpc(t testing.TB, url, method string, params ...any) string {
	t.Helper()
	if params == nil {
		params = []any{}
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Result string `json:"result"`
		Error  *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Error != nil {
		t.Fatalf("%s: %v %+v", method, err, out.Error)
	}
	return out.Result
}

type walletBalance struct {
	Address           string `json:"address"`
	ChainID           uint64 `json:"chain_id"`
	TokenSymbol       string `json:"token_symbol"`
	TokenBalance      string `json:"token_balance"`
	TokenBalanceUnits string `json:"token_balance_units"`
}

type channelsOut struct {
	Channels []struct {
		Role      string `json:"role"`
		Payer     string `json:"payer"`
		Payee     string `json:"payee"`
		Deposited string `json:"deposited"`
		Redeemed  string `json:"redeemed"`
		Vouched   string `json:"vouched"`
		ClosesAt  uint64 `json:"closes_at"`
	} `json:"channels"`
}

// The dev chain from the binary, two daemons on it with imported dev keys:
// one deposits and signs a voucher, the other redeems it.
func TestDevchainDepositAndRedeem(t *testing.T) {
	info, file := startDevchain(t)
	if got := rpc(t, info.RPCURL, "eth_chainId"); got != "0x539" {
		t.Fatalf("eth_chainId = %s, want 0x539 (1337)", got)
	}
	if code := rpc(t, info.RPCURL, "eth_getCode", info.Escrow, "latest"); len(code) < 100 {
		t.Fatalf("escrow has no code: %s", code)
	}
	repos := make([]string, 2)
	for i := range repos {
		key := filepath.Join(t.TempDir(), "key")
		os.WriteFile(key, []byte(info.Accounts[i+1].PrivateKey+"\n"), 0o600)
		repos[i] = filepath.Join(t.TempDir(), "repo")
		mustRun(t, repos[i], "init", "--network", "wallettest", "--devchain", file, "--wallet-key", key)
		if addr := strings.TrimSpace(mustRun(t, repos[i], "wallet", "address")); !strings.EqualFold(addr, info.Accounts[i+1].Address) {
			t.Fatalf("wallet address %s, want %s", addr, info.Accounts[i+1].Address)
		}
		startDaemon(t, repos[i])
	}
	payer, payee := repos[0], repos[1]
	payeeAddr := info.Accounts[2].Address

	var bal walletBalance
	runJSON(t, payee, &bal, "wallet", "balance")
	if bal.ChainID != 1337 || bal.TokenSymbol != "tUSD" || bal.TokenBalanceUnits != "1000000" {
		t.Fatalf("payee balance %+v", bal)
	}
	var tx struct {
		Tx      string `json:"tx"`
		GasUsed uint64 `json:"gas_used"`
	}
	runJSON(t, payer, &tx, "wallet", "deposit", payeeAddr, "10")
	if tx.Tx == "" || tx.GasUsed == 0 {
		t.Fatalf("deposit %+v", tx)
	}
	vfile := filepath.Join(t.TempDir(), "voucher.json")
	mustRun(t, payer, "wallet", "voucher", payeeAddr, "2.5", "-o", vfile)
	var redeemed struct {
		Paid string `json:"paid"`
	}
	runJSON(t, payee, &redeemed, "wallet", "redeem", vfile)
	if redeemed.Paid != "2500000" {
		t.Fatalf("paid %s, want 2500000 base units", redeemed.Paid)
	}
	runJSON(t, payee, &bal, "wallet", "balance")
	if bal.TokenBalanceUnits != "1000002.5" {
		t.Fatalf("payee now holds %s tUSD, want 1000002.5", bal.TokenBalanceUnits)
	}
	// Redeeming the same voucher again pays nothing.
	runJSON(t, payee, &redeemed, "wallet", "redeem", vfile)
	if redeemed.Paid != "0" {
		t.Fatalf("a replay paid %s", redeemed.Paid)
	}
	for _, side := range []struct {
		repo, role string
	}{{payer, "payer"}, {payee, "payee"}} {
		var chs channelsOut
		runJSON(t, side.repo, &chs, "wallet", "channels")
		if len(chs.Channels) != 1 {
			t.Fatalf("%s sees %d channels", side.role, len(chs.Channels))
		}
		c := chs.Channels[0]
		if c.Role != side.role || c.Deposited != "10000000" || c.Redeemed != "2500000" || c.Vouched != "2500000" {
			t.Fatalf("%s's view of the channel: %+v", side.role, c)
		}
	}

	// Bad input: clear errors that name the problem.
	tampered := filepath.Join(t.TempDir(), "tampered.json")
	b, _ := os.ReadFile(vfile)
	os.WriteFile(tampered, bytes.Replace(b, []byte(`"2500000"`), []byte(`"3500000"`), 1), 0o600)
	for _, tc := range []struct {
		repo string
		args []string
		want string
	}{
		{payer, []string{"wallet", "deposit", "0x12", "1"}, `payee: "0x12" is not an address`},
		{payer, []string{"wallet", "deposit", payeeAddr, "1.0000001"}, "more than 6 decimal places"},
		{payer, []string{"wallet", "deposit", payeeAddr, "5000000"}, "insufficient funds"},
		{payer, []string{"wallet", "deposit", payeeAddr, "1", "--token", "gold"}, `token "gold": want native or an address`},
		{payer, []string{"wallet", "voucher", payeeAddr, "11"}, "exceeds the channel's deposit"},
		{payee, []string{"wallet", "redeem", tampered}, "not signed by its payer"},
		{payer, []string{"wallet", "redeem", vfile}, "not this wallet"},
		{payer, []string{"wallet", "withdraw", payeeAddr}, "NotClosing"},
	} {
		r := run(t, tc.repo, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("aixblock %v: exit %d, stderr %q; want an error containing %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	mustRun(t, payer, "wallet", "close", payeeAddr)
	if r := run(t, payer, "wallet", "withdraw", payeeAddr); r.code == 0 || !strings.Contains(r.stderr, "ChallengePeriod") {
		t.Fatalf("withdraw during the challenge period: %+v", r)
	}
}

// A repo with no chain configured gets an embedded dev chain with its
// wallet funded; a repo for a real chain needs a passphrase.
func TestEmbeddedChainAndPassphrase(t *testing.T) {
	repo := initRepo(t, "wallettest")
	startDaemon(t, repo)
	var bal walletBalance
	runJSON(t, repo, &bal, "wallet", "balance")
	if bal.ChainID != 1337 || bal.TokenBalanceUnits != "1000000" {
		t.Fatalf("embedded chain balance %+v", bal)
	}
	var id struct {
		Wallet string `json:"wallet"`
	}
	runJSON(t, repo, &id, "id")
	if !strings.EqualFold(id.Wallet, bal.Address) {
		t.Fatalf("id shows wallet %q, balance %q", id.Wallet, bal.Address)
	}

	other := filepath.Join(t.TempDir(), "repo")
	args := []string{"init", "--chain-rpc", "http://127.0.0.1:1", "--escrow", "0x33AB224A224Cd09bBA4761260478F8C20C1582e1", "--token", "native"}
	r := run(t, other, args...)
	if r.code == 0 || !strings.Contains(r.stderr, "needs a passphrase") {
		t.Fatalf("init for a real chain without a passphrase: %+v", r)
	}
	if _, err := os.Stat(other); err == nil {
		entries, _ := os.ReadDir(other)
		if len(entries) != 0 {
			t.Fatalf("a failed init left %d files", len(entries))
		}
	}
	r = run(t, other, "init", "--chain-rpc", "http://127.0.0.1:1", "--escrow", "0x12", "--token", "native")
	if r.code == 0 || !strings.Contains(r.stderr, "chain.escrow") {
		t.Fatalf("bad escrow address: %+v", r)
	}
}
