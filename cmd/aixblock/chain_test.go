package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/node"
)

type deployOut struct {
	ChainID  uint64 `json:"chain_id"`
	Network  string `json:"network"`
	Deployer string `json:"deployer"`
	Proxy    struct {
		Address string `json:"address"`
		Found   bool   `json:"found"`
	} `json:"proxy"`
	Escrow struct {
		Address string `json:"address"`
		Found   bool   `json:"found"`
		Tx      string `json:"tx"`
	} `json:"escrow"`
	ChallengePeriodS uint64 `json:"challenge_period_s"`
	Token            *struct {
		Address string `json:"address"`
		Found   bool   `json:"found"`
	} `json:"token"`
	TokenSymbol string `json:"token_symbol"`
	Next        string `json:"next"`
}

// An operator's session on a chain of its own (aixblock devchain, as it
// would be geth --dev): chain deploy finds the dev chain's escrow and
// token at the table's addresses; with another challenge period it
// deploys another escrow, once; init --chain checks the chain ID and the
// escrow and says what is wrong; chain fund gives a new wallet ETH and
// tokens; wallet balance shows the escrow, the token by symbol and the
// challenge period.
func TestChainDeployInitFund(t *testing.T) {
	info, _ := startDevchain(t)
	dir := t.TempDir()
	k0 := filepath.Join(dir, "k0")
	os.WriteFile(k0, []byte(info.Accounts[0].PrivateKey+"\n"), 0o600)
	c := &chainTest{t: t, info: info, dir: dir, nobody: filepath.Join(dir, "no-repo"),
		at: []string{"--chain-rpc", info.RPCURL, "--key-file", k0}}
	c.deployFindsTheDevChains()
	escrow := c.deployAnotherOnce()
	c.initChecksFirst()
	repo := c.initAndFund(escrow)
	c.balanceShows(repo, escrow)
}

// chainTest is TestChainDeployInitFund's dev chain, and the operator's
// key to it.
type chainTest struct {
	t      *testing.T
	info   devchainInfo
	dir    string
	nobody string   // a repo that is not there: chain commands need none
	at     []string // the chain's RPC URL and the operator's key file
}

// deployFindsTheDevChains: chain deploy --chain dev finds the dev chain's
// escrow and token at the table's addresses, which chain networks lists.
func (c *chainTest) deployFindsTheDevChains() {
	t, info := c.t, c.info
	var d deployOut
	runJSON(t, c.nobody, &d, append([]string{"chain", "deploy", "--chain", "dev"}, c.at...)...)
	if !d.Proxy.Found || !d.Escrow.Found || d.Token == nil || !d.Token.Found || !strings.EqualFold(d.Escrow.Address, info.Escrow) ||
		!strings.EqualFold(d.Token.Address, info.Token) || d.ChallengePeriodS != 600 || d.Network != "dev" || d.TokenSymbol != "tUSD" {
		t.Fatalf("deploy on the dev chain: %+v (chain %+v)", d, info)
	}
	var nets []struct {
		Name   string `json:"name"`
		Escrow string `json:"escrow"`
	}
	runJSON(t, c.nobody, &nets, "chain", "networks")
	if len(nets) < 5 || nets[0].Name != "dev" || !strings.EqualFold(nets[0].Escrow, info.Escrow) {
		t.Fatalf("networks %+v", nets)
	}
}

// deployAnotherOnce: with a 1h challenge period, chain deploy deploys
// another escrow, once, and says how to init a node on it. It returns
// that escrow's address.
func (c *chainTest) deployAnotherOnce() string {
	t, info := c.t, c.info
	var h1, again deployOut
	runJSON(t, c.nobody, &h1, append([]string{"chain", "deploy", "--challenge", "1h"}, c.at...)...)
	runJSON(t, c.nobody, &again, append([]string{"chain", "deploy", "--challenge", "1h"}, c.at...)...)
	if h1.Escrow.Found || h1.Escrow.Tx == "" || strings.EqualFold(h1.Escrow.Address, info.Escrow) || h1.ChallengePeriodS != 3600 {
		t.Fatalf("deploy with a 1h challenge period: %+v", h1)
	}
	if !again.Escrow.Found || again.Escrow.Tx != "" || again.Escrow.Address != h1.Escrow.Address {
		t.Fatalf("second deploy with 1h: %+v", again)
	}
	if want := "aixblock init --chain dev --chain-rpc " + info.RPCURL + " --escrow "; !strings.HasPrefix(h1.Next, want) || !strings.EqualFold(strings.TrimPrefix(h1.Next, want), h1.Escrow.Address) {
		t.Fatalf("next step %q does not name the escrow", h1.Next)
	}
	return h1.Escrow.Address
}

// initChecksFirst: init checks the chain before it writes anything, and
// says what is wrong.
func (c *chainTest) initChecksFirst() {
	t, info := c.t, c.info
	t.Setenv("AIXBLOCK_PASSPHRASE", "a passphrase")
	bad := filepath.Join(c.dir, "bad")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--chain", "sepolia", "--chain-rpc", info.RPCURL}, "serves chain 1337 (dev), not 11155111 (sepolia): check the RPC URL"},
		{[]string{"--chain", "dev", "--chain-rpc", info.RPCURL, "--escrow", "0x000000000000000000000000000000000000bEEF"},
			"no contract at the escrow address 0x000000000000000000000000000000000000bEEF on chain 1337 (dev): check --escrow, or deploy one with `aixblock chain deploy --chain dev"},
		{[]string{"--chain-rpc", info.RPCURL, "--escrow", info.Token, "--token", "test"}, "is not an AIxBlock escrow"},
		{[]string{"--chain", "base"}, "--chain base needs the chain's RPC URL"},
		{[]string{"--chain", "nowhere"}, `chain "nowhere": not in the built-in table`},
	} {
		r := run(t, bad, append([]string{"init"}, c.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("init %v: code %d, stderr %q; want %q", c.args, r.code, r.stderr, c.want)
		}
		if ents, _ := os.ReadDir(bad); len(ents) != 0 {
			t.Fatalf("a refused init %v left %d files", c.args, len(ents))
		}
	}
	t.Setenv("AIXBLOCK_PASSPHRASE", "")
}

// initAndFund inits a node on escrow, funded by chain fund, and returns
// its repo.
func (c *chainTest) initAndFund(escrow string) string {
	t := c.t
	repo := filepath.Join(c.dir, "repo")
	var in struct {
		Wallet  string `json:"wallet"`
		Checked struct {
			ChainID uint64 `json:"chain_id"`
			Escrow  struct {
				ChallengePeriodS uint64 `json:"challenge_period_s"`
			} `json:"escrow"`
			TokenSymbol string `json:"token_symbol"`
		} `json:"checked"`
	}
	runJSON(t, repo, &in, "init", "--network", "chaintest", "--chain", "dev", "--chain-rpc", c.info.RPCURL, "--escrow", escrow)
	if in.Checked.ChainID != 1337 || in.Checked.Escrow.ChallengePeriodS != 3600 || in.Checked.TokenSymbol != "tUSD" {
		t.Fatalf("init --chain dev: %+v", in)
	}
	var funded struct {
		Sent []struct {
			What   string `json:"what"`
			Amount string `json:"amount"`
		} `json:"sent"`
	}
	runJSON(t, c.nobody, &funded, append([]string{"chain", "fund", in.Wallet, "--eth", "2", "--tokens", "250.5"}, c.at...)...)
	if len(funded.Sent) != 2 || funded.Sent[0].Amount != "2000000000000000000" || funded.Sent[1].Amount != "250500000" {
		t.Fatalf("fund: %+v", funded)
	}
	if r := run(t, c.nobody, append([]string{"chain", "fund", in.Wallet}, c.at...)...); r.code == 0 || !strings.Contains(r.stderr, "nothing to send") {
		t.Fatalf("fund without amounts: %+v", r)
	}
	return repo
}

// balanceShows: the node's wallet balance shows the escrow, the token by
// symbol, what chain fund sent and the challenge period.
func (c *chainTest) balanceShows(repo, escrow string) {
	t := c.t
	startDaemon(t, repo)
	var bal struct {
		walletBalance
		Escrow             string `json:"escrow"`
		ChallengePeriodS   uint64 `json:"challenge_period_s"`
		NativeBalanceUnits string `json:"native_balance_units"`
	}
	runJSON(t, repo, &bal, "wallet", "balance")
	if !strings.EqualFold(bal.Escrow, escrow) || bal.ChallengePeriodS != 3600 || bal.TokenSymbol != "tUSD" ||
		bal.TokenBalanceUnits != "250.5" || bal.NativeBalanceUnits != "2" {
		t.Fatalf("wallet balance %+v", bal)
	}
	if out := mustRun(t, repo, "wallet", "balance"); !strings.Contains(out, "challenge period 1h0m0s") || !strings.Contains(out, "tUSD") {
		t.Fatalf("wallet balance says:\n%s", out)
	}
}

// init --chain NAME fills the chain section from the table, the URL from
// the flag or the environment; dev without a URL is the embedded chain.
func TestPresetChain(t *testing.T) {
	sepolia, _ := chain.LookupNetwork("sepolia")
	t.Setenv(chainRPCEnv, "https://rpc.example/v3/k")
	c, err := presetChain(sepolia, node.ChainConfig{})
	if err != nil {
		t.Fatal(err)
	}
	want := node.ChainConfig{RPC: "https://rpc.example/v3/k", Escrow: sepolia.Escrow.Hex(), Token: "0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238",
		Confirmations: 2, LogRange: 1000}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("sepolia: %+v, want %+v", c, want)
	}
	if c, _ := presetChain(sepolia, node.ChainConfig{RPC: "http://127.0.0.1:8545", Token: "native"}); c.RPC != "http://127.0.0.1:8545" || c.Token != "native" {
		t.Fatalf("flags win over the table and the environment: %+v", c)
	}
	t.Setenv(chainRPCEnv, "")
	dev, _ := chain.LookupNetwork("dev")
	if c, err := presetChain(dev, node.ChainConfig{}); err != nil || !reflect.DeepEqual(c, node.ChainConfig{}) {
		t.Fatalf("dev without a URL: %+v, %v", c, err)
	}
	if _, err := presetChain(sepolia, node.ChainConfig{}); err == nil || !strings.Contains(err.Error(), "--chain sepolia needs the chain's RPC URL") {
		t.Fatalf("sepolia without a URL: %v", err)
	}
}
