"""Sampling speed and memory: ldm's defaults against stock StableDiffusionPipeline defaults on the same model.

"stock" loads the exported folder (scripts/export.py) with plain diffusers and calls the pipeline with
nothing but prompts and generators: its own scheduler from the folder, 50 steps, guidance 7.5, fp32.
"ours" loads the model with ldm.sampling.sampler.load_sampling_model and calls its generate with ldm's
defaults (scheduler, steps, autocast precision). Each mode runs in its own process so that peak RSS is its
own. The UNet's achieved GFLOP/s is set against this machine's measured fp32 and bf16 matmul rates.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.machine import busy_cpus, machine_info, reset_rss_peak, rss_peak_mb
from ldm.folders import STOCK_GUIDANCE

TARGET_SPEEDUPS = {"ours": 5.0, "student": 25.0}  # per image against stock diffusers' defaults
STOCK_STEPS = 50  # StableDiffusionPipeline's default num_inference_steps
PROMPTS = ("grinning face", "red apple", "flag: Japan", "cat face", "thumbs up", "fire", "pizza", "rocket")


class UNetMeter:
    """Times every UNet forward (hooks) and counts one forward's FLOPs, for achieved GFLOP/s."""

    def __init__(self, unet: torch.nn.Module):
        self.unet, self.seconds, self.calls, self.flops_per_call, self._start = unet, 0.0, 0, None, 0.0
        # latent rows over all calls, and in the counted call: FLOPs scale with the batch, which differs
        # between calls when several image counts are timed
        self.rows, self.counted_rows = 0, 0
        self.call_shapes: tuple[torch.Size, torch.Size] | None = None  # latents, text states of the first call
        self._hooks = [unet.register_forward_pre_hook(self._before, with_kwargs=True),
                       unet.register_forward_hook(self._after)]

    def _before(self, module, args, kwargs):
        if self.call_shapes is None:
            context = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
            self.call_shapes = (args[0].shape, context.shape) if context is not None else None
        self.rows += args[0].shape[0]
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
        self.counted_rows = sample.shape[0]

    def total_flops(self) -> float:
        """FLOPs of every timed forward, from the counted one scaled by the rows each call had."""
        return self.flops_per_call / self.counted_rows * self.rows if self.counted_rows else 0.0

    def gflops(self) -> float | None:
        """Achieved GFLOP/s over the timed forwards."""
        if not self.calls or not self.flops_per_call or not self.seconds:
            return None
        return self.total_flops() / self.seconds / 1e9


@contextlib.contextmanager
def first_unet() -> Iterator[list[UNet2DConditionModel]]:
    """Catch the first UNet called inside the block: the one a pipeline really runs, found without reaching
    into the pipeline (the global hook slows every module call, so only untimed work runs under it)."""
    seen: list[UNet2DConditionModel] = []

    def hook(module, args):
        if not seen and isinstance(module, UNet2DConditionModel):
            seen.append(module)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def decode_flops(vae: torch.nn.Module, latent_shape: tuple[int, ...]) -> int:
    """FLOPs of decoding one image's latents (every mode decodes each image once, batched or not)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        vae.decode(torch.randn(1, *latent_shape[1:]))
    return counter.get_total_flops()


def bench_sample(mode: str, model: str | Path, export: str | Path, num_images: int | Sequence[int] = 8,
                 threads: int | None = None) -> dict:
    """Generate each count of images once (after one untimed warm-up image) and report time and memory.

    With two counts, s/image is the marginal time between them (what each further image costs: loading,
    first-call set-up and per-call work cancel); with one, the count's wall time over its images.
    """
    counts = [num_images] if isinstance(num_images, int) else list(num_images)
    if threads:
        torch.set_num_threads(threads)
    busy = busy_cpus()
    reset_rss_peak()
    prompts = [PROMPTS[k % len(PROMPTS)] for k in range(max(counts))]
    start = time.perf_counter()
    pipe, settings, run, decoder = _stock_runner(export) if mode == "stock" else _ldm_runner(model)
    load_s = time.perf_counter() - start
    with first_unet() as seen:
        run(prompts[:1], 1000)  # warm-up: first-call allocations and kernel selection
    unet = seen[0]
    meter = UNetMeter(unet)
    walls = []
    for n in counts:
        start = time.perf_counter()
        run(prompts[:n], 0)
        walls.append(time.perf_counter() - start)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if settings["precision"] == "bf16"
                else contextlib.nullcontext())
    sample_shape, context_shape = meter.call_shapes
    with autocast:
        meter.count_flops(torch.randn(sample_shape), torch.tensor(500), torch.randn(context_shape))
        vae_flops = decode_flops(decoder, sample_shape)
    gflop_per_image = (meter.total_flops() / sum(counts) + vae_flops) / 1e9
    marginal = (walls[-1] - walls[0]) / (counts[-1] - counts[0]) if len(counts) > 1 else walls[0] / counts[0]
    return {
        "mode": mode, **settings, "num_images": counts, "walls_s": walls, "wall_s": sum(walls), "load_s": load_s,
        "s_per_image": marginal, "gflop_per_image": gflop_per_image,
        "unet_s": meter.seconds, "unet_calls": meter.calls, "unet_gflops": meter.gflops(),
        "peak_rss_mb": rss_peak_mb(), "machine": {**machine_info(), "busy_cpus_before": busy},
    }


def _stock_runner(export: str | Path) -> tuple[object, dict, Callable[[list[str], int], object], object]:
    """Stock diffusers on the exported folder at its defaults: the pipeline, its settings, a run(prompts, seed) and
    the VAE that decodes."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(export, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    settings = {"steps": STOCK_STEPS, "guidance": STOCK_GUIDANCE, "scheduler": type(pipe.scheduler).__name__,
                "precision": "fp32", "decoder": "full"}

    def run(ps, seed):
        return pipe(list(ps), generator=[torch.Generator().manual_seed(seed + k) for k in range(len(ps))],
                    output_type="np").images

    return pipe, settings, run, pipe.vae


def _ldm_runner(model: str | Path) -> tuple[object, dict, Callable[[list[str], int], object], object]:
    """ldm's sampler at the folder's own defaults: its pipeline, the settings, a run(prompts, seed) and the VAE that
    decodes (the folder's tiny one where the defaults say so)."""
    from ldm.sampling.requests import Settings, seeded_specs
    from ldm.sampling.sampler import load_sampling_model

    sampler = load_sampling_model(model, "cpu")
    s = sampler.resolve(Settings())
    settings = {"steps": s.steps, "guidance": s.guidance_scale, "scheduler": s.scheduler,
                "precision": sampler.precision, "decoder": s.decoder}

    def run(ps, seed):
        return sampler.generate(seeded_specs(ps, seed), s, batch_size=len(ps))

    return sampler.pipe, settings, run, sampler.decoding_vae(s)


def format_sample_report(results: list[dict], model: str, rates: dict) -> str:
    """The table and the ratios against stock printed by `scripts/benchmark.py sample`."""
    m = results[0]["machine"]
    counts = results[0]["num_images"]
    timed = (f"marginal time per image between {counts[0]} and {counts[-1]} images, each count in one batch"
             if len(counts) > 1 else f"{counts[0]} images in one batch")
    lines = [
        f"Sampling benchmark, {model}: {timed}",
        f"machine: {m['cpu']}, {m['cpu_count']} CPUs, torch {m['torch']} with {m['torch_threads']} threads; "
        f"matmul {rates['fp32']:.0f} GFLOP/s fp32, {rates['bf16']:.0f} GFLOP/s bf16",
        "",
        f"{'mode':<7} {'scheduler':<24} {'steps':>5} {'CFG':>4} {'precision':>9} {'VAE':<5} {'wall s':>7} "
        f"{'s/image':>7} "
        f"{'GFLOP/image':>11} {'UNet s':>7} {'UNet GFLOP/s':>12} {'of matmul':>9} {'peak RSS MB':>11}",
    ]
    for r in results:
        rate = rates["bf16" if r["precision"] == "bf16" else "fp32"]
        g = r["unet_gflops"]
        lines.append(
            f"{r['mode']:<7} {r['scheduler']:<24} {r['steps']:>5} {r['guidance']:>4g} {r['precision']:>9} "
            f"{r.get('decoder', 'full'):<5} {r['wall_s']:>7.2f} {r['s_per_image']:>7.3f} "
            f"{r['gflop_per_image']:>11.1f} {r['unet_s']:>7.2f} "
            f"{(g or 0):>12.1f} {(g or 0) / rate:>9.0%} {r['peak_rss_mb']:>11,.0f}"
        )
    by_mode = {r["mode"]: r for r in results}
    if "stock" in by_mode:
        stock = by_mode["stock"]
        lines.append("")
        for mode, target in TARGET_SPEEDUPS.items():
            if mode not in by_mode:
                continue
            r = by_mode[mode]
            speed = stock["s_per_image"] / r["s_per_image"]
            verdict = "meets" if speed >= target else "below"
            # at equal arithmetic rates a mode is faster by its FLOP ratio at most: the ceiling a target
            # set on a CPU where ours computes in bf16 and stock in fp32 can be checked against
            ceiling = stock["gflop_per_image"] / r["gflop_per_image"]
            lines.append(f"{mode} vs stock: {speed:.2f}x faster ({verdict} the {target:g}x target), "
                         f"{ceiling:.2f}x fewer FLOPs an image, {r['peak_rss_mb'] / stock['peak_rss_mb']:.2f}x "
                         "peak RSS")
    busy = [r["machine"].get("busy_cpus_before") for r in results]
    if any(b is not None and b > 0.25 for b in busy):
        lines.append(f"warning: other processes kept up to {max(b or 0 for b in busy):.1f} CPUs busy; "
                     "timings and ratios are unreliable")
    return "\n".join(lines)
