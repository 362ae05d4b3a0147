package proof

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aixblock/aixblock/gpu/challenge"
)

// Workload runs a challenge on a provider's GPUs and returns what
// answers for it. The daemon's runs it as an ordinary job on exactly the
// GPUs named (the same runtime and GPU assignment as a deal's, so a pass
// also shows that jobs can use them); CPU runs it in the process.
type Workload interface {
	// Run computes ch on exactly gpus (UUIDs, len(gpus) == ch.GPUs) and
	// returns a prover holding its commitment. An error wrapping
	// ErrBusy refuses for now (the GPUs are leased); any other refuses
	// for good and is the verifier's to record.
	Run(ctx context.Context, ch challenge.Challenge, gpus []string) (Prover, error)
}

// Prover answers one challenge after its commitment: the honest
// *challenge.Prover, or anything that speaks for a provider. Close
// releases what it holds (C in memory, an output directory).
type Prover interface {
	challenge.Provider
	io.Closer
}

// ErrBusy is a refusal for now: the GPUs are in use, or too many
// challenges run already.
var ErrBusy = errors.New("busy")

// CPU is the workload of CPU-only providers and of tests: the product on
// this machine's cores, through challenge.Compute, whatever GPUs are
// named (a CPU provider's GPUs are mock ones). It is honest: only a mock
// class's envelope passes it.
type CPU struct {
	// Workers is the goroutines of the product; zero: GOMAXPROCS.
	Workers int
	// MaxN is the largest n it takes (C is 4n² bytes in memory); zero:
	// 8192.
	MaxN int
}

// Run multiplies on the CPU and commits.
func (w CPU) Run(ctx context.Context, ch challenge.Challenge, gpus []string) (Prover, error) {
	maxN := w.MaxN
	if maxN == 0 {
		maxN = 8192
	}
	if int(ch.N) > maxN {
		return nil, fmt.Errorf("n=%d is over the %d a CPU workload takes", ch.N, maxN)
	}
	p, err := challenge.Compute(ctx, ch, w.Workers)
	if err != nil {
		return nil, fmt.Errorf("cpu workload: %w", err)
	}
	return p, nil
}
