package main

import (
	"io"
	"runtime"

	"github.com/aixblock/aixblock/node"
	"github.com/spf13/cobra"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := struct {
				Version string `json:"version"`
				Go      string `json:"go"`
				OS      string `json:"os"`
				Arch    string `json:"arch"`
			}{node.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH}
			return g.print(cmd.OutOrStdout(), v, func(w io.Writer) {
				kv(w, "aixblock", v.Version)
				kv(w, "go", v.Go)
				kv(w, "platform", v.OS+"/"+v.Arch)
			})
		},
	}
}
