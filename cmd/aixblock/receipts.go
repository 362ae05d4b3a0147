package main

import (
	"fmt"
	"io"
	"time"

	"github.com/aixblock/aixblock/node/api"
	"github.com/spf13/cobra"
)

func newMarketReceiptsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "receipts PEER",
		Short: "A provider's record from the receipts of its ended deals",
		Long: `Fetch the receipts PEER serves about itself, keep those that verify,
and show this node's view of PEER from every receipt it holds: deals
completed, failed and outvoted, what was paid and by how many payers,
and how much evidence stands behind it (this node's own receipts, those
of peers it dealt with, and untrusted ones, which do not count).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.Receipts(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), res, func(w io.Writer) { receiptsHuman(w, res) })
		},
	}
}

// receiptsHuman is the view, then the receipts held, newest first.
func receiptsHuman(w io.Writer, res api.ReceiptsResult) {
	fmt.Fprintf(w, "%s: %s\n", res.Peer, res.Summary)
	if res.FetchError != "" {
		fmt.Fprintf(w, "fetch: %s\n", res.FetchError)
	}
	if len(res.Receipts) == 0 {
		fmt.Fprintln(w, "no receipts")
		return
	}
	fmt.Fprintln(w, "DEAL ID\tREQUESTER\tSIGNED BY\tOUTCOME\tRUN\tPAID\tENDED")
	for _, r := range res.Receipts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s %s\t%s\n", r.Deal[:16], r.Requester, r.Kind, r.Outcome,
			r.Run().Round(time.Second), r.Paid, r.Token, r.Ended().UTC().Format(time.RFC3339))
	}
}
