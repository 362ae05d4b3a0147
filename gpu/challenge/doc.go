// Package challenge is the proof-of-GPU compute challenge: a provider
// shows that it has the GPUs it advertises by multiplying two large
// matrices it could not have prepared, fast enough for the class it
// claims, and the verifier checks the product with a small fraction of
// the work.
//
// # Protocol
//
//  1. Challenge (verifier → provider): a fresh 32-byte seed, n, the GPU
//     count g and the precision. The verifier's clock starts.
//  2. The provider derives A and B (n×n) from the seed, computes C = A·B
//     on its GPUs, and sends a Commitment: the Merkle root of C's rows.
//     The verifier's clock stops; Envelope judges the time.
//  3. Query (verifier → provider), only now: the seed of a random vector
//     r in [0, P)^n, P = 2^61-1. Answer: y = C·r mod P. The verifier
//     checks y == A·(B·r) mod P.
//  4. Open (verifier → provider), only now: k distinct random rows.
//     One Opening per row: the row and its Merkle path. The verifier
//     checks that the row is in the committed tree, that it equals
//     A_i·B (recomputed exactly), and that row·r == y_i.
//
// Verifier runs the verifier's side step by step; Prover the provider's
// (Compute on the CPU, OpenOutput from a workload's output directory);
// Exchange runs both in one process through the wire encodings. Each
// failure wraps one of ErrReplay, ErrNotCommitted, ErrWrongRow, ErrWrongY,
// ErrProtocol, ErrInvalid or ErrEnvelope, with the row, column and values
// that failed.
//
// # Generator and exactness
//
// Entry c = i·n + j of matrix m (A or B) is the (c+1)-th output of
// SplitMix64 seeded with the first 8 bytes of SHA-256(tag, seed, n, m),
// its high 32 bits mod 5, minus 2: an integer in [-2, 2]. Counter-based,
// so any rows can be made anywhere in any order (nvidia/challenge.py
// makes them with int64 tensor operations and matches byte for byte).
// Such entries are exact in fp16, bf16, tf32, fp32 and fp8; a product of
// two is at most 4 and every partial sum is an integer of magnitude at
// most 4n, exact in fp32 accumulation while 4n < 2^24: n < 2^22
// (ExactN). MaxN is 2^19. The output must be fp32: a product returned in
// the inputs' format rounds (bf16 output, measured with PyTorch: 2.4% of
// rows wrong at n = 1024, all of them at n = 4096; fp16 output from
// about n = 65536), and is refused like any wrong product.
//
// The precision cannot be enforced: every exact path gives the same C,
// and a provider may use its fastest (int8 or fp8 tensor cores). It
// picks the peak the slowest allowed time is computed from.
//
// # Commitment
//
// A row is its n entries as int32 little-endian (EncodeRow). The tree is
// RFC 6962's: leaf SHA-256(0x00 || row), node SHA-256(0x01 || l || r),
// an odd last node carried up. The commitment echoes the seed and n, so
// a commitment replayed from another challenge is refused as ErrReplay;
// an old root under the new seed fails the row checks.
//
// # Bounds
//
// A committed product wrong in a fraction f of its rows passes k row
// checks with probability at most (1-f)^k (PassBound; rows drawn without
// replacement only lower it). DefaultRows is k = 40: a product wrong in
// half its rows (half the work, half the GPUs, a lower precision that
// rounds) passes with 2^-40. For any f, k = ⌈40 / -log2(1-f)⌉ rows give
// 2^-40 (RowsFor): 97 rows for f = 1/4, 264 for f = 1/10, 2759 for f =
// 1/100; with k = 40, f = 1/10 passes 1.5% of the time. Computing rows
// only once asked does not help: the root was fixed before.
//
// A y that is not A·B·r is refused outright; a y computed from a C
// wrong in some row passes the Freivalds check with probability 1/P =
// 2^-61 per wrong row, so a provider can only answer y = A·(B·r), which
// it can compute in O(n²) without C: y alone proves no work. Together
// with row·r == y_i it ties each opened row to r; since the verifier also
// compares each opened row with A_i·B exactly, the bound above is the
// row checks'.
//
// # Costs
//
// The provider does n³ multiply-adds and generates 2n² entries. The
// verifier never holds A or B: one sweep over B's rows gives B·r and the
// k rows A_i·B, one sweep over A's rows gives A·(B·r); (k+2)·n²
// multiply-adds, 2n² generated entries, O(k·n) memory, and it may run
// while the provider computes (Verifier.Prepare). Counting a generated
// entry as one multiply-add, the verifier's share is about (k+4)/n
// (CostOf): 0.27% at n = 16384, 0.049% at n = 89344 (an 80 GB card),
// under 1% for every n ≥ 4400 at k = 40. The messages are bounded by n:
// y is 8n bytes, an opening 4n plus its path.
//
// # Envelope
//
// The verifier times seed to commitment on its own clock. Envelope holds
// a class's published dense peaks and memory (A100, H100, H200, B200,
// RTX 4090, 3090 and A6000, L4, L40S; Mock for CPU-speed stand-ins on a
// testnet, n = TestnetN). Its window for n on g GPUs at precision p is
//
//	shortest = 2n³ / (g · Fastest) · (1 - Tolerance)
//	longest  = 2n³ / (g · Peak[p] · MinEfficiency) + n² / EntryRate + Setup
//
// with Fastest the fastest exact path of the fastest card the class key
// covers, Peak the slowest card's, MinEfficiency 0.4, EntryRate 1e9
// entries/s for the O(n²) work (generation, copy, hashing), Setup 20 s.
// Check refuses a time outside the window (the round trip credited up to
// MaxRTT) and an n whose working set, n²·b + ⌈n/g⌉·n·(b+4) bytes per GPU
// for b bytes per input entry, exceeds the memory or fills less than
// MinFill of it. N picks n: the largest multiple of 256 whose working set
// fits FillFraction (80%) of the memory; 89344 for an H100 80GB at fp16.
//
// What the window tells apart, and what it does not: a CPU from a GPU at
// fp16 (the H100's n at a generous 5 TFLOPS takes 285 s; the window ends
// at 33 s); g GPUs from fewer when the fewer run slower than the
// allowance (Setup and the O(n²) term hide about 28 s at the H100's n,
// so one H100 at full speed passes for eight); not neighbouring classes
// (an A100 at the H100's n takes 5 to 7 s). At fp32 the slower cards'
// windows reach a big CPU's time: time at fp16 or bf16. Memory is shown
// weakly: an out-of-core product streams tiles over PCIe, which the
// window catches only where the transfers exceed the allowance.
// nvidia/calibrate.sh measures a real card against its window, to tune
// these.
//
// # Workloads
//
// cmd/challenge is the CPU workload (static, for an image built FROM
// scratch) and an offline verifier; nvidia/ holds the PyTorch-on-CUDA
// workload, its Dockerfile and calibrate.sh. Both write the same output
// directory: leaves.bin, rows.bin (optional: a provider may recompute
// opened rows, Recomputed), then root.hex.
//
// Imports: internal/canon (the project's canonical CBOR) and
// internal/atomicfile; no other aixblock package.
package challenge
