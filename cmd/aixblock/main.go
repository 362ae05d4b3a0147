// Command aixblock is the node's CLI: `init` and `daemon` run locally; every
// other command is a thin client of a running daemon's HTTP API.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		// One line: errors.Join and libp2p put newlines in messages.
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
		fmt.Fprintln(os.Stderr, "aixblock: "+msg)
		os.Exit(1)
	}
}
