package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func newPeersCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "List connected peers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			peers, err := c.Peers(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), peers, func(w io.Writer) {
				if len(peers) == 0 {
					fmt.Fprintln(w, "no peers connected")
					return
				}
				fmt.Fprintln(w, "PEER_ID\tADDR\tDIRECTION\tLATENCY")
				for _, p := range peers {
					fmt.Fprintf(w, "%s\t%s\t%s\t%dms\n", p.PeerID, p.Addr, p.Direction, p.LatencyMS)
				}
			})
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "connect MULTIADDR",
		Short: "Connect to a peer, e.g. /ip4/127.0.0.1/tcp/4901/p2p/12D3Koo...",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			p, err := c.Connect(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), p, func(w io.Writer) {
				fmt.Fprintf(w, "connected to %s\n", p.PeerID)
			})
		},
	})
	return cmd
}
