"""The scheduler sweep behind the sampling defaults: prompt fidelity and seconds per image for each
(scheduler, steps) on one model, with stock diffusers' defaults on the same captions as the first row."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.sample import STOCK_STEPS
from ldm.config import load_config
from ldm.data.dataset import build_dataset
from ldm.errors import LdmError
from ldm.evaluate import Reference, caption_sample, topk_hits
from ldm.folders import STOCK_GUIDANCE
from ldm.metrics import image_features
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.sampler import load_sampling_model
from ldm.sampling.schedulers import stock_scheduler_name

SWEEP = (("euler-a", 8), ("euler-a", 12), ("euler-a", 14), ("euler-a", 16), ("euler-a", 20),
         ("dpmpp-2m", 8), ("dpmpp-2m", 12), ("dpmpp-2m", 16), ("dpmpp-2m-karras", 12), ("unipc", 12),
         ("euler", 16), ("ddim", 20))


def scheduler_sweep(model_dir: str | Path, config: str | Path | None, captions: int = 96,
                    sweep=SWEEP, stock: bool = True) -> list[dict]:
    """Prompt fidelity and seconds per image for each (scheduler, steps), on one model and caption sample.

    With stock, the first row is stock diffusers' defaults on the same captions (the folder's scheduler,
    50 steps, guidance 7.5, fp32): the fidelity that a faster default must equal.
    """
    model = load_sampling_model(model_dir, "cpu")
    cfg = load_config(config or Path(model_dir) / "ldm_config.yaml")
    reference = Reference.from_datasets([build_dataset(cfg.data, "train"), build_dataset(cfg.data, "heldout")])
    indices = caption_sample(reference, captions)
    if not indices:
        raise LdmError("the dataset has no unique captions to measure prompt fidelity with")
    specs = [ImageSpec(reference.captions[i], k) for k, i in enumerate(indices)]
    own = reference.features[indices]
    runs = [(model, Settings(steps=steps, scheduler=name), name) for name, steps in sweep]
    stock_name = stock_scheduler_name(model.base_scheduler_config) if stock else None
    if stock_name is not None:
        stock_model = load_sampling_model(model_dir, "cpu", precision="fp32")
        settings = Settings(steps=STOCK_STEPS, scheduler=stock_name, guidance_scale=STOCK_GUIDANCE)
        runs.insert(0, (stock_model, settings, f"stock ({stock_name})"))
    rows = []
    for sampler, settings, label in runs:
        start = time.perf_counter()
        images = sampler.generate(specs, settings, batch_size=16)
        seconds = (time.perf_counter() - start) / len(specs)
        feats = image_features(images)
        top1, top5 = topk_hits(feats, reference, indices)
        resolved = sampler.resolve(settings)
        rows.append({"scheduler": label, "steps": resolved.steps, "guidance": resolved.guidance_scale,
                     "precision": sampler.precision, "top1": top1, "top5": top5,
                     "own_distance": float((feats - own).norm(dim=1).mean()), "s_per_image": seconds})
    return rows


def format_sweep(rows: list[dict]) -> str:
    """The sweep as a table."""
    lines = [f"{'scheduler':<18} {'steps':>5} {'CFG':>4} {'precision':>9} {'top-1':>6} {'top-5':>6} {'own dist':>8} "
             f"{'s/image':>7}"]
    lines += [f"{r['scheduler']:<18} {r['steps']:>5} {r['guidance']:>4g} {r['precision']:>9} {r['top1']:>6.3f} "
              f"{r['top5']:>6.3f} {r['own_distance']:>8.3f} {r['s_per_image']:>7.3f}" for r in rows]
    return "\n".join(lines)
