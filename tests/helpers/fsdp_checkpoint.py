"""An FSDP-sharded tiny UNet through ldm's checkpoints, on CPU: run under `accelerate launch` with 2 processes.

Accelerate runs FSDP only on accelerators (on CPU it falls back to DDP), while torch shards on CPU over gloo:
so the UNet is sharded here with torch's own `fully_shard`, as Accelerate's FSDP2 plugin does on GPUs, and
goes through the same `save_checkpoint` / `load_checkpoint` a training run calls.

Checks, exiting non-zero on the first failure: 3 steps, a checkpoint, 3 more steps; a fresh model resumed from
the checkpoint reaches the same weights after the same 3 steps, bit for bit; the checkpoint holds safetensors
only and loads into a plain, unsharded UNet. argv[1]: the folder for the checkpoints.
"""

import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from ldm.config import load_config
from ldm.models import build_unet
from ldm.train.checkpoints import TrainingState, load_checkpoint, save_checkpoint

TINY = Path(__file__).resolve().parents[1].parent / "configs" / "tiny.yaml"
cfg = load_config(TINY)
accelerator = Accelerator(cpu=True)
mesh = init_device_mesh("cpu", (accelerator.num_processes,))
rank = accelerator.process_index


def sharded_run(seed: int) -> TrainingState:
    """A tiny UNet sharded block by block and whole, its AdamW and LR schedule prepared by Accelerate."""
    torch.manual_seed(seed)
    unet = build_unet(cfg.unet, 4, 8, 384)
    for block in [*unet.down_blocks, *unet.up_blocks]:
        fully_shard(block, mesh=mesh)
    fully_shard(unet, mesh=mesh)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 4))
    optimizer, schedule = accelerator.prepare(optimizer, schedule)
    return TrainingState(models=[unet], optimizer=optimizer, lr_scheduler=schedule)


def train(state: TrainingState, steps: range) -> None:
    """Steps of a denoising-shaped loss on data that depends only on the step and this process's rank."""
    unet = state.models[0]
    for step in steps:
        g = torch.Generator().manual_seed(1000 * step + rank)
        latents, context = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 6, 384, generator=g)
        noise = torch.randn(2, 4, 8, 8, generator=g)
        pred = unet(latents + noise, torch.tensor([step * 50 + 1] * 2), context).sample
        torch.nn.functional.mse_loss(pred, noise).backward()
        state.optimizer.step()
        state.lr_scheduler.step()
        state.optimizer.zero_grad()


def full(state: TrainingState) -> dict:
    """The whole UNet's weights (every process takes part; each gets the whole)."""
    return get_model_state_dict(state.models[0], options=StateDictOptions(full_state_dict=True))


def check(ok: bool, what: str) -> None:
    if not ok:
        print(f"FAILED on process {rank}: {what}", flush=True)
        sys.exit(1)


root = Path(sys.argv[1])
first = sharded_run(seed=0)
train(first, range(3))
path = save_checkpoint(accelerator, root, 3, cfg, 2, first)
at_three = {k: v.clone() for k, v in full(first).items()}
train(first, range(3, 6))
expected = full(first)

resumed = sharded_run(seed=1)  # other initial weights: everything must come from the checkpoint
check(load_checkpoint(accelerator, path, resumed) == 3, "step read back")
check(all(torch.equal(at_three[k], v) for k, v in full(resumed).items()), "weights restored")
train(resumed, range(3, 6))
got = full(resumed)
check(expected.keys() == got.keys(), "same parameters")
check(all(torch.equal(expected[k], got[k]) for k in expected), "resumed run matches the uninterrupted one")

if accelerator.is_main_process:
    names = sorted(p.name for p in path.iterdir())
    check(all(n.endswith((".safetensors", ".json", ".yaml")) for n in names), f"no pickles: {names}")
    plain = build_unet(cfg.unet, 4, 8, 384)
    plain.load_state_dict(load_file(str(path / "model.safetensors")))  # strict: every name, every shape
    check(all(torch.equal(plain.state_dict()[k], at_three[k]) for k in at_three), "loads into a plain UNet")
accelerator.wait_for_everyone()
print(f"fsdp checkpoint ok on process {rank}", flush=True)
