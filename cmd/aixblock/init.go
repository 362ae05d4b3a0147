package main

import (
	"io"

	"github.com/aixblock/aixblock/node"
	"github.com/spf13/cobra"
)

func newInitCmd(g *globals) *cobra.Command {
	var network, gpuMock string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a repo: identity, config and API token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := node.DefaultConfig(network)
			cfg.GPU.Mock = gpuMock
			r, err := node.Init(g.repo, cfg)
			if err != nil {
				return err
			}
			out := struct {
				Repo    string `json:"repo"`
				PeerID  string `json:"peer_id"`
				Network string `json:"network"`
			}{r.Dir, r.PeerID.String(), r.Config.Network}
			return g.print(cmd.OutOrStdout(), out, func(w io.Writer) {
				kv(w, "initialized repo", out.Repo)
				kv(w, "peer_id", out.PeerID)
				kv(w, "network", out.Network)
			})
		},
	}
	cmd.Flags().StringVar(&network, "network", "", "network name (default \"mainnet\")")
	cmd.Flags().StringVar(&gpuMock, "gpu-mock", "", "use a mock GPU server instead of NVML: dgxa100, dgxh100, dgxh200 or dgxb200")
	return cmd
}
