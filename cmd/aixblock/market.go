package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aixblock/aixblock/market"
	"github.com/aixblock/aixblock/market/receipt"
	"github.com/aixblock/aixblock/node/api"
	"github.com/spf13/cobra"
)

func newMarketCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "market",
		Short: "Find GPU providers and agree deals, with no central server",
	}
	cmd.AddCommand(newMarketProvidersCmd(g), newMarketOfferCmd(g), newMarketVerifyCmd(g), newMarketDealsCmd(g), newMarketReceiptsCmd(g))
	return cmd
}

// providersQuery is what `market providers` asks for: a class, and how
// many providers to wait for and how long.
type providersQuery struct {
	class    string
	wantN    int
	verified int // wait until this many stand verified
	waitFor  time.Duration
}

func newMarketProvidersCmd(g *globals) *cobra.Command {
	var q providersQuery
	providers := &cobra.Command{
		Use:   "providers",
		Short: "Find providers in the DHT (by GPU class with --gpu)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			info, err := q.find(cmd, c)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), info, func(w io.Writer) { providersHuman(w, info) })
		},
	}
	providers.Flags().StringVar(&q.class, "gpu", "", "GPU class, e.g. nvidia-h100-80gb (default: any GPU; cpu for CPU-only providers)")
	providers.Flags().IntVar(&q.wantN, "wait", 0, "wait until at least N providers are found (up to --wait-for)")
	providers.Flags().IntVar(&q.verified, "wait-verified", 0, "wait until at least N providers stand verified by proof of GPU (up to --wait-for)")
	providers.Flags().DurationVar(&q.waitFor, "wait-for", 30*time.Second, "how long --wait and --wait-verified wait")
	return providers
}

// find asks the daemon for providers until it knows of wantN, or waitFor
// has passed.
func (q providersQuery) find(cmd *cobra.Command, c *api.Client) (api.ProvidersInfo, error) {
	info, err := c.Providers(cmd.Context(), q.class)
	// --wait N: a node that just joined sees providers only once the
	// DHT has their adverts.
	for deadline := time.Now().Add(q.waitFor); err == nil && q.short(info) && time.Now().Before(deadline); {
		select {
		case <-cmd.Context().Done():
			return info, cmd.Context().Err()
		case <-time.After(500 * time.Millisecond):
		}
		info, err = c.Providers(cmd.Context(), q.class)
	}
	if err != nil {
		return info, err
	}
	if len(info.Providers) < q.wantN {
		return info, fmt.Errorf("%d providers of %s found after %s, want %d", len(info.Providers), info.Class, q.waitFor, q.wantN)
	}
	if v := verifiedCount(info); v < q.verified {
		return info, fmt.Errorf("%d providers of %s verified after %s, want %d", v, info.Class, q.waitFor, q.verified)
	}
	return info, nil
}

// short says whether info has fewer providers, or verified ones, than
// asked for.
func (q providersQuery) short(info api.ProvidersInfo) bool {
	return len(info.Providers) < q.wantN || verifiedCount(info) < q.verified
}

func verifiedCount(info api.ProvidersInfo) int {
	n := 0
	for _, p := range info.Providers {
		if p.Proof.State == market.ProofVerified {
			n++
		}
	}
	return n
}

// providersHuman is the table of `market providers`.
func providersHuman(w io.Writer, info api.ProvidersInfo) {
	if len(info.Providers) == 0 {
		fmt.Fprintf(w, "no providers of %s found\n", info.Class)
		return
	}
	fmt.Fprintln(w, "PEER ID\tGPUS (FREE/TOTAL)\tPRICE PER GPU-HOUR\tHEALTH\tREPUTATION\tPROOF OF GPU\tRECEIPTS")
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
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.2f (%d ok, %d failed, %d no-show)\t%s\t%s\n", p.PeerID, strings.Join(gpus, ", "),
			strings.Join(prices, ", "), p.Health, r.Score(), r.Completed, r.Failed, r.NoShow, p.Proof.Text, receiptsCell(p.Receipts))
	}
}

// receiptsCell is a provider's view from receipts in a table cell: the
// outcomes counted, their distinct payers, the evidence by trust (own,
// from peers dealt with, untrusted) and what the escrow paid.
func receiptsCell(s *receipt.Summary) string {
	if s == nil {
		return "-"
	}
	ev := s.Evidence
	out := fmt.Sprintf("%d completed (%d verified), %d failed, %d outvoted; %d payers; evidence %d own, %d dealt, %d untrusted",
		s.Completed, s.Verified, s.Failed, s.Outvoted, s.Payers, ev.Own, ev.Dealt, ev.Beyond+ev.Stranger+ev.ProviderOnly)
	switch c := s.OnChain; {
	case c == nil:
	case c.Error != "":
		out += "; on chain: unknown"
	default:
		out += fmt.Sprintf("; on chain %d payers", c.Payers)
	}
	return out
}

func newMarketOfferCmd(g *globals) *cobra.Command {
	var req api.OfferRequest
	offer := &cobra.Command{
		Use:   "offer",
		Short: "Offer a job to the market and agree a deal with the best bidder",
		Long: `Find providers for the resources, send them a signed offer (and gossip it),
collect bids for the bid window, and award the best: lowest price, then
proof of GPU, then the provider's receipts as this node weighs them, then
its own reputation record, then latency. Both sides sign the deal with their wallets. It
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
	offerFlags(offer, &req)
	return offer
}

// offerFlags are the resources and terms of `market offer`.
func offerFlags(offer *cobra.Command, req *api.OfferRequest) {
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
	f.BoolVar(&req.Verified, "verified", false, "deal only with providers verified by proof of GPU (unverified ones are challenged first)")
	offer.MarkFlagRequired("max-price")
}

func newMarketDealsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
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
}

func newMarketVerifyCmd(g *globals) *cobra.Command {
	var req api.VerifyRequest
	verify := &cobra.Command{
		Use:   "verify PEER --class CLASS",
		Short: "Challenge a peer to prove it has the GPUs of a class (proof of GPU)",
		Long: `Challenge PEER to multiply two matrices it could not have prepared, on
--gpus GPUs of --class, timed on this node's clock and checked on a few
rows. Prints the verdict and the ID of its signed record, which both
nodes keep; exits non-zero when the peer fails the challenge.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			req.Peer = args[0]
			res, err := c.Verify(cmd.Context(), req)
			if err != nil {
				return err
			}
			if err := g.print(cmd.OutOrStdout(), res, func(w io.Writer) { verifyHuman(w, res) }); err != nil {
				return err
			}
			if !res.Passed {
				return fmt.Errorf("%s failed the challenge: %s", req.Peer, res.Record.Reason)
			}
			return nil
		},
	}
	verify.Flags().StringVar(&req.Class, "class", "", "GPU class claimed, e.g. nvidia-h100-80gb, or mock-cpu (required)")
	verify.Flags().IntVar(&req.GPUs, "gpus", 1, "GPUs challenged together")
	verify.MarkFlagRequired("class")
	return verify
}

// verifyHuman is the verdict of `market verify`.
func verifyHuman(w io.Writer, res api.VerifyResult) {
	r := res.Record
	if !res.Passed {
		fmt.Fprintf(w, "failed: %s, record %s\n", r.Detail, res.ID)
		return
	}
	fmt.Fprintf(w, "verified: %s, %dx%d in %s (%.3g TFLOPS), record %s\n", r.Class, r.N, r.N, r.Elapsed().Round(time.Millisecond), r.TFLOPS(), res.ID)
}
