package main

import (
	"crypto/ecdsa"
	"fmt"
	"io"
	"strings"

	"github.com/aixblock/aixblock/chain"
	"github.com/aixblock/aixblock/node"
	"github.com/spf13/cobra"
)

func newInitCmd(g *globals) *cobra.Command {
	var network, gpuMock, passFile, keyFile, devchainFile string
	var chainCfg node.ChainConfig
	var prices []string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a repo: identity, config, API token and wallet",
		Long: `Create a repo: a libp2p identity, config.json, an API token, and a wallet
(an Ethereum keystore in <repo>/keystore).

Without --chain-rpc or --devchain the daemon runs an embedded dev chain of
its own, and the wallet may have an empty passphrase. For any other chain
set the passphrase with AIXBLOCK_PASSPHRASE or --passphrase-file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := node.DefaultConfig(network)
			cfg.GPU.Mock = gpuMock
			cfg.Chain = chainCfg
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
			chainName := cfg.Chain.RPC
			if chainName == "" {
				chainName = "embedded dev chain"
			}
			out := struct {
				Repo    string `json:"repo"`
				PeerID  string `json:"peer_id"`
				Network string `json:"network"`
				Wallet  string `json:"wallet"`
				Chain   string `json:"chain"`
			}{r.Dir, r.PeerID.String(), r.Config.Network, addr, chainName}
			return g.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				kv(w, "initialized repo", out.Repo)
				kv(w, "peer_id", out.PeerID)
				kv(w, "network", out.Network)
				kv(w, "wallet", out.Wallet)
				kv(w, "chain", out.Chain)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&network, "network", "", "network name (default \"mainnet\")")
	f.StringVar(&gpuMock, "gpu-mock", "", "use a mock GPU server instead of NVML: dgxa100, dgxh100, dgxh200 or dgxb200")
	f.StringVar(&chainCfg.RPC, "chain-rpc", "", "EVM JSON-RPC URL of the chain to pay on (default: an embedded dev chain)")
	f.StringVar(&chainCfg.Escrow, "escrow", "", "escrow contract address on --chain-rpc")
	f.StringVar(&chainCfg.Token, "token", "", `token to pay in on --chain-rpc: an ERC-20 address or "native"`)
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
