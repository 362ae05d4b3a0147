// Command jobimage imports the test workload into the local Docker engine
// as aixblock-test/jobprog:latest, the image the tests use (make
// job-image; the testnet's demo jobs run it too).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aixblock/aixblock/jobs/jobstest"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "jobimage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	c, err := jobstest.Connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return jobstest.BuildImage(ctx, c)
}
