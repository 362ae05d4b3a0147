package challenge

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// cpuTFLOPS is a generous CPU: a 64-core server's fp32 with AVX-512,
// about 5 TFLOPS. This machine's Go loop does about 0.002.
const cpuTFLOPS = 5.0

func cpuTime(n int) time.Duration {
	return seconds(Ops(n) / (cpuTFLOPS * 1e12))
}

// TestEnvelopeCheck: a CPU's time is refused for an H100 and accepted
// for a mock class; the too-fast, the too-small and the too-large are
// refused with their reasons.
func TestEnvelopeCheck(t *testing.T) {
	h100, _ := Lookup("nvidia-h100-80gb")
	nH := h100.N(1, FP16)
	lo, hi := h100.Window(Params{N: nH})
	mid := (lo + hi) / 2
	// Eight GPUs' n, in the time one GPU takes at its slowest plausible.
	n8 := h100.N(8, FP16)
	_, hi1 := h100.Window(Params{N: n8})
	for _, tc := range []struct {
		name         string
		class        string
		p            Params
		elapsed, rtt time.Duration
		want         string // empty: accepted
	}{
		{"a CPU for an H100", "nvidia-h100-80gb", Params{N: nH}, cpuTime(nH), 50 * time.Millisecond, "slower than 1 nvidia-h100-80gb"},
		{"a CPU for a mock", "mock-nvidia-h100-80gb", Params{N: TestnetN}, seconds(Ops(TestnetN) / 2e9), 0, ""},
		{"this machine for mock-cpu", "mock-cpu", Params{N: TestnetN}, 2 * time.Second, 0, ""},
		{"an H100 in its window", "nvidia-h100-80gb", Params{N: nH}, mid, 10 * time.Millisecond, ""},
		{"an H100's slowest, late by the round trip", "nvidia-h100-80gb", Params{N: nH}, hi + time.Second, time.Second, ""},
		{"a round trip over MaxRTT is not credited", "nvidia-h100-80gb", Params{N: nH}, hi + 5*time.Second, 5 * time.Second, "slower than"},
		{"faster than an H100 can go", "nvidia-h100-80gb", Params{N: nH}, lo / 2, 0, "faster than 1 nvidia-h100-80gb"},
		{"eight GPUs claimed, one used", "nvidia-h100-80gb", Params{N: n8, GPUs: 8}, hi1, 0, "slower than 8 nvidia-h100-80gb"},
		{"n too small to tell", "nvidia-h100-80gb", Params{N: 4096}, time.Second, 0, "too small to tell"},
		{"n too big for the card", "nvidia-rtx-4090-24gb", Params{N: nH}, time.Minute, 0, "needs 63.9 GB per GPU"},
		{"unknown class", "nvidia-x1-1gb", Params{N: 1024}, time.Second, 0, "no envelope"},
	} {
		err := Check(tc.class, tc.p, tc.elapsed, tc.rtt)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (!errors.Is(err, ErrEnvelope) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestFill: every real class's n fills between MinFill and FillFraction
// of its memory, keeps the verifier under 1% of the work, and stays
// exact.
func TestFill(t *testing.T) {
	for _, class := range Classes() {
		e, _ := Lookup(class)
		for _, g := range []int{1, 8} {
			for _, p := range []Precision{FP16, FP32} {
				n := e.N(g, p)
				fill := float64(WorkingSet(n, g, p)) / (e.MemoryGB * 1e9)
				if fill < MinFill || fill > FillFraction || n%256 != 0 || n > MaxN || 4*n >= 1<<24 {
					t.Errorf("%s ×%d %s: n=%d fills %.2f", class, g, p, n, fill)
				}
				if f := CostOf(n, DefaultRows).Fraction(); f >= 0.01 {
					t.Errorf("%s: the verifier does %.2f%% of the work", class, 100*f)
				}
				// At fp32 the slower cards' window reaches a big CPU's time:
				// verifiers time at fp16 (see the package doc).
				if err := e.Check(Params{N: n, GPUs: g, Precision: p}, cpuTime(n), 0); err == nil && p == FP16 {
					t.Errorf("%s ×%d %s: a CPU's time passes", class, g, p)
				}
			}
		}
	}
}

func TestBounds(t *testing.T) {
	if k := RowsFor(0.5, 40); k != DefaultRows {
		t.Errorf("RowsFor(1/2, 40) = %d", k)
	}
	if b := PassBound(0.5, DefaultRows); b > 1.0/(1<<40) {
		t.Errorf("PassBound(1/2, 40) = %g", b)
	}
	for _, f := range []float64{0.01, 0.1, 0.25, 0.9} {
		k := RowsFor(f, 40)
		if PassBound(f, k) > 1.0/(1<<40) || PassBound(f, k-1) <= 1.0/(1<<40) {
			t.Errorf("RowsFor(%g, 40) = %d is not the least k", f, k)
		}
	}
	for _, tc := range []struct {
		n        int
		lo, high float64
	}{{4096, 0.01, 0.011}, {4400, 0.0099, 0.01}, {16384, 0.0026, 0.0027}} {
		if f := CostOf(tc.n, DefaultRows).Fraction(); f < tc.lo || f >= tc.high {
			t.Errorf("n=%d: verifier at %.4f%%", tc.n, 100*f)
		}
	}
}
