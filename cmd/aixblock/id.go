package main

import (
	"io"

	"github.com/spf13/cobra"
)

func newIDCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "id",
		Short: "Show this node's peer ID, addresses, network and version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			info, err := c.ID(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), info, func(w io.Writer) {
				kv(w, "peer_id", info.PeerID)
				kv(w, "network", info.Network)
				kv(w, "version", info.Version)
				kv(w, "wallet", info.Wallet)
				kv(w, "api", c.URL())
				if info.Gateway != "" {
					kv(w, "gateway", info.Gateway)
				} else {
					kv(w, "gateway", "off")
				}
				for _, a := range info.Addrs {
					kv(w, "addr", a)
				}
			})
		},
	}
}
