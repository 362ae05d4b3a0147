package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aixblock/aixblock/node/api"
	"github.com/spf13/cobra"
)

func newMarketCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "market",
		Short: "Find GPU providers and agree deals, with no central server",
	}
	var class string
	var wantN int
	var waitFor time.Duration
	providers := &cobra.Command{
		Use:   "providers",
		Short: "Find providers in the DHT (by GPU class with --gpu)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			info, err := c.Providers(cmd.Context(), class)
			// --wait N: a node that just joined sees providers only once the
			// DHT has their adverts.
			for deadline := time.Now().Add(waitFor); err == nil && len(info.Providers) < wantN && time.Now().Before(deadline); {
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(500 * time.Millisecond):
				}
				info, err = c.Providers(cmd.Context(), class)
			}
			if err != nil {
				return err
			}
			if len(info.Providers) < wantN {
				return fmt.Errorf("%d providers of %s found after %s, want %d", len(info.Providers), info.Class, waitFor, wantN)
			}
			return g.print(cmd.OutOrStdout(), info, func(w io.Writer) {
				if len(info.Providers) == 0 {
					fmt.Fprintf(w, "no providers of %s found\n", info.Class)
					return
				}
				fmt.Fprintln(w, "PEER ID\tGPUS (FREE/TOTAL)\tPRICE PER GPU-HOUR\tHEALTH\tREPUTATION")
				for _, p := range info.Providers {
					var gpus, prices []string
					for _, gg := range p.GPUs {
						gpus = append(gpus, fmt.Sprintf("%s %d/%d", gg.Class, gg.Free, gg.Total))
					}
					if len(gpus) == 0 {
						gpus = []string{"cpu only"}
					}
					for _, pr := range p.Price {
						prices = append(prices, pr.Units+" "+pr.Symbol)
					}
					r := p.Reputation
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.2f (%d ok, %d failed, %d no-show)\n", p.PeerID, strings.Join(gpus, ", "),
						strings.Join(prices, ", "), p.Health, r.Score(), r.Completed, r.Failed, r.NoShow)
				}
			})
		},
	}
	providers.Flags().StringVar(&class, "gpu", "", "GPU class, e.g. nvidia-h100-80gb (default: any GPU; cpu for CPU-only providers)")
	providers.Flags().IntVar(&wantN, "wait", 0, "wait until at least N providers are found (up to --wait-for)")
	providers.Flags().DurationVar(&waitFor, "wait-for", 30*time.Second, "how long --wait waits")

	var req api.OfferRequest
	offer := &cobra.Command{
		Use:   "offer",
		Short: "Offer a job to the market and agree a deal with the best bidder",
		Long: `Find providers for the resources, send them a signed offer (and gossip it),
collect bids for the bid window, and award the best: lowest price, then
reputation, then latency. Both sides sign the deal with their wallets. It
prints the deal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.Offer(cmd.Context(), req)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), res, func(w io.Writer) {
				d := res.Deal
				kv(w, "deal_id", d.ID)
				kv(w, "provider", d.Provider)
				kv(w, "gpus", fmt.Sprintf("%d %s", len(d.GPUs), d.GPUClass))
				kv(w, "price", d.Price+" base units per GPU-hour")
				kv(w, "max_duration_s", d.MaxDurationS)
				kv(w, "bids", res.Stats.Bids)
				kv(w, "took", res.Stats.Elapsed)
			})
		},
	}
	f := offer.Flags()
	f.IntVar(&req.GPUs, "gpus", 0, "GPUs")
	f.StringVar(&req.GPUClass, "gpu-class", "", "GPU class, e.g. nvidia-h100-80gb (default: any)")
	f.Uint64Var(&req.GPUMemoryMiB, "gpu-memory-mib", 0, "least memory per GPU")
	f.Float64Var(&req.CPU, "cpu", 0, "CPU cores (a fraction asks for the next whole core: providers count whole cores)")
	f.Uint64Var(&req.MemoryMiB, "memory-mib", 0, "memory")
	f.StringVar(&req.MaxPrice, "max-price", "", "most to pay per GPU-hour, in whole units of the token (required)")
	f.StringVar(&req.Token, "token", "", `token to pay in: an address or "native" (default: the configured token)`)
	f.StringVar(&req.Duration, "duration", "1h", "longest the job may run")
	f.StringVar(&req.Image, "image", "", "container image the job runs")
	offer.MarkFlagRequired("max-price")

	deals := &cobra.Command{
		Use:   "deals",
		Short: "Deals this node provides for",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ds, err := c.Deals(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), ds, func(w io.Writer) {
				if len(ds) == 0 {
					fmt.Fprintln(w, "no deals")
					return
				}
				fmt.Fprintln(w, "DEAL ID\tREQUESTER\tGPUS\tPRICE")
				for _, d := range ds {
					fmt.Fprintf(w, "%s\t%s\t%d %s\t%s\n", d.ID[:16], d.Requester, len(d.GPUs), d.GPUClass, d.Price)
				}
			})
		},
	}
	cmd.AddCommand(providers, offer, deals)
	return cmd
}
