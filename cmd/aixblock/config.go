package main

import (
	"fmt"
	"io"

	"github.com/aixblock/aixblock/node"
	"github.com/spf13/cobra"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the repo's config.json, or every key with its default and meaning",
	}
	var defaults bool
	show := &cobra.Command{
		Use:   "show [--defaults]",
		Short: "Print config.json of the repo; --defaults: every key, its default and meaning",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if defaults {
				ref := node.ConfigReference()
				return g.print(cmd.OutOrStdout(), ref, func(w io.Writer) {
					fmt.Fprintln(w, "KEY\tDEFAULT\tMEANING")
					for _, k := range ref {
						fmt.Fprintf(w, "%s\t%s\t%s\n", k.Key, k.Default, k.Meaning)
					}
				})
			}
			r, err := node.Open(g.repo)
			if err != nil {
				return err
			}
			// config.json is JSON already: print it the same way either way.
			g.json = true
			return g.print(cmd.OutOrStdout(), r.Config, nil)
		},
	}
	show.Flags().BoolVar(&defaults, "defaults", false, "every key of config.json with its default and meaning")
	cmd.AddCommand(show)
	return cmd
}
