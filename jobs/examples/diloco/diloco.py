"""DiLoCo on the WAN task: training that talks once every H steps.

Each rank runs the inner optimizer (AdamW, its state kept across rounds)
for H local steps with no communication. Then the ranks average their
parameter change since the last round, the pseudo-gradient
(global - local), sent in 16 bits (fp16 all-reduce) or 8 bits (int8 with
one scale per tensor, all-gathered and summed), and each applies the same
outer step to the global parameters: SGD with Nesterov momentum (lr 0.7,
momentum 0.9, as in the DiLoCo paper). Every rank then starts the next
round from the new global parameters, so they stay equal.

It needs nothing but the launcher contract (MASTER_ADDR, MASTER_PORT,
WORLD_SIZE, RANK) and gloo, so it runs as a plain distributed job. Knobs
(environment) beyond task.py's: INNER_STEPS (H, 50), BITS (16 or 8, 16),
OUTER_LR (0.7), OUTER_MOMENTUM (0.9).
"""
import os

import torch
import torch.distributed as dist

import task


def quantize_int8(t):
    """t as int8 codes and one scale: t ~ codes * scale, |error| <= scale/2."""
    scale = t.abs().max().item() / 127.0
    if scale == 0.0:
        scale = 1.0  # an all-zero tensor: zero codes, any scale
    codes = torch.round(t / scale).clamp_(-127, 127).to(torch.int8)
    return codes, scale


def dequantize_int8(codes, scale):
    return codes.to(torch.float32) * scale


def average_fp16(flat, world):
    """The ranks' mean of flat, summed in fp16 by gloo's all-reduce."""
    half = flat.to(torch.float16)
    dist.all_reduce(half)
    return half.to(torch.float32) / world


def average_int8(tensors, world):
    """The ranks' mean of each tensor, sent as int8 with a per-tensor scale.

    int8 sums overflow, so the codes are all-gathered and every rank sums
    the dequantized deltas itself, in rank order, and gets the same bits.
    """
    quantized = [quantize_int8(t) for t in tensors]
    codes = torch.cat([c.flatten() for c, _ in quantized])
    scales = torch.tensor([s for _, s in quantized], dtype=torch.float32)
    all_codes = [torch.empty_like(codes) for _ in range(world)]
    all_scales = [torch.empty_like(scales) for _ in range(world)]
    dist.all_gather(all_codes, codes)
    dist.all_gather(all_scales, scales)
    sizes = [t.numel() for t in tensors]
    total = [torch.zeros(n) for n in sizes]
    for rank_codes, rank_scales in zip(all_codes, all_scales):
        for i, c in enumerate(torch.split(rank_codes, sizes)):
            total[i] += dequantize_int8(c, rank_scales[i].item())
    return torch.cat(total) / world


def average(deltas, bits, world):
    """The ranks' mean of the list of tensors deltas, as one flat tensor."""
    if bits == 16:
        return average_fp16(torch.cat([d.flatten() for d in deltas]), world)
    if bits == 8:
        return average_int8([d.flatten() for d in deltas], world)
    raise ValueError(f"BITS={bits}: want 16 or 8")


class Outer:
    """The global parameters and their Nesterov-momentum SGD."""

    def __init__(self, model, lr=0.7, momentum=0.9):
        self.params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
        self.opt = torch.optim.SGD(self.params, lr=lr, momentum=momentum, nesterov=True)

    def deltas(self, model):
        """The pseudo-gradient: global minus local, per tensor."""
        return [g.detach() - p.detach() for g, p in zip(self.params, model.parameters())]

    def step(self, model, avg):
        """Applies the averaged pseudo-gradient avg (flat) and restarts
        model from the new global parameters."""
        offset = 0
        for g in self.params:
            n = g.numel()
            g.grad = avg[offset:offset + n].view_as(g).clone()
            offset += n
        self.opt.step()
        with torch.no_grad():
            for g, p in zip(self.params, model.parameters()):
                p.copy_(g)


def sync(model, outer, bits, world):
    """One outer step; returns the seconds spent communicating."""
    start = task.now()
    avg = average(outer.deltas(model), bits, world)
    took = task.now() - start
    outer.step(model, avg)
    return took


def main():
    rank, world = task.hello("diloco")
    cfg = task.Config()
    h = int(os.environ.get("INNER_STEPS", "50"))
    bits = int(os.environ.get("BITS", "16"))
    model = task.make_model(cfg)
    outer = Outer(model, float(os.environ.get("OUTER_LR", "0.7")),
                  float(os.environ.get("OUTER_MOMENTUM", "0.9")))
    inner = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    data = task.Data(cfg, rank)
    start_eval = task.held_out_loss(model, data)
    compute = comm = 0.0
    rounds = 0
    start = task.now()
    for step in range(cfg.steps):
        t = task.now()
        x, y = data.batch()
        inner.zero_grad(set_to_none=True)
        loss = task.loss_of(model, x, y)
        loss.backward()
        inner.step()
        compute += task.now() - t
        if (step + 1) % h == 0 or step + 1 == cfg.steps:
            comm += sync(model, outer, bits, world)
            rounds += 1
            print(f"round {rounds} (step {step + 1}) loss {loss.item():.6f}", flush=True)
    wall = task.now() - start
    task.finish(model, data, cfg, {"wall_s": wall, "compute_s": compute},
                {"mode": "diloco", "bits": bits, "inner_steps": h, "rounds": rounds,
                 "comm_s": comm, "start_eval_loss": start_eval})


if __name__ == "__main__":
    main()
