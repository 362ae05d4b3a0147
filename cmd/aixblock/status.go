package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show peers, DHT peers and uptime",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), st, func(w io.Writer) {
				kv(w, "peer_id", st.PeerID)
				kv(w, "network", st.Network)
				kv(w, "version", st.Version)
				kv(w, "peers", st.Peers)
				kv(w, "dht_peers", st.DHTPeers)
				gpus := "none"
				if len(st.GPUs) > 0 {
					gpus = fmt.Sprintf("%d healthy, %d degraded, %d unhealthy (%s)", st.GPUs["healthy"], st.GPUs["degraded"], st.GPUs["unhealthy"], st.GPUSource)
				} else if st.GPUReason != "" {
					gpus = st.GPUReason
				}
				kv(w, "gpus", gpus)
				chainState := st.Chain
				if st.ChainDownS > 0 {
					chainState += fmt.Sprintf(" (for %s)", (time.Duration(st.ChainDownS * float64(time.Second))).Round(time.Second))
				}
				kv(w, "chain", chainState)
				kv(w, "proof_of_gpu", st.Proof)
				kv(w, "uptime", (time.Duration(st.UptimeS * float64(time.Second))).Round(time.Second))
			})
		},
	}
}
