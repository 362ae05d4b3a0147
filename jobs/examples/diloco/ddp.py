"""Plain DDP on the WAN task: the baseline the DiLoCo example is measured
against (make bench-wan), same model, data and inner optimizer.

Every step all-reduces the fp32 gradients (DDP's hooks during backward),
so every step pays the link's round trips and the model's size in bytes.
Its compute time is measured apart: a few forward and backward passes
under no_sync() (no communication) before training, times the steps, plus
the optimizer steps timed in the loop.
"""
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

import task


def calibrate(model, data, n=11):
    """The median forward and backward time without communication (the
    median, as a busy machine's descheduling makes outliers)."""
    gen = torch.Generator().manual_seed(7)  # leaves the training stream alone
    took = []
    with model.no_sync():
        for _ in range(n):
            start = task.now()
            x, y = data.batch(gen)
            task.loss_of(model, x, y).backward()
            took.append(task.now() - start)
    model.zero_grad(set_to_none=True)
    return sorted(took)[n // 2]


def main():
    rank, _ = task.hello("ddp")
    cfg = task.Config()
    model = DDP(task.make_model(cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    data = task.Data(cfg, rank)
    start_eval = task.held_out_loss(model.module, data)
    fwd_bwd = calibrate(model, data)
    stepping = 0.0
    start = task.now()
    for step in range(cfg.steps):
        x, y = data.batch()
        opt.zero_grad(set_to_none=True)
        loss = task.loss_of(model, x, y)
        loss.backward()  # the all-reduce of every gradient bucket
        t = task.now()
        opt.step()
        stepping += task.now() - t
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.6f}", flush=True)
    wall = task.now() - start
    timing = {"wall_s": wall, "compute_s": cfg.steps * fwd_bwd + stepping}
    task.finish(model.module, data, cfg, timing, {"mode": "ddp", "bits": 32, "start_eval_loss": start_eval})


if __name__ == "__main__":
    main()
