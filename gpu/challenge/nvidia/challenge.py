#!/usr/bin/env python3
"""The compute challenge on NVIDIA GPUs: C = A·B for a seed and n, committed.

Same generator, row encoding, Merkle tree and output directory as the Go
package (gpu/challenge) and its CPU program (cmd/challenge), byte for
byte: leaves.bin, rows.bin (unless --rows 0), then root.hex. A and B hold
integers in [-2, 2], exact in fp16, bf16 and fp32; C is accumulated and
returned in fp32 (|C_ij| <= 4n < 2^24: exact), so every GPU, every
precision and the CPU agree.

The rows of A are split over exactly the visible GPUs (--gpus, when
given, must match), one thread each; every GPU makes all of B and its
rows of A itself. fp16 and bf16 need PyTorch 2.8 or later on CUDA
(torch.mm with out_dtype=float32); --device cpu computes in fp32 and is
for testing the format. One JSON line on stdout gives the phases' times.
"""
import argparse
import hashlib
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

GOLDEN, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
MATRIX_TAG = b"aixblock-challenge/v1/matrix\x00"
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "tf32": torch.float32, "fp32": torch.float32}
GEN_ELEMENTS = 1 << 25  # entries generated at once: 256 MiB of int64 per temporary
COPY_ROWS_BYTES = 1 << 30  # C goes to the host in pieces of about this size


def s64(x):
    """x mod 2^64 as a signed int64, which torch multiplies with wrap-around."""
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >> 63 else x


def matrix_key(seed, n, m):
    d = hashlib.sha256(MATRIX_TAG + seed + n.to_bytes(4, "little") + bytes([m])).digest()
    return s64(int.from_bytes(d[:8], "little"))


def lsr(z, s):
    """Logical right shift of int64 z (torch's >> is arithmetic)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def gen_rows(key, n, i0, i1, device):
    """Rows [i0, i1): entry c = i*n + j is SplitMix64's (c+1)-th output from key, high 32 bits mod 5, minus 2."""
    z = torch.arange(i0 * n + 1, i1 * n + 1, dtype=torch.int64, device=device)
    z.mul_(s64(GOLDEN)).add_(key)
    z ^= lsr(z, 30)
    z.mul_(s64(MIX1))
    z ^= lsr(z, 27)
    z.mul_(s64(MIX2))
    z ^= lsr(z, 31)
    return (lsr(z, 32).remainder_(5) - 2).view(i1 - i0, n)


def gen_matrix(key, n, r0, r1, dtype, device):
    out = torch.empty((r1 - r0, n), dtype=dtype, device=device)
    step = max(1, GEN_ELEMENTS // n)
    for i in range(r0, r1, step):
        j = min(i + step, r1)
        out[i - r0:j - r0] = gen_rows(key, n, i, j, device)
    return out


def multiply(a, b):
    """The product in fp32: fp16/bf16 inputs accumulate and return fp32, never their own format, which rounds."""
    if a.dtype == torch.float32:
        return torch.mm(a, b)
    try:
        return torch.mm(a, b, out_dtype=torch.float32)  # PyTorch 2.8 and later, on CUDA
    except TypeError:  # an older PyTorch: no out_dtype (an out-of-memory error is not caught)
        return multiply_blocked(a, b)


def multiply_blocked(a, b):
    """Without out_dtype: K-blocks short enough that each block's product is exact in the inputs' own
    format (|partial| <= 4*kb, exact up to 2048 in fp16 and 256 in bf16), summed in fp32. Slower."""
    kb = (2048 if a.dtype == torch.float16 else 256) // 4
    rows = max(1, (1 << 28) // b.shape[1])  # bounds each partial product to 2^28 entries
    c = torch.zeros((a.shape[0], b.shape[1]), dtype=torch.float32, device=a.device)
    for i in range(0, a.shape[0], rows):
        for k in range(0, a.shape[1], kb):
            c[i:i + rows] += torch.mm(a[i:i + rows, k:k + kb], b[k:k + kb])
    return c


def leaf(row):
    h = hashlib.sha256(b"\x00")
    h.update(memoryview(row))  # hashlib lets go of the GIL on long inputs: threads hash in parallel
    return h.digest()


def merkle_root(leaves):
    """RFC 6962's tree: pairs left to right, an odd last node carried up."""
    level = leaves
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


class Run:
    def __init__(self, args, devices):
        self.args, self.devices = args, devices
        self.seed, self.n = bytes.fromhex(args.seed), args.n
        self.leaves = [None] * self.n
        self.rows_fd = None
        self.phases = {}
        self.lock = threading.Lock()
        self.hashers = ThreadPoolExecutor(max_workers=os.cpu_count() or 4)

    def phase(self, name, seconds):
        with self.lock:
            self.phases[name] = max(self.phases.get(name, 0.0), seconds)

    def on_device(self, index, device):
        """Generates B and this device's rows of A, multiplies, then hashes and writes its rows of C."""
        n, g = self.n, len(self.devices)
        share = (n + g - 1) // g
        r0, r1 = min(index * share, n), min((index + 1) * share, n)
        if r0 == r1:
            return
        dtype = DTYPES[self.args.precision] if device.type == "cuda" else torch.float32
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        t = time.perf_counter()
        b = gen_matrix(matrix_key(self.seed, n, 1), n, 0, n, dtype, device)
        a = gen_matrix(matrix_key(self.seed, n, 0), n, r0, r1, dtype, device)
        sync()
        self.phase("generate_s", time.perf_counter() - t)
        t = time.perf_counter()
        c = multiply(a, b)
        sync()
        self.phase("multiply_s", time.perf_counter() - t)
        del a, b
        t = time.perf_counter()
        self.commit_rows(c, r0)
        self.phase("commit_s", time.perf_counter() - t)

    def commit_rows(self, c, r0):
        n = self.n
        step = max(1, COPY_ROWS_BYTES // (4 * n))
        for i in range(0, c.shape[0], step):
            part = c[i:i + step].to(torch.int32).cpu().numpy().astype("<i4", copy=False)
            hashes = self.hashers.map(leaf, part)
            for k, h in enumerate(hashes):
                self.leaves[r0 + i + k] = h
            if self.rows_fd is not None:
                os.pwrite(self.rows_fd, part.tobytes(), (r0 + i) * 4 * n)

    def run(self):
        out = self.args.out
        if self.args.rows:
            self.rows_fd = os.open(os.path.join(out, "rows.bin.tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with ThreadPoolExecutor(max_workers=len(self.devices)) as pool:
            for f in [pool.submit(self.on_device, i, d) for i, d in enumerate(self.devices)]:
                f.result()
        write(os.path.join(out, "leaves.bin"), b"".join(self.leaves))
        if self.rows_fd is not None:
            os.fsync(self.rows_fd)
            os.close(self.rows_fd)
            os.replace(os.path.join(out, "rows.bin.tmp"), os.path.join(out, "rows.bin"))
        root = merkle_root(self.leaves).hex()
        write(os.path.join(out, "root.hex"), (root + "\n").encode())
        return root


def write(path, data):
    with open(path + ".tmp", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def visible_devices(args):
    if args.device == "cpu":
        return [torch.device("cpu")]
    count = torch.cuda.device_count()
    if count == 0:
        sys.exit("challenge: no CUDA device visible")
    if args.gpus and args.gpus != count:
        sys.exit(f"challenge: the challenge names {args.gpus} GPUs, {count} are visible")
    # Exactness: no reduced-precision reductions, tf32 only when asked.
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
    return [torch.device("cuda", i) for i in range(count)]


def parse():
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", default=env("CHALLENGE_SEED", ""), help="64 hex digits")
    p.add_argument("--n", type=int, default=int(env("CHALLENGE_N", "512")))
    p.add_argument("--out", default=env("CHALLENGE_OUT", "/outputs"))
    p.add_argument("--rows", type=int, default=int(env("CHALLENGE_ROWS", "1")), help="0: no rows.bin")
    p.add_argument("--gpus", type=int, default=int(env("CHALLENGE_GPUS", "0")), help="GPUs the challenge names; 0: any")
    p.add_argument("--precision", default=env("CHALLENGE_PRECISION", "fp16"), choices=sorted(DTYPES))
    p.add_argument("--device", default=env("CHALLENGE_DEVICE", "cuda"), choices=["cuda", "cpu"])
    args = p.parse_args()
    if len(args.seed) != 64 or not 1 <= args.n < 1 << 22:
        p.error("want a 64-hex-digit seed and 1 <= n < 2^22")
    return args


def main():
    args = parse()
    devices = visible_devices(args)
    start = time.perf_counter()
    run = Run(args, devices)
    root = run.run()
    total = time.perf_counter() - start
    ops = 2.0 * args.n ** 3
    mm = run.phases.get("multiply_s", 0.0)
    print(json.dumps({
        "n": args.n, "root": root, "gpus": len(devices), "precision": args.precision, "seconds": total,
        "device": torch.cuda.get_device_name(0) if devices[0].type == "cuda" else "cpu",
        "tflops_total": ops / total / 1e12, "tflops_multiply_per_gpu": ops / len(devices) / mm / 1e12 if mm else None,
        **run.phases,
    }), flush=True)


if __name__ == "__main__":
    main()
