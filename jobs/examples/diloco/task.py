"""The task both WAN examples train, so that they compare: a regression MLP
and its data, plus what both print at the end.

Each rank draws its own batches (seed 100 + rank) of x ~ N(0, I) labelled by
a fixed random teacher network; the loss is the mean squared error, and the
final one is measured on a held-out set every rank draws alike. The model is
big enough (HIDDEN 512: about 300k parameters, 1.2 MB in fp32) that moving
its gradients over a WAN link costs more than computing them on a CPU.

Knobs (environment): STEPS (inner steps per rank, 300), BATCH (per rank,
32), DIM (64), HIDDEN (512), LR (inner AdamW, 1e-3), OUTPUT_DIR (/outputs,
where rank 0 saves the model when it exists).
"""
import json
import os
import time

import torch
import torch.distributed as dist


class Config:
    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.steps = int(env.get("STEPS", "300"))
        self.batch = int(env.get("BATCH", "32"))
        self.dim = int(env.get("DIM", "64"))
        self.hidden = int(env.get("HIDDEN", "512"))
        self.lr = float(env.get("LR", "1e-3"))
        self.output_dir = env.get("OUTPUT_DIR", "/outputs")


def make_model(cfg):
    # The same initial weights on every rank, as DDP and DiLoCo both need.
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(cfg.dim, cfg.hidden), torch.nn.ReLU(),
        torch.nn.Linear(cfg.hidden, cfg.hidden), torch.nn.ReLU(),
        torch.nn.Linear(cfg.hidden, 1))


def _teacher(cfg):
    torch.manual_seed(1234)
    t = torch.nn.Sequential(torch.nn.Linear(cfg.dim, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    for p in t.parameters():
        p.requires_grad_(False)
    return t


class Data:
    """A rank's endless stream of batches, and the shared held-out set."""

    def __init__(self, cfg, rank):
        self.cfg = cfg
        self.teacher = _teacher(cfg)
        self.gen = torch.Generator().manual_seed(100 + rank)

    def batch(self, gen=None):
        x = torch.randn(self.cfg.batch, self.cfg.dim, generator=gen or self.gen)
        return x, self.teacher(x)

    def held_out(self):
        x = torch.randn(1024, self.cfg.dim, generator=torch.Generator().manual_seed(999))
        return x, self.teacher(x)


def loss_of(model, x, y):
    return torch.nn.functional.mse_loss(model(x), y)


def held_out_loss(model, data):
    with torch.no_grad():
        x, y = data.held_out()
        return loss_of(model, x, y).item()


def flat_params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def now():
    return time.perf_counter()


def finish(model, data, cfg, timing, extra):
    """Prints the "final" JSON line (every rank) and saves rank 0's model.

    timing holds wall_s (the training loop) and compute_s (the local work
    inside it); extra adds what the example wants to say, start_eval_loss
    (the held-out loss before training) among it. It fails the process
    when the ranks disagree or the held-out loss did not fall.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    params = flat_params(model)
    gathered = [torch.zeros_like(params) for _ in range(world)]
    dist.all_gather(gathered, params)
    equal = all(torch.equal(g, gathered[0]) for g in gathered)
    eval_loss = held_out_loss(model, data)
    wall, compute = timing["wall_s"], timing["compute_s"]
    out = {"rank": rank, "world": world, "steps": cfg.steps,
           "samples": cfg.steps * cfg.batch * world, "params": params.numel(),
           "wall_s": wall, "step_s": wall / max(cfg.steps, 1), "compute_s": compute,
           "util": compute / wall if wall > 0 else 0.0,
           "eval_loss": eval_loss, "ranks_equal": equal}
    out.update(extra)
    print("final " + json.dumps(out), flush=True)
    if rank == 0 and os.path.isdir(cfg.output_dir):
        torch.save(model.state_dict(), os.path.join(cfg.output_dir, "model.pt"))
        with open(os.path.join(cfg.output_dir, "final.json"), "w") as f:
            json.dump(out, f)
    dist.destroy_process_group()
    if not equal or (cfg.steps > 0 and not eval_loss < extra["start_eval_loss"]):
        raise SystemExit("ranks disagree or the held-out loss did not fall")


def hello(name):
    """Joins the group from the launcher contract (env://) and says so."""
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    print(f"{name}: rank {rank} of {world}, master "
          f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}", flush=True)
    return rank, world
