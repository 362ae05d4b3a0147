package challenge

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// ErrEnvelope marks a challenge whose size or time does not fit the GPU
// class claimed; it is wrapped with the reason.
var ErrEnvelope = errors.New("outside the class's envelope")

// Envelope is what one GPU of a class can do, from the published dense
// (not sparse) peaks. A class key covers several cards (the H100 80GB is
// an SXM card at 989 TFLOPS fp16 or a PCIe one at 756): Peak is the
// slowest card's, for the longest time allowed, and Fastest the fastest
// card's fastest exact path (int8 or fp8 tensor cores with 32-bit
// accumulation, exact for entries in [-2, 2] too), for the shortest.
type Envelope struct {
	Class    string
	MemoryGB float64               // advertised per GPU, in 10^9 bytes; zero for a mock
	Peak     map[Precision]float64 // dense TFLOPS per GPU of the slowest card, per precision
	Fastest  float64               // dense TFLOPS per GPU of the fastest exact path

	// MinEfficiency is the least fraction of Peak a real run of the
	// product reaches (large square GEMMs reach 60-80%); zero: 0.4.
	MinEfficiency float64
	// Tolerance is how far under the peak time an answer may come
	// (clock boosts, timer grain); zero: 0.1.
	Tolerance float64
	// Setup is allowed for what does not grow with n (starting the
	// workload, the CUDA context); zero: 20 s.
	Setup time.Duration
	// EntryRate is the entries of C per second the O(n²) work goes at
	// (generating A and B, copying C off the GPU, hashing its rows);
	// zero: 1e9.
	EntryRate float64
	// FixedN is a mock class's n; zero for real classes, whose n fills
	// their memory (N).
	FixedN int
}

// Fill and floor of the memory a real class's challenge uses.
const (
	// FillFraction of the advertised memory is what N fills, leaving the
	// rest to the CUDA context, cuBLAS's workspace and the generator's
	// temporaries.
	FillFraction = 0.8
	// MinFill is the least fraction of the memory a challenge must use
	// for the class to be told apart from a card with less.
	MinFill = 0.5
	// MaxRTT caps the round trip credited to a provider: it can only make
	// its round trips look longer.
	MaxRTT = 2 * time.Second
)

// Published dense peaks, TFLOPS per GPU (fp16 and bf16 with fp32
// accumulation; tf32; fp32 without tensor cores), from the vendor's
// datasheets and architecture whitepapers. nvidia/calibrate.sh on a real
// card prints what it reaches against these.
var envelopes = []Envelope{
	// A100 SXM and PCIe share peaks; int8 624 TOPS.
	{Class: "nvidia-a100-40gb", MemoryGB: 40, Peak: peaks(312, 156, 19.5), Fastest: 624},
	{Class: "nvidia-a100-80gb", MemoryGB: 80, Peak: peaks(312, 156, 19.5), Fastest: 624},
	// H100 PCIe (756) up to H100 SXM (989; fp8/int8 1979).
	{Class: "nvidia-h100-80gb", MemoryGB: 80, Peak: peaks(756, 378, 51), Fastest: 1979},
	// H100 NVL.
	{Class: "nvidia-h100-94gb", MemoryGB: 94, Peak: peaks(835, 418, 60), Fastest: 1671},
	// H200 NVL (835) up to H200 SXM (989; fp8 1979).
	{Class: "nvidia-h200-141gb", MemoryGB: 141, Peak: peaks(835, 418, 60), Fastest: 1979},
	// B200 (HGX): fp8 and int8 4500.
	{Class: "nvidia-b200-180gb", MemoryGB: 180, Peak: peaks(2250, 1100, 75), Fastest: 4500},
	// GeForce cards run fp16 with fp32 accumulation at half their fp16
	// rate; int8 with int32 accumulation runs at the full rate.
	{Class: "nvidia-rtx-4090-24gb", MemoryGB: 24, Peak: peaks(165.2, 82.6, 82.6), Fastest: 660.6},
	{Class: "nvidia-rtx-3090-24gb", MemoryGB: 24, Peak: peaks(71, 35.6, 35.6), Fastest: 284},
	{Class: "nvidia-rtx-a6000-48gb", MemoryGB: 48, Peak: peaks(154.8, 77.4, 38.7), Fastest: 309.7},
	{Class: "nvidia-l4-24gb", MemoryGB: 24, Peak: peaks(121, 60, 30.3), Fastest: 242.5},
	{Class: "nvidia-l40s-48gb", MemoryGB: 48, Peak: peaks(362, 183, 91.6), Fastest: 733},
}

func peaks(half, tf32, fp32 float64) map[Precision]float64 {
	return map[Precision]float64{FP16: half, BF16: half, TF32: tf32, FP32: fp32}
}

// MockPrefix starts the class of a mock GPU: "mock-cpu", or "mock-" and
// a real class for the testnet's stand-ins of that class.
const MockPrefix = "mock-"

// CPUImage is the image of the CPU workload (cmd/challenge, static, in a
// FROM-scratch image): `make job-image` builds it, and a daemon runs its
// challenges in it unless its config names another.
const CPUImage = "aixblock/challenge:cpu"

// Mock is the envelope of a stand-in GPU that is a CPU: n is TestnetN,
// and any time from 0 to a CPU's at 1 GFLOPS (10% efficiency) plus Setup
// passes.
func Mock(class string) Envelope {
	return Envelope{Class: MockPrefix + strings.TrimPrefix(class, MockPrefix),
		Peak: peaks(0.001, 0.001, 0.001), Fastest: 1000, MinEfficiency: 0.1, FixedN: TestnetN}
}

// Classes lists the real classes with an envelope.
func Classes() []string {
	var out []string
	for _, e := range envelopes {
		out = append(out, e.Class)
	}
	slices.Sort(out)
	return out
}

// Lookup is the envelope of a class key (gpu.ClassKey's form), or of a
// mock class.
func Lookup(class string) (Envelope, error) {
	if strings.HasPrefix(class, MockPrefix) {
		return Mock(class), nil
	}
	for _, e := range envelopes {
		if e.Class == class {
			return e, nil
		}
	}
	return Envelope{}, fmt.Errorf("%w: no envelope for class %q (known: %s)", ErrEnvelope, class, strings.Join(Classes(), ", "))
}

// WorkingSet is the bytes one of g GPUs holds for the product: all of B
// and its share of A's and C's rows (C in 4-byte floats),
// n²·b + ⌈n/g⌉·n·(b+4) for b bytes per input entry.
func WorkingSet(n, g int, p Precision) uint64 {
	b, nn := p.inputBytes(), uint64(n)
	share := (nn + uint64(g) - 1) / uint64(g)
	return nn*nn*b + share*nn*(b+4)
}

// N is the n of a challenge for g GPUs of the class at precision p: the
// largest multiple of 256 (a tile size every GEMM library likes) whose
// WorkingSet fits in FillFraction of the memory; FixedN for a mock.
func (e Envelope) N(g int, p Precision) int {
	if e.FixedN > 0 {
		return e.FixedN
	}
	budget := uint64(FillFraction * e.MemoryGB * 1e9)
	b := float64(p.inputBytes())
	n := int(math.Sqrt(float64(budget)/(b+(b+4)/float64(g)))) / 256 * 256
	for n > 256 && WorkingSet(n, g, p) > budget {
		n -= 256
	}
	return min(n, MaxN)
}

func (e Envelope) defaults() Envelope {
	if e.MinEfficiency == 0 {
		e.MinEfficiency = 0.4
	}
	if e.Tolerance == 0 {
		e.Tolerance = 0.1
	}
	if e.Setup == 0 {
		e.Setup = 20 * time.Second
	}
	if e.EntryRate == 0 {
		e.EntryRate = 1e9
	}
	return e
}

// Window is the shortest and longest plausible time from seed to
// commitment, before any round trip: shortest, the product at g times
// the fastest peak, less the tolerance; longest, at g times the
// precision's peak at MinEfficiency, plus the O(n²) work at EntryRate,
// plus Setup.
func (e Envelope) Window(p Params) (lo, hi time.Duration) {
	e, p = e.defaults(), p.withDefaults()
	ops, g := Ops(p.N), float64(p.GPUs)
	fast := ops / (g * e.Fastest * 1e12) * (1 - e.Tolerance)
	slow := ops/(g*e.Peak[p.Precision]*1e12*e.MinEfficiency) + float64(p.N)*float64(p.N)/e.EntryRate
	return seconds(fast), seconds(slow) + e.Setup
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// Check judges a challenge's size and its time from seed to commitment,
// on the verifier's clock; rtt is the verifier's smallest measured round
// trip to the provider, credited up to MaxRTT.
func (e Envelope) Check(p Params, elapsed, rtt time.Duration) error {
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return err
	}
	if _, ok := e.Peak[p.Precision]; !ok {
		return fmt.Errorf("%w: %s has no %s peak", ErrEnvelope, e.Class, p.Precision)
	}
	if err := e.checkMemory(p); err != nil {
		return err
	}
	rtt = min(max(rtt, 0), MaxRTT)
	lo, hi := e.Window(p)
	rate := Ops(p.N) / max(elapsed-rtt, time.Nanosecond).Seconds() / 1e12
	who := fmt.Sprintf("%d %s", p.GPUs, e.Class)
	switch {
	case elapsed-rtt < lo:
		return fmt.Errorf("%w: n=%d in %v (%v round trip) is %.1f TFLOPS, faster than %s can go (%v at least): other hardware than claimed",
			ErrEnvelope, p.N, elapsed, rtt, rate, who, lo)
	case elapsed-rtt > hi:
		return fmt.Errorf("%w: n=%d in %v (%v round trip) is %.3g TFLOPS, slower than %s at %.0f%% of its %g TFLOPS %s peak (%v at most): CPU speed, fewer GPUs or a lesser card",
			ErrEnvelope, p.N, elapsed, rtt, rate, who, 100*e.defaults().MinEfficiency, e.Peak[p.Precision], p.Precision, hi)
	}
	return nil
}

// checkMemory refuses an n that does not fit the class, or is too small
// to tell it from a card with less memory. A mock has no memory to fill.
func (e Envelope) checkMemory(p Params) error {
	if e.FixedN > 0 {
		return nil
	}
	ws, mem := float64(WorkingSet(p.N, p.GPUs, p.Precision)), e.MemoryGB*1e9
	switch {
	case ws > mem:
		return fmt.Errorf("%w: n=%d needs %.1f GB per GPU, %s has %g GB", ErrEnvelope, p.N, ws/1e9, e.Class, e.MemoryGB)
	case ws < MinFill*mem:
		return fmt.Errorf("%w: n=%d uses %.2f GB of %s's %g GB per GPU, under %.0f%%: too small to tell it from a card with less (use n=%d)",
			ErrEnvelope, p.N, ws/1e9, e.Class, e.MemoryGB, 100*MinFill, e.N(p.GPUs, p.Precision))
	}
	return nil
}

// Check judges a challenge for the class key class (see Envelope.Check).
func Check(class string, p Params, elapsed, rtt time.Duration) error {
	e, err := Lookup(class)
	if err != nil {
		return err
	}
	return e.Check(p, elapsed, rtt)
}

// MockCPU is the class of a node that has no GPU and answers on its CPU.
const MockCPU = MockPrefix + "cpu"
