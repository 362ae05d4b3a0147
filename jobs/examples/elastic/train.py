"""Elastic gloo DDP training that resumes from /checkpoints.

Run it as an elastic distributed job (jobs/examples/elastic.yaml: nodes 3,
min_nodes 2, a checkpoint spec). Every generation of the gang starts this
script again with the new launcher contract (WORLD_SIZE, RANK,
MASTER_ADDR...) and the job's latest checkpoint in /checkpoints, so it
loads the model, the optimizer and the step from there and goes on.

Rank 0 writes the checkpoint every CKPT_STEPS steps, atomically: to a dot
name, which the daemon leaves out of the checkpoint, then renamed into
place. It prints "start world W", "resumed from step S loss L world W",
"step N loss X world W" every LOG_STEPS steps (its own shard's loss, the
same shard in every generation), and a "final" JSON line; it saves the
model under /outputs. CKPT_DIR and OUT_DIR move both directories (for runs
outside a container).
"""
import json
import os
import time

ENV = os.environ


def setting(name, default, kind=int):
    return kind(ENV.get(name, default))


def resume(path, model, opt):
    """Loads the checkpoint at path into model and opt, and returns its step
    and loss: (0, None) when there is none."""
    import torch
    if not os.path.exists(path):
        return 0, None
    ck = torch.load(path)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    return ck["step"], ck["loss"]


def save(path, model, opt, step, loss):
    """Writes the checkpoint under a dot name, then renames it into place,
    so the daemon never adds a half-written one."""
    import torch
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                "step": step, "loss": loss}, tmp)
    os.replace(tmp, path)


def shard(rank):
    """Rank's own 256 samples of y = x.w + b (4 features), the same in every
    generation: the ranks share the minimum, so the loss keeps falling
    whatever the membership."""
    import torch
    gen = torch.Generator().manual_seed(100 + rank)
    x = torch.rand(256, 4, generator=gen) * 2 - 1
    y = x @ torch.tensor([[3.0], [-2.0], [1.5], [0.5]]) - 1
    return x, y + 0.01 * torch.randn(256, 1, generator=gen)


def main():
    world, rank = setting("WORLD_SIZE", "1"), setting("RANK", "0")
    if rank == 0:  # before torch loads: a generation cut short still shows
        print(f"start world {world}", flush=True)
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo")
    ckpt_dir = ENV.get("CKPT_DIR", "/checkpoints")
    ckpt = os.path.join(ckpt_dir, "ckpt.pt")
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    # A small step, so the loss falls for the whole run rather than
    # reaching its floor before the first checkpoint.
    opt = torch.optim.SGD(model.parameters(), lr=setting("LR", "0.0005", float), momentum=0.9)
    first, loss = resume(ckpt, model, opt)
    if rank == 0:
        print(f"resumed from step {first} loss {loss} world {world}", flush=True)
    ddp = DDP(model)  # broadcasts rank 0's parameters: the ranks start equal
    x, y = shard(rank)
    steps, every, log = setting("STEPS", "1000"), setting("CKPT_STEPS", "20"), setting("LOG_STEPS", "10")
    delay = setting("STEP_DELAY_MS", "0") / 1000
    for step in range(first, steps):
        opt.zero_grad()
        out = torch.nn.functional.mse_loss(ddp(x), y)
        out.backward()
        opt.step()
        loss = out.item()
        if rank == 0 and step % log == 0:
            print(f"step {step} loss {loss:.6f} world {world}", flush=True)
        if rank == 0 and (step + 1) % every == 0 and os.path.isdir(ckpt_dir):
            save(ckpt, model, opt, step + 1, loss)
        time.sleep(delay)
    finish(model, rank, world, first, loss)
    dist.destroy_process_group()


def finish(model, rank, world, first, loss):
    """Prints the final line; rank 0 saves the model."""
    import torch
    out = {"rank": rank, "world": world, "resumed_from": first, "last_loss": loss}
    print("final " + json.dumps(out), flush=True)
    if rank == 0:
        out_dir = ENV.get("OUT_DIR", "/outputs")
        torch.save(model.state_dict(), os.path.join(out_dir, "model.pt"))
        with open(os.path.join(out_dir, "final.json"), "w") as f:
            json.dump(out, f)


if __name__ == "__main__":
    main()
