package challenge

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"testing"
	"time"
)

// BenchmarkChallenge runs whole challenges on this CPU (make
// bench-challenge): the prover's time (multiply, hash, tree), the
// verifier's (its sweeps and checks), their ratio against the ratio of
// their operations, at the testnet's n and at 1024 (AIXBLOCK_BENCH_N=N
// adds one).
func BenchmarkChallenge(b *testing.B) {
	sizes := []int{TestnetN, 1024}
	if n, err := strconv.Atoi(os.Getenv("AIXBLOCK_BENCH_N")); err == nil && n > 0 {
		sizes = append(sizes, n)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			var prover, verifier time.Duration
			for i := range b.N {
				p, v := timedChallenge(b, n, byte(i))
				prover += p
				verifier += v
			}
			prover /= time.Duration(b.N)
			verifier /= time.Duration(b.N)
			b.ReportMetric(prover.Seconds()*1e3, "prover-ms")
			b.ReportMetric(Ops(n)/prover.Seconds()/1e9, "prover-GFLOPS")
			b.ReportMetric(verifier.Seconds()*1e3, "verifier-ms")
			b.ReportMetric(100*verifier.Seconds()/prover.Seconds(), "verifier/prover-time-%")
			b.ReportMetric(100*CostOf(n, DefaultRows).Fraction(), "verifier/prover-ops-%")
		})
	}
}

// timedChallenge runs one challenge of side n and returns the time each
// side spent on its own work.
func timedChallenge(b *testing.B, n int, seed byte) (prover, verifier time.Duration) {
	v := newTestVerifier(b, n, seed)
	start := time.Now()
	sp := &spy{Provider: honest(b, v)}
	computed := time.Since(start)
	start = time.Now()
	if err := Exchange(context.Background(), v, sp); err != nil {
		b.Fatal(err)
	}
	return computed + sp.spent, time.Since(start) - sp.spent
}

// BenchmarkChallengeBounds prints the bounds the protocol reaches: the
// false-accept bound per fraction of wrong rows, and the verifier's share
// of the work at the n each real class fills.
func BenchmarkChallengeBounds(b *testing.B) {
	for range b.N {
	}
	b.Logf("Freivalds: a wrong y passes with probability 1/P = 2^-61 = %.2g per wrong row", 1.0/P)
	for _, f := range []float64{0.5, 0.25, 0.1, 0.01} {
		k := RowsFor(f, 40)
		b.Logf("wrong in %4.0f%% of rows: k=%d passes with %.3g (2^%.1f); 2^-40 needs k=%d, verifier %.3f%% of the work at n=16384",
			100*f, DefaultRows, PassBound(f, DefaultRows), math.Log2(PassBound(f, DefaultRows)), k, 100*CostOf(16384, k).Fraction())
	}
	for _, n := range []int{TestnetN, 4096, 16384, 65536} {
		b.Logf("n=%6d, k=%d: verifier %.3f%% of the provider's operations", n, DefaultRows, 100*CostOf(n, DefaultRows).Fraction())
	}
	for _, class := range Classes() {
		e, _ := Lookup(class)
		n := e.N(1, FP16)
		lo, hi := e.Window(Params{N: n})
		b.Logf("%-22s n=%6d (%5.1f of %3.0f GB): verifier %.3f%%, window %v to %v",
			class, n, float64(WorkingSet(n, 1, FP16))/1e9, e.MemoryGB, 100*CostOf(n, DefaultRows).Fraction(),
			lo.Round(time.Millisecond), hi.Round(time.Millisecond))
	}
	b.ReportMetric(math.Log2(PassBound(0.5, DefaultRows)), "log2-pass-half-wrong")
}
