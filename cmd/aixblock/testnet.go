package main

import (
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/aixblock/aixblock/node"
	"github.com/aixblock/aixblock/testnet"
	"github.com/spf13/cobra"
)

func newTestnetCmd(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "testnet",
		Short: "A whole network on this machine: a dev chain and N daemons",
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", ".testnet", "where the testnet keeps its repos, logs and testnet.json")
	table := func(w io.Writer, info *testnet.Info) {
		fmt.Fprintf(w, "chain\t%s (id %d), escrow %s, token %s\n", info.Chain.RPCURL, info.Chain.ChainID, info.Chain.Escrow.Hex(), info.Chain.Token.Hex())
		fmt.Fprintln(w, "NODE\tPEER ID\tAPI\tGPUS\tWALLET\tUP")
		for _, n := range info.Nodes {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\n", n.Name, n.PeerID, n.API, n.GPUs, n.Wallet, n.Up)
		}
	}
	var cfg testnet.Config
	up := &cobra.Command{
		Use:   "up",
		Short: "Start the dev chain and the daemons, and wait until the market sees every provider",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			cfg.Dir = dir
			info, err := testnet.Up(ctx, cfg)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), info, func(w io.Writer) {
				table(w, info)
				fmt.Fprintf(w, "\nnode0 is a requester; the others rent out %s GPUs. Stop with: aixblock testnet down --dir %s\n", info.Nodes[len(info.Nodes)-1].GPUs, dir)
			})
		},
	}
	up.Flags().IntVar(&cfg.Nodes, "nodes", 4, "daemons (node0 is a requester, the rest providers)")
	up.Flags().StringVar(&cfg.GPUMock, "gpu-mock", "dgxh100", "the providers' mock GPUs: dgxa100, dgxh100, dgxh200 or dgxb200")
	up.Flags().StringVar(&cfg.Price, "price", "2", "providers' price per GPU-hour in tUSD")
	status := &cobra.Command{
		Use:   "status",
		Short: "The testnet's nodes and whether they run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := testnet.Status(dir)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), info, func(w io.Writer) { table(w, info) })
		},
	}
	var purge bool
	down := &cobra.Command{
		Use:   "down",
		Short: "Stop what testnet up started (--purge also deletes its directory)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, err := testnet.Down(dir, purge)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), info, func(w io.Writer) {
				if info.Stopped == 0 {
					fmt.Fprintf(w, "nothing was running in %s", info.Dir)
				} else {
					fmt.Fprintf(w, "stopped %d processes (daemons and the dev chain)", info.Stopped)
				}
				if purge {
					fmt.Fprintf(w, "; removed %s", info.Dir)
				}
				fmt.Fprintln(w)
			})
		},
	}
	down.Flags().BoolVar(&purge, "purge", false, "also delete the directory")
	cmd.AddCommand(up, status, down)
	return cmd
}

// testnetView is the harness as a daemon's dashboard sees it: node does
// not depend on package testnet, so the daemon hands this in.
type testnetView struct{}

func (testnetView) Status(dir string) (node.TestnetNodes, error) {
	info, err := testnet.Status(dir)
	if err != nil {
		return node.TestnetNodes{}, err
	}
	out := node.TestnetNodes{Dir: info.Dir}
	for _, n := range info.Nodes {
		out.Nodes = append(out.Nodes, node.TestnetNode{TestnetMember: node.TestnetMember(n)})
	}
	return out, nil
}
