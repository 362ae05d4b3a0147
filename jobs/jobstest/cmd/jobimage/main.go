// Command jobimage imports the test workload into the local Docker engine
// as aixblock-test/jobprog:latest (the image the tests use; the testnet's
// demo jobs run it too), and the proof-of-GPU challenge's CPU workload as
// aixblock/challenge:cpu (the image daemons answer challenges in): make
// job-image.
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
