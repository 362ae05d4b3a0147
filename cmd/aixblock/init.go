package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/node"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// initFlags are init's flags: what goes into the new repo's config.
type initFlags struct {
	network, gpuMock, passFile, keyFile, devchainFile, chainName string
	chainCfg                                                     node.ChainConfig
	prices                                                       []string
	noCheck                                                      bool
}

func newInitCmd(g *globals) *cobra.Command {
	var fl initFlags
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a repo: identity, config, API token and wallet",
		Long: `Create a repo: a libp2p identity, config.json, an API token, and a wallet
(an Ethereum keystore in <repo>/keystore).

Without --chain, --chain-rpc or --devchain the daemon runs an embedded dev
chain of its own, and the wallet may have an empty passphrase. --chain NAME
takes a network of the built-in table (aixblock chain networks: dev,
sepolia, base-sepolia, ethereum, base) with its chain ID, escrow, stablecoin
and confirmations; the URL comes from --chain-rpc or $` + chainRPCEnv + `.
Before writing anything, init checks that the chain answers with the right
chain ID and that the escrow is there (--no-check skips this). For any chain
but a dev one, set the passphrase with AIXBLOCK_PASSPHRASE or
--passphrase-file.`,
		Example: `  aixblock init --chain sepolia --chain-rpc https://sepolia.example/v3/KEY
  aixblock init --chain dev --chain-rpc http://127.0.0.1:8545   # aixblock devchain, geth --dev
  aixblock init --chain-rpc URL --escrow ADDR --token ADDR       # a chain not in the table`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runInit(cmd, g, &fl) },
	}
	fl.register(cmd.Flags())
	return cmd
}

func (fl *initFlags) register(f *pflag.FlagSet) {
	f.StringVar(&fl.network, "network", "", "network name (default \"mainnet\")")
	f.StringVar(&fl.gpuMock, "gpu-mock", "", "use a mock GPU server instead of NVML: dgxa100, dgxh100, dgxh200 or dgxb200")
	f.StringVar(&fl.chainName, "chain", "", "a network of the built-in table (aixblock chain networks), e.g. sepolia; the URL from --chain-rpc or $"+chainRPCEnv)
	f.StringVar(&fl.chainCfg.RPC, "chain-rpc", "", "EVM JSON-RPC URL of the chain to pay on (default: an embedded dev chain)")
	f.StringVar(&fl.chainCfg.Escrow, "escrow", "", "escrow contract address on --chain-rpc (default with --chain: the network's)")
	f.StringVar(&fl.chainCfg.Token, "token", "", `token to pay in on --chain-rpc: an ERC-20 address, "native", or "test" for the test token (default with --chain: the network's stablecoin)`)
	f.BoolVar(&fl.noCheck, "no-check", false, "write the config without asking the chain (its ID, the escrow's code): for a machine offline now")
	f.StringVar(&fl.devchainFile, "devchain", "", "use the chain described by `FILE`, as written by aixblock devchain --out FILE")
	f.StringVar(&fl.passFile, "passphrase-file", "", "file holding the wallet's passphrase (else env AIXBLOCK_PASSPHRASE_FILE or AIXBLOCK_PASSPHRASE)")
	f.StringArrayVar(&fl.prices, "price", nil, "provide GPUs of CLASS at AMOUNT of the chain's token per GPU-hour: CLASS=AMOUNT, e.g. nvidia-h100-80gb=2.5 or cpu=0.05 (repeatable)")
	f.StringVar(&fl.keyFile, "wallet-key", "", "import this hex private key file instead of generating a key")
}

// initResult is what init prints.
type initResult struct {
	Repo    string            `json:"repo"`
	PeerID  string            `json:"peer_id"`
	Network string            `json:"network"`
	Wallet  string            `json:"wallet"`
	Chain   string            `json:"chain"`
	Checked *chain.ChainCheck `json:"checked,omitempty"`
}

func runInit(cmd *cobra.Command, g *globals, fl *initFlags) error {
	cfg, net, err := fl.config()
	if err != nil {
		return err
	}
	pass, err := chain.ReadPassphrase(fl.passFile)
	if err != nil {
		return err
	}
	checked, err := fl.check(cmd.Context(), cfg.Chain, net, pass)
	if err != nil {
		return err
	}
	var key *ecdsa.PrivateKey
	if fl.keyFile != "" {
		if key, err = node.ReadKeyFile(fl.keyFile); err != nil {
			return err
		}
	}
	r, err := node.Init(g.repo, cfg, node.WalletOptions{Passphrase: pass, Key: key})
	if err != nil {
		return err
	}
	addr, err := node.WalletAddress(r.Dir)
	if err != nil {
		return err
	}
	chainLabel := cfg.Chain.RPC
	if chainLabel == "" {
		chainLabel = "embedded dev chain"
	}
	out := initResult{r.Dir, r.PeerID.String(), r.Config.Network, addr, chainLabel, checked}
	return g.print(cmd.OutOrStdout(), out, func(w io.Writer) {
		kv(w, "initialized repo", out.Repo)
		kv(w, "peer_id", out.PeerID)
		kv(w, "network", out.Network)
		kv(w, "wallet", out.Wallet)
		if checked == nil {
			kv(w, "chain", out.Chain)
			return
		}
		checkHuman(*checked, out.Chain)(w)
	})
}

// config is the new repo's config from the flags, and the network of the
// table that --chain names (the zero Network without it).
func (fl *initFlags) config() (node.Config, chain.Network, error) {
	cfg := node.DefaultConfig(fl.network)
	cfg.GPU.Mock = fl.gpuMock
	if strings.EqualFold(fl.chainCfg.Token, "test") {
		fl.chainCfg.Token = chain.TestTokenAddress().Hex()
	}
	cfg.Chain = fl.chainCfg
	var net chain.Network
	if fl.chainName != "" {
		if fl.devchainFile != "" {
			return cfg, net, errors.New("--chain and --devchain: give one (--devchain FILE names its chain itself)")
		}
		var err error
		if net, err = chain.LookupNetwork(fl.chainName); err != nil {
			return cfg, net, err
		}
		if cfg.Chain, err = presetChain(net, fl.chainCfg); err != nil {
			return cfg, net, err
		}
	}
	if fl.devchainFile != "" {
		dc, err := node.DevChainConfigFor(fl.devchainFile)
		if err != nil {
			return cfg, net, err
		}
		cfg.Chain = dc
	}
	return cfg, net, setPrices(&cfg, fl.prices)
}

// check asks the chain what init relies on, unless it need not or cannot.
// The chain is checked before anything is written; a repo that init would
// refuse anyway (no passphrase for a real chain) is refused for that
// first, by node.Init.
func (fl *initFlags) check(ctx context.Context, cc node.ChainConfig, net chain.Network, pass string) (*chain.ChainCheck, error) {
	if fl.noCheck || fl.devchainFile != "" || cc.RPC == "" || (pass == "" && !cc.IsDev()) {
		return nil, nil
	}
	res, err := initCheck(ctx, cc, net)
	if err != nil {
		return nil, err
	}
	return &res, nil
}

// setPrices reads CLASS=AMOUNT flags into the market's prices, in the
// chain's configured token.
func setPrices(cfg *node.Config, prices []string) error {
	for _, p := range prices {
		class, amount, ok := strings.Cut(p, "=")
		if !ok || class == "" || amount == "" {
			return fmt.Errorf("price %q: want CLASS=AMOUNT, e.g. nvidia-h100-80gb=2.5", p)
		}
		if cfg.Market.Prices == nil {
			cfg.Market.Prices = map[string]map[string]string{}
		}
		cfg.Market.Prices[strings.ToLower(class)] = map[string]string{"default": amount}
	}
	return cfg.Validate()
}

// presetChain is the chain section for a network of the table: its
// escrow, stablecoin and confirmations, unless flags say otherwise, with
// the URL from --chain-rpc or the environment. The dev network without a
// URL is the embedded dev chain.
func presetChain(net chain.Network, flags node.ChainConfig) (node.ChainConfig, error) {
	c := flags
	if c.RPC == "" {
		c.RPC = os.Getenv(chainRPCEnv)
	}
	if c.RPC == "" {
		if net.Dev {
			if c.Escrow != "" || c.Token != "" {
				return c, errors.New("--chain dev without --chain-rpc is the embedded dev chain, which has its own escrow and token: drop --escrow/--token, or give --chain-rpc")
			}
			return c, nil
		}
		return c, fmt.Errorf("--chain %s needs the chain's RPC URL: give --chain-rpc URL (your node's, or a provider's such as Alchemy or Infura) or set %s", net.Name, chainRPCEnv)
	}
	if c.Escrow == "" {
		c.Escrow = net.Escrow.Hex()
	}
	if c.Token == "" {
		c.Token = net.Token.Hex()
	}
	c.Confirmations = net.Confirmations
	c.LogRange = net.LogRange
	c.Dev = net.Dev
	return c, nil
}

// initCheck asks the chain what init is about to rely on: its chain ID
// (the network's, with --chain), the escrow and the token.
func initCheck(ctx context.Context, cc node.ChainConfig, net chain.Network) (chain.ChainCheck, error) {
	b, _, err := dialChain(ctx, cc.RPC)
	if err != nil {
		return chain.ChainCheck{}, fmt.Errorf("%w (init checks the chain before writing the repo; --no-check skips it)", err)
	}
	defer b.Close()
	tok, err := chain.ParseToken(cc.Token, chain.NativeToken)
	if err != nil {
		return chain.ChainCheck{}, fmt.Errorf("chain.token: %w", err)
	}
	res, err := checkChain(ctx, b, net, net.ChainID, chain.HexAddress(cc.Escrow), tok)
	if err != nil {
		return res, fmt.Errorf("chain %s: %w", cc.RPC, err)
	}
	return res, nil
}
