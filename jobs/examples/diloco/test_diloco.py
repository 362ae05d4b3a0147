"""Checks of diloco.py's arithmetic: quantize and dequantize, the ranks'
average in 16 and 8 bits (one rank, then two processes), and the outer
Nesterov step against the same step done by hand. Run by the jobs
package's TestDiLoCoScript: python3 -m unittest -v test_diloco.
"""
import os
import tempfile
import unittest

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import diloco


def _join(path, rank, world):
    dist.init_process_group("gloo", init_method="file://" + path, rank=rank, world_size=world)


def _two_ranks(rank, path, out):
    """A rank of the two-process test: each sends its own deltas."""
    _join(path, rank, 2)
    deltas = [torch.full((3,), float(rank + 1)), torch.tensor([0.5 * rank, -1.0])]
    for bits in (16, 8):
        torch.save(diloco.average(deltas, bits, 2), f"{out}-{bits}-{rank}")
    dist.destroy_process_group()


class Quantize(unittest.TestCase):
    def test_round_trip_within_half_a_step(self):
        t = torch.randn(1000, generator=torch.Generator().manual_seed(1)) * 3
        codes, scale = diloco.quantize_int8(t)
        self.assertEqual(codes.dtype, torch.int8)
        self.assertEqual(codes.abs().max().item(), 127)
        err = (diloco.dequantize_int8(codes, scale) - t).abs().max().item()
        self.assertLessEqual(err, scale / 2 + 1e-6)
        self.assertAlmostEqual(scale, t.abs().max().item() / 127, places=6)

    def test_zero_tensor(self):
        codes, scale = diloco.quantize_int8(torch.zeros(5))
        self.assertTrue(torch.equal(diloco.dequantize_int8(codes, scale), torch.zeros(5)))


class OneRank(unittest.TestCase):
    def setUp(self):
        self.path = tempfile.mktemp()
        _join(self.path, 0, 1)

    def tearDown(self):
        dist.destroy_process_group()

    def test_average_of_one_is_the_round_trip(self):
        a, b = torch.randn(4, 3), torch.randn(7)
        got16 = diloco.average([a, b], 16, 1)
        self.assertTrue(torch.equal(got16, torch.cat([a.flatten(), b]).half().float()))
        got8 = diloco.average([a, b], 8, 1)
        want8 = torch.cat([diloco.dequantize_int8(*diloco.quantize_int8(t.flatten())) for t in (a, b)])
        self.assertTrue(torch.allclose(got8, want8, atol=1e-7))
        with self.assertRaises(ValueError):
            diloco.average([a], 32, 1)


class TwoRanks(unittest.TestCase):
    def test_both_ranks_get_the_mean(self):
        with tempfile.TemporaryDirectory() as d:
            # fork: the children have torch imported already (spawn imports it again, seconds each)
            mp.start_processes(_two_ranks, args=(os.path.join(d, "store"), os.path.join(d, "out")), nprocs=2, start_method="fork")
            # rank 0 sends [1,1,1],[0,-1]; rank 1 [2,2,2],[0.5,-1]
            want = torch.tensor([1.5, 1.5, 1.5, 0.25, -1.0])
            for bits, tol in ((16, 1e-3), (8, 2.0 / 127)):
                r0, r1 = (torch.load(os.path.join(d, f"out-{bits}-{r}")) for r in (0, 1))
                self.assertTrue(torch.equal(r0, r1), f"{bits} bits: ranks differ: {r0} {r1}")
                self.assertTrue(torch.allclose(r0, want, atol=tol), f"{bits} bits: {r0}, want {want}")


class OuterStep(unittest.TestCase):
    def test_nesterov_by_hand(self):
        model = torch.nn.Linear(2, 1)
        outer = diloco.Outer(model, lr=0.7, momentum=0.9)
        g0 = [p.detach().clone() for p in model.parameters()]
        d1 = [torch.full_like(p, 0.1) for p in g0]
        d2 = [torch.full_like(p, -0.3) for p in g0]
        with torch.no_grad():  # local training moved the model by -d1
            for p, d in zip(model.parameters(), d1):
                p.sub_(d)
        deltas = outer.deltas(model)
        for got, d in zip(deltas, d1):
            self.assertTrue(torch.allclose(got, d))
        outer.step(model, torch.cat([d.flatten() for d in deltas]))
        # Nesterov: buf = d1; g1 = g0 - lr (d1 + m buf)
        g1 = [g - 0.7 * (d + 0.9 * d) for g, d in zip(g0, d1)]
        for p, want in zip(model.parameters(), g1):
            self.assertTrue(torch.allclose(p, want), f"{p} want {want}")
        outer.step(model, torch.cat([d.flatten() for d in d2]))
        # buf = m d1 + d2; g2 = g1 - lr (d2 + m buf)
        g2 = [g - 0.7 * (b + 0.9 * (0.9 * a + b)) for g, a, b in zip(g1, d1, d2)]
        for p, g, want in zip(model.parameters(), outer.params, g2):
            self.assertTrue(torch.allclose(p, want), f"{p} want {want}")
            self.assertTrue(torch.equal(p.detach(), g.detach()), "the model restarts from the global parameters")


if __name__ == "__main__":
    unittest.main()
