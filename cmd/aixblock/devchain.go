package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aixblock/aixblock/chain"
	"github.com/spf13/cobra"
)

func newDevchainCmd(g *globals) *cobra.Command {
	var httpAddr, out, logLevel string
	var accounts int
	var challenge time.Duration
	cmd := &cobra.Command{
		Use:   "devchain",
		Short: "Run a local Ethereum dev chain with the escrow and test token deployed",
		Long: `Run an in-process go-ethereum dev chain (a simulated beacon, as geth --dev)
until SIGINT or SIGTERM. Blocks are sealed as transactions arrive. It deploys
TestToken (tUSD, 6 decimals) and Escrow, funds --accounts accounts with
1,000,000 ETH and 1,000,000 tUSD each, and prints (and with --out writes)
the RPC URL, chain ID, contract addresses and the accounts' private keys.
The keys are the same on every dev chain: never use them elsewhere.

Point a repo at it with ` + "`aixblock init --devchain FILE`" + `; any Ethereum tool can
use the RPC URL.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			dc, err := chain.StartDevChain(ctx, chain.DevChainConfig{HTTP: httpAddr, Accounts: accounts, ChallengePeriod: challenge, Logger: log})
			if err != nil {
				return err
			}
			defer dc.Close()
			if out != "" {
				b, _ := json.MarshalIndent(dc.Info, "", "  ")
				if err := os.WriteFile(out, append(b, '\n'), 0o600); err != nil {
					return fmt.Errorf("out: %w", err)
				}
			}
			if err := g.print(cmd.OutOrStdout(), dc.Info, func(w io.Writer) {
				kv(w, "rpc_url", dc.Info.RPCURL)
				kv(w, "chain_id", dc.Info.ChainID)
				kv(w, "escrow", dc.Info.Escrow.Hex())
				kv(w, "token", dc.Info.Token.Hex()+" (tUSD, 6 decimals)")
				kv(w, "challenge_period", time.Duration(dc.Info.ChallengePeriodS)*time.Second)
				for i, a := range dc.Info.Accounts {
					kv(w, fmt.Sprintf("account %d", i), a.Address.Hex()+"  key "+a.PrivateKey)
				}
			}); err != nil {
				return err
			}
			<-ctx.Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&httpAddr, "http", "127.0.0.1:8545", "JSON-RPC listen HOST:PORT (port 0 picks one)")
	f.IntVar(&accounts, "accounts", 4, "prefunded accounts")
	f.DurationVar(&challenge, "challenge", 10*time.Minute, "the escrow's challenge period")
	f.StringVarP(&out, "out", "o", "", "write the chain's details as JSON to this file")
	f.StringVar(&logLevel, "log-level", envOr("AIXBLOCK_LOG_LEVEL", "warn"), "debug, info, warn or error")
	return cmd
}
