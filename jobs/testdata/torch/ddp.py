"""Two-node gloo DDP training from the launcher contract alone.

init_process_group("gloo") reads MASTER_ADDR, MASTER_PORT, WORLD_SIZE and
RANK from the environment (the env:// defaults), as under torchrun. Each
rank fits y = 3x - 1 on its own shard; DDP all-reduces the gradients, so
the ranks end with the same parameters. It prints the loss as it falls and
a "final" JSON line; rank 0 saves the model under /outputs.
"""
import json
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP


def main():
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    print(f"rank {rank} of {world} (node rank {os.environ.get('NODE_RANK')}, "
          f"local rank {os.environ.get('LOCAL_RANK')}), master "
          f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}", flush=True)
    torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts them)
    model = DDP(torch.nn.Linear(1, 1))
    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own shard
    x = torch.rand(256, 1, generator=gen) * 2 - 1
    y = 3 * x - 1 + 0.01 * torch.randn(256, 1, generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    losses = []
    for step in range(int(os.environ.get("STEPS", "60"))):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.6f}", flush=True)
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(params) for _ in range(world)]
    dist.all_gather(gathered, params)
    equal = all(torch.equal(g, gathered[0]) for g in gathered)
    out = {"rank": rank, "first_loss": losses[0], "last_loss": losses[-1],
           "params": params.tolist(), "ranks_equal": equal}
    print("final " + json.dumps(out), flush=True)
    if rank == 0:
        torch.save(model.module.state_dict(), "/outputs/model.pt")
        with open("/outputs/final.json", "w") as f:
            json.dump(out, f)
    dist.destroy_process_group()
    if not equal or losses[-1] >= losses[0]:
        raise SystemExit("ranks disagree or the loss did not fall")


if __name__ == "__main__":
    main()
