package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aixblock/aixblock/jobs"
)

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig("testnet")
	for name, tc := range map[string]struct {
		edit func(c *Config)
		want string // empty: valid
	}{
		"default":             {func(c *Config) {}, ""},
		"empty network":       {func(c *Config) { c.Network = "" }, ""},
		"bad network":         {func(c *Config) { c.Network = "a b" }, `network: network name "a b"`},
		"no listen":           {func(c *Config) { c.Listen = nil }, "listen: no addresses"},
		"bad listen":          {func(c *Config) { c.Listen = []string{"/tcp/x"} }, `listen: "/tcp/x" is not a multiaddr`},
		"bad announce":        {func(c *Config) { c.Announce = []string{"1.2.3.4"} }, `announce: "1.2.3.4" is not a multiaddr`},
		"bootstrap no peer":   {func(c *Config) { c.Bootstrap = []string{"/ip4/127.0.0.1/tcp/1"} }, `bootstrap: "/ip4/127.0.0.1/tcp/1"`},
		"api no port":         {func(c *Config) { c.API = "127.0.0.1" }, `api: "127.0.0.1" is not HOST:PORT`},
		"api bad port":        {func(c *Config) { c.API = "127.0.0.1:99999" }, `port "99999"`},
		"api no host":         {func(c *Config) { c.API = ":5901" }, "no host"},
		"watermarks reversed": {func(c *Config) { c.ConnLow, c.ConnHigh = 10, 5 }, "conn_low 10 / conn_high 5"},
		"prices": {func(c *Config) {
			c.Market.Prices = map[string]map[string]string{"*": {"default": "2.5", "native": "0.001"}}
		}, ""},
		"price token":         {func(c *Config) { c.Market.Prices = map[string]map[string]string{"*": {"tUSD": "2"}} }, `market.prices[*]: token "tUSD": want default, native or an address`},
		"price amount":        {func(c *Config) { c.Market.Prices = map[string]map[string]string{"cpu": {"default": "-2"}} }, `market.prices[cpu][default]: amount "-2"`},
		"redeem above":        {func(c *Config) { c.Market.RedeemAbove = "1000000" }, ""},
		"redeem above units":  {func(c *Config) { c.Market.RedeemAbove = "1.5" }, `market.redeem_above: amount "1.5": want a whole number of base units`},
		"max holdback":        {func(c *Config) { c.Market.MaxHoldback = "20%" }, ""},
		"max holdback none":   {func(c *Config) { c.Market.MaxHoldback = "0%" }, ""},
		"max holdback over":   {func(c *Config) { c.Market.MaxHoldback = "60%" }, `market.max_holdback "60%": want a share from 0%`},
		"max holdback no %":   {func(c *Config) { c.Market.MaxHoldback = "0.2" }, `market.max_holdback "0.2"`},
		"verify sample":       {func(c *Config) { c.Market.VerifySample, c.Market.VerifyHoldback = "5%", "20%" }, ""},
		"verify sample bad":   {func(c *Config) { c.Market.VerifySample = "5" }, `market.verify_sample: "5": want a share such as 5%`},
		"verify holdback bad": {func(c *Config) { c.Market.VerifySample, c.Market.VerifyHoldback = "5%", "90%" }, `market.verify_holdback: "90%"`},
		"holdback alone":      {func(c *Config) { c.Market.VerifyHoldback = "20%" }, "market.verify_holdback: holds back pay of the jobs market.verify_sample checks"},
		"chain token": {func(c *Config) {
			c.Chain = ChainConfig{RPC: "http://127.0.0.1:8545", Escrow: "0x33AB224A224Cd09bBA4761260478F8C20C1582e1", Token: "tUSD"}
		}, `chain.token: token "tUSD"`},
	} {
		t.Run(name, func(t *testing.T) {
			c := good
			c.Listen = append([]string(nil), good.Listen...)
			tc.edit(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestInitOpenLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := Init(dir, DefaultConfig("x"), WalletOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, DefaultConfig("x"), WalletOptions{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Init: %v", err)
	}
	r2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r2.PeerID != r.PeerID || r2.Token != r.Token || r2.Config.Network != "x" {
		t.Fatalf("reopened repo differs: %v/%v", r2.PeerID, r.PeerID)
	}
	if err := r.Lock(); err != nil {
		t.Fatal(err)
	}
	if err := r2.Lock(); err == nil || !strings.Contains(err.Error(), "in use by another daemon (pid") {
		t.Fatalf("second lock: %v", err)
	}
	if err := r.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := r2.Lock(); err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	r2.Unlock()

	// A short token is refused rather than used.
	if err := os.WriteFile(filepath.Join(dir, TokenFile), []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Fatalf("Open with short token: %v", err)
	}
}

// The requester-wide spot check applies to market batch jobs on one
// node whose spec says nothing of verify, and to nothing else.
func TestDefaultVerify(t *testing.T) {
	m := MarketConfig{VerifySample: "5%", VerifyHoldback: "20%"}
	own := &jobs.Verify{Replicas: 2}
	for name, tc := range map[string]struct {
		spec jobs.Spec
		want bool
	}{
		"market batch":   {jobs.Spec{Image: "x", MaxPrice: "1"}, true},
		"local":          {jobs.Spec{Image: "x"}, false},
		"its own verify": {jobs.Spec{Image: "x", MaxPrice: "1", Verify: own}, false},
		"distributed":    {jobs.Spec{Image: "x", MaxPrice: "1", Distributed: &jobs.Distributed{Nodes: 2}}, false},
		"service":        {jobs.Spec{Image: "x", MaxPrice: "1", Kind: jobs.KindService}, false},
	} {
		v := m.DefaultVerify(&tc.spec)
		if (v != nil) != tc.want || (v != nil && (v.Sample != "5%" || v.Holdback != "20%")) {
			t.Errorf("%s: %+v, want a default %v", name, v, tc.want)
		}
	}
	if v := (MarketConfig{}).DefaultVerify(&jobs.Spec{Image: "x", MaxPrice: "1"}); v != nil {
		t.Errorf("no verify_sample set: %+v", v)
	}
}
