// Command buildgeth builds geth from the go-ethereum module that go.mod
// pins into the cache the chain tests use (gethtest.CachePath), unless it
// is there already, and prints its path: `make geth`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/aixblock/aixblock/chain/gethtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	path, err := gethtest.Build(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildgeth:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}
