package lease

import (
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/jobs"
	"github.com/ethereum/go-ethereum/crypto"
)

// A requester with tokens and no ETH made its deal, then failed the job
// with geth's raw "insufficient funds for gas * price + value", counted
// against it. Both refusals now come at submit, before any deal, with the
// amounts and the token by its symbol.
func TestRefusedBeforeTheDeal(t *testing.T) {
	ctx := t.Context()
	dev, err := chain.StartDevChain(ctx, chain.DevChainConfig{IdleBlock: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w, err := chain.ImportWallet(filepath.Join(dir, "keystore"), "", key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := chain.NewClient(ctx, dev.Client(), w, chain.Config{Escrow: dev.Info.Escrow, Token: dev.Info.Token, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	vouchers, err := OpenVouchers(filepath.Join(dir, "vouchers.json"))
	if err != nil {
		t.Fatal(err)
	}
	m := testRequester(t, Config{Dir: dir, Wallet: w, Chain: c, Vouchers: vouchers, VoucherInterval: time.Second})
	sym, _, err := c.TokenInfo(ctx, dev.Info.Token)
	if err != nil {
		t.Fatal(err)
	}
	spec := &jobs.Spec{Image: "x", MaxPrice: "2", Resources: jobs.Resources{GPUs: 1}}
	fund := func(cfg chain.FundConfig) {
		t.Helper()
		cfg.To = append(cfg.To, w.Address())
		cfg.Token, cfg.Poll = dev.Info.Token, 10*time.Millisecond
		if _, err := chain.Fund(ctx, dev.Client(), chain.DevKey(1), cfg); err != nil {
			t.Fatal(err)
		}
	}

	err = m.checkFunds(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), "insufficient funds") || !strings.Contains(err.Error(), "holds no "+sym) {
		t.Fatalf("a wallet without tokens: %v", err)
	}
	fund(chain.FundConfig{Tokens: big.NewInt(1_000_000_000)})
	err = m.checkFunds(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), "for gas") || !strings.Contains(err.Error(), "ETH") {
		t.Fatalf("a wallet with tokens and no ETH for gas: %v", err)
	}
	t.Logf("refused: %v", err)
	fund(chain.FundConfig{ETH: big.NewInt(1e17)})
	if err := m.checkFunds(ctx, spec); err != nil {
		t.Fatalf("a wallet with tokens and gas: %v", err)
	}
}
