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
)

func newInitCmd(g *globals) *cobra.Command {
	var network, gpuMock, passFile, keyFile, devchainFile, chainName string
	var chainCfg node.ChainConfig
	var prices []string
	var noCheck bool
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
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := node.DefaultConfig(network)
			cfg.GPU.Mock = gpuMock
			if strings.EqualFold(chainCfg.Token, "test") {
				chainCfg.Token = chain.TestTokenAddress().Hex()
			}
			cfg.Chain = chainCfg
			var net chain.Network
			if chainName != "" {
				if devchainFile != "" {
					return errors.New("--chain and --devchain: give one (--devchain FILE names its chain itself)")
				}
				var err error
				if net, err = chain.LookupNetwork(chainName); err != nil {
					return err
				}
				if cfg.Chain, err = presetChain(net, chainCfg); err != nil {
					return err
				}
			}
			if devchainFile != "" {
				dc, err := node.DevChainConfigFor(devchainFile)
				if err != nil {
					return err
				}
				cfg.Chain = dc
			}
			if err := setPrices(&cfg, prices); err != nil {
				return err
			}
			pass, err := chain.ReadPassphrase(passFile)
			if err != nil {
				return err
			}
			// The chain is checked before anything is written; a repo that
			// init would refuse anyway (no passphrase for a real chain) is
			// refused for that first, by node.Init.
			var checked *chain.ChainCheck
			if !noCheck && devchainFile == "" && cfg.Chain.RPC != "" && (pass != "" || cfg.Chain.IsDev()) {
				res, err := initCheck(cmd.Context(), cfg.Chain, net)
				if err != nil {
					return err
				}
				checked = &res
			}
			var key *ecdsa.PrivateKey
			if keyFile != "" {
				if key, err = node.ReadKeyFile(keyFile); err != nil {
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
			out := struct {
				Repo    string            `json:"repo"`
				PeerID  string            `json:"peer_id"`
				Network string            `json:"network"`
				Wallet  string            `json:"wallet"`
				Chain   string            `json:"chain"`
				Checked *chain.ChainCheck `json:"checked,omitempty"`
			}{r.Dir, r.PeerID.String(), r.Config.Network, addr, chainLabel, checked}
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
		},
	}
	f := cmd.Flags()
	f.StringVar(&network, "network", "", "network name (default \"mainnet\")")
	f.StringVar(&gpuMock, "gpu-mock", "", "use a mock GPU server instead of NVML: dgxa100, dgxh100, dgxh200 or dgxb200")
	f.StringVar(&chainName, "chain", "", "a network of the built-in table (aixblock chain networks), e.g. sepolia; the URL from --chain-rpc or $"+chainRPCEnv)
	f.StringVar(&chainCfg.RPC, "chain-rpc", "", "EVM JSON-RPC URL of the chain to pay on (default: an embedded dev chain)")
	f.StringVar(&chainCfg.Escrow, "escrow", "", "escrow contract address on --chain-rpc (default with --chain: the network's)")
	f.StringVar(&chainCfg.Token, "token", "", `token to pay in on --chain-rpc: an ERC-20 address, "native", or "test" for the test token (default with --chain: the network's stablecoin)`)
	f.BoolVar(&noCheck, "no-check", false, "write the config without asking the chain (its ID, the escrow's code): for a machine offline now")
	f.StringVar(&devchainFile, "devchain", "", "use the chain described by `FILE`, as written by aixblock devchain --out FILE")
	f.StringVar(&passFile, "passphrase-file", "", "file holding the wallet's passphrase (else env AIXBLOCK_PASSPHRASE_FILE or AIXBLOCK_PASSPHRASE)")
	f.StringArrayVar(&prices, "price", nil, "provide GPUs of CLASS at AMOUNT of the chain's token per GPU-hour: CLASS=AMOUNT, e.g. nvidia-h100-80gb=2.5 or cpu=0.05 (repeatable)")
	f.StringVar(&keyFile, "wallet-key", "", "import this hex private key file instead of generating a key")
	return cmd
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
