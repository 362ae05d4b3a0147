// Command aixblock is the node's CLI: `init` and `daemon` run locally; every
// other command is a thin client of a running daemon's HTTP API.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		// One line: errors.Join and libp2p put newlines in messages.
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
		fmt.Fprintln(os.Stderr, "aixblock: "+msg)
		// A job that ran and failed: exit with its status, as docker run does.
		var jf errJobFailed
		if errors.As(err, &jf) && jf.j.ExitCode != nil && *jf.j.ExitCode > 0 && *jf.j.ExitCode < 256 {
			os.Exit(*jf.j.ExitCode)
		}
		os.Exit(1)
	}
}
