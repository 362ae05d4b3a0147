// Command challenge is the compute challenge's CPU workload and its
// offline verifier. Built with CGO_ENABLED=0 it is one static file that
// runs in an image built FROM scratch, as the jobs' test workload does.
//
//	challenge [-seed HEX] [-n N] [-out DIR] [-rows=false] [-workers W]
//
// computes C = A·B for the seed (64 hex digits) and n, and writes its
// commitment to DIR in the format nvidia/challenge.py writes too
// (leaves.bin, rows.bin, then root.hex); each flag's default comes from
// CHALLENGE_SEED, CHALLENGE_N, CHALLENGE_OUT (else /outputs),
// CHALLENGE_ROWS (0 leaves rows.bin out) and CHALLENGE_WORKERS. It
// prints one JSON line: n, root, seconds, GFLOPS.
//
//	challenge plan -class CLASS [-gpus G] [-precision P]
//
// prints the n that fills the class's memory, its working set and the
// envelope's window.
//
//	challenge check -dir DIR -seed HEX -n N [-gpus G] [-precision P] [-class CLASS -elapsed D [-rtt D]]
//
// runs the verifier against a workload's output directory (the seed is
// the one the caller chose) and, with -class, judges the elapsed time;
// it exits 1 with the reason when either fails.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aixblock/aixblock/gpu/challenge"
)

func main() {
	err := run(context.Background(), os.Stdout, os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "challenge:", err)
		os.Exit(1)
	}
}

// run does what args say and reports to out.
func run(ctx context.Context, out io.Writer, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "plan":
			return plan(out, args[1:])
		case "check":
			return check(ctx, out, args[1:])
		}
	}
	return compute(ctx, out, args)
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(env(name, ""), &v); err != nil {
		return def
	}
	return v
}

func parseSeed(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("seed %q: want 64 hex digits", s)
	}
	return b, nil
}

// compute is the workload.
func compute(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("challenge", flag.ContinueOnError)
	seedHex := fs.String("seed", env("CHALLENGE_SEED", ""), "the challenge's seed, 64 hex digits")
	n := fs.Int("n", envInt("CHALLENGE_N", challenge.TestnetN), "side of the matrices")
	out := fs.String("out", env("CHALLENGE_OUT", "/outputs"), "output directory")
	rows := fs.Bool("rows", env("CHALLENGE_ROWS", "1") != "0", "write rows.bin (C itself)")
	workers := fs.Int("workers", envInt("CHALLENGE_WORKERS", 0), "goroutines; zero: one per CPU")
	if err := fs.Parse(args); err != nil {
		return err
	}
	seed, err := parseSeed(*seedHex)
	if err != nil {
		return err
	}
	if *n < 1 || *n > challenge.MaxN {
		return fmt.Errorf("n=%d outside [1, %d]", *n, challenge.MaxN)
	}
	start := time.Now()
	c, err := challenge.Multiply(ctx, [32]byte(seed), *n, *workers)
	if err != nil {
		return err
	}
	leaves, err := challenge.HashRows(ctx, c, *n, *workers)
	if err != nil {
		return err
	}
	if err := challenge.WriteOutput(*out, *n, c, leaves, *rows); err != nil {
		return err
	}
	root := challenge.NewTree(leaves).Root()
	secs := time.Since(start).Seconds()
	return json.NewEncoder(w).Encode(map[string]any{
		"n": *n, "root": hex.EncodeToString(root[:]), "seconds": secs, "gflops": challenge.Ops(*n) / secs / 1e9,
	})
}

// paramFlags are the flags plan and check share.
func paramFlags(fs *flag.FlagSet) (gpus *int, precision *string) {
	return fs.Int("gpus", 1, "GPUs claimed"), fs.String("precision", string(challenge.FP16), "fp16, bf16, tf32 or fp32")
}

func plan(w io.Writer, args []string) error {
	fs := flag.NewFlagSet("challenge plan", flag.ContinueOnError)
	class := fs.String("class", "", "GPU class key, e.g. nvidia-h100-80gb or mock-cpu")
	gpus, precision := paramFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := challenge.Lookup(*class)
	if err != nil {
		return err
	}
	p := challenge.Params{N: e.N(*gpus, challenge.Precision(*precision)), GPUs: *gpus, Precision: challenge.Precision(*precision)}
	lo, hi := e.Window(p)
	return json.NewEncoder(w).Encode(map[string]any{
		"n": p.N, "working_set_bytes": challenge.WorkingSet(p.N, p.GPUs, p.Precision), "memory_gb": e.MemoryGB,
		"min_seconds": lo.Seconds(), "max_seconds": hi.Seconds(),
		"peak_tflops": e.Peak[p.Precision], "fastest_tflops": e.Fastest,
	})
}

// check verifies a workload's output directory as a verifier would, then
// judges the time with -class.
func check(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("challenge check", flag.ContinueOnError)
	dir := fs.String("dir", "", "the workload's output directory")
	seedHex := fs.String("seed", "", "the seed the workload was given")
	n := fs.Int("n", 0, "side of the matrices")
	gpus, precision := paramFlags(fs)
	class := fs.String("class", "", "GPU class to judge the time against (none: no timing)")
	elapsed := fs.Duration("elapsed", 0, "seed to commitment, on the caller's clock")
	rtt := fs.Duration("rtt", 0, "round trip to the provider")
	if err := fs.Parse(args); err != nil {
		return err
	}
	seed, err := parseSeed(*seedHex)
	if err != nil {
		return err
	}
	p := challenge.Params{N: *n, GPUs: *gpus, Precision: challenge.Precision(*precision)}
	v, err := challenge.NewVerifier(challenge.VerifierConfig{Params: p, Seed: seed})
	if err != nil {
		return err
	}
	prover, err := challenge.OpenOutput(*dir, v.Challenge())
	if err != nil {
		return err
	}
	defer prover.Close()
	start := time.Now()
	if err := challenge.Exchange(ctx, v, prover); err != nil {
		return fmt.Errorf("verifier: %w", err)
	}
	report := map[string]any{"verified": true, "rows_checked": challenge.DefaultRows, "verify_seconds": time.Since(start).Seconds()}
	if *class == "" {
		return json.NewEncoder(w).Encode(report)
	}
	report["tflops"] = challenge.Ops(*n) / (*elapsed - *rtt).Seconds() / 1e12
	if e, err := challenge.Lookup(*class); err == nil {
		lo, hi := e.Window(p)
		report["window_seconds"] = []float64{lo.Seconds(), hi.Seconds()}
	}
	report["envelope"] = "inside " + *class
	verdict := challenge.Check(*class, p, *elapsed, *rtt)
	if verdict != nil {
		report["envelope"] = verdict.Error()
	}
	if err := json.NewEncoder(w).Encode(report); err != nil {
		return err
	}
	return verdict
}
