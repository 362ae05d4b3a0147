// Command aixblock is the node's CLI: `init` and `daemon` run locally; every
// other command is a thin client of a running daemon's HTTP API.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprint(os.Stderr, errorText(err, wantsJSON(os.Args[1:])))
		os.Exit(exitCode(err))
	}
}

// errorText is what the user sees of err: "aixblock: " and the message,
// its own line breaks kept (cobra's did-you-mean is a list) with trailing
// blank lines dropped; or one JSON object under --json, for scripts.
func errorText(err error, asJSON bool) string {
	msg := strings.TrimRight(err.Error(), "\n ")
	if asJSON {
		b, _ := json.Marshal(struct {
			Error string `json:"error"`
			Code  int    `json:"exit_code"`
		}{msg, exitCode(err)})
		return string(b) + "\n"
	}
	return "aixblock: " + msg + "\n"
}

// exitCode: a job that ran and failed exits with its status, as docker run
// does; every other error with 1.
func exitCode(err error) int {
	var ei errInterrupted
	if errors.As(err, &ei) {
		return 130
	}
	var jf errJobFailed
	if errors.As(err, &jf) && jf.j.ExitCode != nil && *jf.j.ExitCode > 0 && *jf.j.ExitCode < 256 {
		return *jf.j.ExitCode
	}
	return 1
}

// wantsJSON reads --json before cobra has parsed anything (a command that
// fails to parse still owes a script its JSON error).
func wantsJSON(args []string) bool {
	if i := slices.Index(args, "--"); i >= 0 {
		args = args[:i]
	}
	return slices.Contains(args, "--json") || slices.Contains(args, "--json=true")
}
