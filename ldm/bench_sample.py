"""Sampling speed and memory: ldm's defaults against stock StableDiffusionPipeline defaults on the same model.

"stock" loads the exported folder (scripts/export.py) with plain diffusers and calls the pipeline with
nothing but prompts and generators: its own scheduler from the folder, 50 steps, guidance 7.5, fp32.
"ours" loads the model through ldm and samples with ldm's defaults (scheduler, steps, autocast
precision). Each mode runs in its own process so that peak RSS is its own. The UNet's achieved
GFLOP/s is set against this machine's measured fp32 and bf16 matmul rates.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ldm.bench import busy_cpus, machine_info, reset_rss_peak, rss_peak_mb
from ldm.bench_options import SAMPLE_MODES
from ldm.errors import LdmError

TARGET_SAMPLE_SPEEDUP = 5.0
STOCK_STEPS = 50  # StableDiffusionPipeline's default num_inference_steps
PROMPTS = ("grinning face", "red apple", "flag: Japan", "cat face", "thumbs up", "fire", "pizza", "rocket")


def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 10, max_s: float = 1.0) -> float:
    """This machine's dense matmul rate in GFLOP/s for one dtype (the ceiling a UNet can approach).

    Stops after max_s seconds: a CPU that emulates bf16 takes ~2 s for one product."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    done, start = 0, time.perf_counter()
    while done < repeats and (done == 0 or time.perf_counter() - start < max_s):
        torch.mm(a, b)
        done += 1
    return 2 * n**3 * done / (time.perf_counter() - start) / 1e9


def matmul_rates(threads: int | None = None) -> dict[str, float]:
    """This machine's fp32 and bf16 matmul GFLOP/s, on `threads` torch threads (default: as set now)."""
    if threads:
        torch.set_num_threads(threads)
    return {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}


class UNetMeter:
    """Times every UNet forward (hooks) and counts one forward's FLOPs, for achieved GFLOP/s."""

    def __init__(self, unet: torch.nn.Module):
        self.unet, self.seconds, self.calls, self.flops_per_call, self._start = unet, 0.0, 0, None, 0.0
        self._hooks = [unet.register_forward_pre_hook(self._before), unet.register_forward_hook(self._after)]

    def _before(self, module, args):
        self._start = time.perf_counter()

    def _after(self, module, args, output):
        self.seconds += time.perf_counter() - self._start
        self.calls += 1

    def count_flops(self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> None:
        """FLOPs of one forward at the batch the pipeline uses (the meter's timing is paused)."""
        for h in self._hooks:
            h.remove()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            self.unet(sample, timestep, context)
        self.flops_per_call = counter.get_total_flops()

    def gflops(self) -> float | None:
        """Achieved GFLOP/s over the timed forwards."""
        if not self.calls or not self.flops_per_call or not self.seconds:
            return None
        return self.flops_per_call * self.calls / self.seconds / 1e9


def bench_sample(mode: str, model: str | Path, export: str | Path, num_images: int = 8,
                 threads: int | None = None) -> dict:
    """Generate num_images images once (after one untimed warm-up image) and report time and memory."""
    if threads:
        torch.set_num_threads(threads)
    busy = busy_cpus()
    reset_rss_peak()
    prompts = [PROMPTS[k % len(PROMPTS)] for k in range(num_images)]
    start = time.perf_counter()
    if mode == "stock":
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(export, local_files_only=True)
        pipe.set_progress_bar_config(disable=True)
        from ldm.folders import STOCK_GUIDANCE

        unet, settings = pipe.unet, {"steps": STOCK_STEPS, "guidance": STOCK_GUIDANCE,
                                     "scheduler": type(pipe.scheduler).__name__, "precision": "fp32"}

        def run(ps, seed):
            return pipe(list(ps), generator=[torch.Generator().manual_seed(seed + k) for k in range(len(ps))],
                        output_type="np").images
    else:
        from ldm.sampling.requests import ImageSpec, Settings
        from ldm.sampling.sampler import load_sampling_model

        sampler = load_sampling_model(model, "cpu")
        s = sampler.resolve(Settings())
        unet, pipe = sampler.pipe.unet, sampler.pipe
        settings = {"steps": s.steps, "guidance": s.guidance_scale, "scheduler": s.scheduler,
                    "precision": sampler.precision}

        def run(ps, seed):
            return sampler.generate([ImageSpec(p, seed + k) for k, p in enumerate(ps)], s, batch_size=len(ps))
    load_s = time.perf_counter() - start
    run(prompts[:1], 1000)  # warm-up: first-call allocations and kernel selection
    meter = UNetMeter(unet)
    start = time.perf_counter()
    run(prompts, 0)
    wall = time.perf_counter() - start
    cfg = unet.config
    h = w = cfg.sample_size
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if settings["precision"] == "bf16"
                else contextlib.nullcontext())
    context_dim = cfg.cross_attention_dim
    tokens = pipe.tokenizer.model_max_length
    with autocast:
        meter.count_flops(torch.randn(2 * num_images, cfg.in_channels, h, w), torch.tensor(500),
                          torch.randn(2 * num_images, tokens, context_dim))
    return {
        "mode": mode, **settings, "num_images": num_images, "wall_s": wall, "load_s": load_s,
        "unet_s": meter.seconds, "unet_calls": meter.calls, "unet_gflops": meter.gflops(),
        "peak_rss_mb": rss_peak_mb(), "machine": {**machine_info(), "busy_cpus_before": busy},
    }


def format_sample_report(results: list[dict], model: str, rates: dict) -> str:
    """The table and the stock/ours ratios printed by `scripts/benchmark.py sample`."""
    m = results[0]["machine"]
    lines = [
        f"Sampling benchmark, {model}: {results[0]['num_images']} images in one batch",
        f"machine: {m['cpu']}, {m['cpu_count']} CPUs, torch {m['torch']} with {m['torch_threads']} threads; "
        f"matmul {rates['fp32']:.0f} GFLOP/s fp32, {rates['bf16']:.0f} GFLOP/s bf16",
        "",
        f"{'mode':<6} {'scheduler':<24} {'steps':>5} {'CFG':>4} {'precision':>9} {'wall s':>7} {'s/image':>7} "
        f"{'UNet s':>7} {'UNet GFLOP/s':>12} {'of matmul':>9} {'peak RSS MB':>11}",
    ]
    for r in results:
        rate = rates["bf16" if r["precision"] == "bf16" else "fp32"]
        g = r["unet_gflops"]
        lines.append(
            f"{r['mode']:<6} {r['scheduler']:<24} {r['steps']:>5} {r['guidance']:>4g} {r['precision']:>9} "
            f"{r['wall_s']:>7.2f} {r['wall_s'] / r['num_images']:>7.2f} {r['unet_s']:>7.2f} "
            f"{(g or 0):>12.1f} {(g or 0) / rate:>9.0%} {r['peak_rss_mb']:>11,.0f}"
        )
    by_mode = {r["mode"]: r for r in results}
    if set(by_mode) == set(SAMPLE_MODES):
        speed = by_mode["stock"]["wall_s"] / by_mode["ours"]["wall_s"]
        verdict = "meets" if speed >= TARGET_SAMPLE_SPEEDUP else "below"
        lines += ["", f"ours vs stock: {speed:.2f}x faster ({verdict} the {TARGET_SAMPLE_SPEEDUP:g}x target), "
                      f"{by_mode['ours']['peak_rss_mb'] / by_mode['stock']['peak_rss_mb']:.2f}x peak RSS"]
    busy = [r["machine"].get("busy_cpus_before") for r in results]
    if any(b is not None and b > 0.25 for b in busy):
        lines.append(f"warning: other processes kept up to {max(b or 0 for b in busy):.1f} CPUs busy; "
                     "timings and ratios are unreliable")
    return "\n".join(lines)


SWEEP = (("euler-a", 8), ("euler-a", 12), ("euler-a", 14), ("euler-a", 16), ("euler-a", 20),
         ("dpmpp-2m", 8), ("dpmpp-2m", 12), ("dpmpp-2m", 16), ("dpmpp-2m-karras", 12), ("unipc", 12),
         ("euler", 16), ("ddim", 20))


def scheduler_sweep(model_dir: str | Path, config: str | Path | None, captions: int = 96,
                    sweep=SWEEP, stock: bool = True) -> list[dict]:
    """Prompt fidelity and seconds per image for each (scheduler, steps), on one model and caption sample.

    With stock, the first row is stock diffusers' defaults on the same captions (the folder's scheduler,
    50 steps, guidance 7.5, fp32): the fidelity that a faster default must equal.
    """
    from ldm.config import load_config
    from ldm.data.dataset import build_dataset
    from ldm.evaluate import Reference, caption_sample, image_features, topk_hits
    from ldm.folders import STOCK_GUIDANCE
    from ldm.sampling.requests import ImageSpec, Settings
    from ldm.sampling.sampler import load_sampling_model
    from ldm.sampling.schedulers import stock_scheduler_name

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
