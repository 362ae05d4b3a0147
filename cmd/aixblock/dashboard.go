package main

import (
	"fmt"
	"io"
	"os/exec"

	"github.com/spf13/cobra"
)

func newDashboardCmd(g *globals) *cobra.Command {
	var open bool
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print (or open) the link that signs this machine's browser in to the dashboard",
		Long: `The daemon serves a web dashboard on its API address: node, GPUs, market,
jobs with live logs, job submission, wallet and earnings, and the testnet's
nodes. The link carries the API token once; the browser then keeps a
session cookie for this address only. Anyone with the link controls the
node: do not share it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if _, err := c.ID(cmd.Context()); err != nil {
				return err
			}
			url := c.LoginURL()
			opened := false
			if open {
				for _, b := range []string{"xdg-open", "open"} {
					if p, err := exec.LookPath(b); err == nil && exec.Command(p, url).Start() == nil {
						opened = true
						break
					}
				}
				if !opened {
					fmt.Fprintln(cmd.ErrOrStderr(), "no browser opener found (xdg-open); open the link yourself")
				}
			}
			return g.print(cmd.OutOrStdout(), map[string]any{"url": url, "opened": opened}, func(w io.Writer) {
				fmt.Fprintln(w, url)
			})
		},
	}
	cmd.Flags().BoolVar(&open, "open", false, "open the link in the default browser")
	return cmd
}
