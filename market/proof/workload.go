package proof

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

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

// JobRunner runs the challenge's program as an ordinary job on exactly
// gpus, with env set, and returns the directory its /outputs were left
// in once it completed, and what removes them (the daemon submits it to
// its jobs manager with the GPUs held from the market).
type JobRunner func(ctx context.Context, env map[string]string, gpus []string) (dir string, drop func(), err error)

// Jobs is the daemon's workload: the challenge runs as a job, in the
// image of the daemon's config (CPU or NVIDIA), through the same runtime
// and GPU assignment as a deal's.
type Jobs struct {
	Job JobRunner
	// MaxN is the largest n it takes; zero: any.
	MaxN int
}

// Run runs the job and opens what it committed to.
func (w Jobs) Run(ctx context.Context, ch challenge.Challenge, gpus []string) (Prover, error) {
	if w.MaxN > 0 && int(ch.N) > w.MaxN {
		return nil, fmt.Errorf("n=%d is over the %d this provider's workload takes", ch.N, w.MaxN)
	}
	env := map[string]string{
		"CHALLENGE_SEED":      hex.EncodeToString(ch.Seed),
		"CHALLENGE_N":         strconv.Itoa(int(ch.N)),
		"CHALLENGE_GPUS":      strconv.Itoa(int(ch.GPUs)),
		"CHALLENGE_PRECISION": string(ch.Precision),
		"CHALLENGE_OUT":       "/outputs",
	}
	dir, drop, err := w.Job(ctx, env, gpus)
	if err != nil {
		return nil, err
	}
	p, err := challenge.OpenOutput(dir, ch)
	if err != nil {
		drop()
		return nil, fmt.Errorf("challenge job's outputs: %w", err)
	}
	return jobProver{Prover: p, drop: drop}, nil
}

// jobProver drops the job's outputs once the challenge is over.
type jobProver struct {
	*challenge.Prover
	drop func()
}

func (p jobProver) Close() error {
	err := p.Prover.Close()
	p.drop()
	return err
}

// CPUOnly is the one "GPU" a claim on a node without GPUs names: the
// challenge runs on its CPU (class mock-cpu).
const CPUOnly = "cpu"
