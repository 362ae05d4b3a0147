package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/aixblock/aixblock/node"
	"github.com/aixblock/aixblock/node/api"
	"github.com/spf13/cobra"
)

// globals are the flags every command has.
type globals struct {
	repo string
	json bool
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "aixblock",
		Short:         "A peer-to-peer GPU compute node",
		Long:          "aixblock rents out idle GPUs and runs jobs on other people's, with no central server.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.repo, "repo", defaultRepo(), "repo directory (env AIXBLOCK_REPO)")
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print machine-readable JSON")
	root.AddCommand(
		newInitCmd(g),
		newDaemonCmd(g),
		newShutdownCmd(g),
		newIDCmd(g),
		newPeersCmd(g),
		newStatusCmd(g),
		newVersionCmd(g),
		newGPUCmd(g),
		newDataCmd(g),
		newWalletCmd(g),
		newDevchainCmd(g),
		newChainCmd(g),
		newMarketCmd(g),
		newJobCmd(g),
		newTestnetCmd(g),
		newDashboardCmd(g),
		newConfigCmd(g),
	)
	root.SuggestionsMinimumDistance = 2
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command group fail on a subcommand
// it does not have (`aixblock job lst`), with cobra's suggestions, instead
// of printing its help and exiting 0; the group alone still shows its help.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !c.HasSubCommands() || c.Run != nil || c.RunE != nil || !c.HasParent() {
		return
	}
	c.Args = cobra.ArbitraryArgs
	c.SuggestionsMinimumDistance = 2
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
		}
		//lint:ignore ST1005 cobra's own wording for an unknown command: the suggestions and the hint are lines of the message
		return fmt.Errorf("%s\n\nRun '%s --help' for its commands.", msg, cmd.CommandPath())
	}
}

func defaultRepo() string {
	if r := os.Getenv("AIXBLOCK_REPO"); r != "" {
		return r
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".aixblock"
	}
	return filepath.Join(home, ".aixblock")
}

func (g *globals) client() (*api.Client, error) { return node.NewClient(g.repo) }

// print writes v as JSON with --json, or calls human otherwise.
func (g *globals) print(w io.Writer, v any, human func(w io.Writer)) error {
	if g.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	human(tw)
	return tw.Flush()
}

func kv(w io.Writer, k string, v any) { fmt.Fprintf(w, "%s\t%v\n", k, v) }
