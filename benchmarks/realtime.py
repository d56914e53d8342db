"""Walk and morph frame rates: the few-step student, its teacher and stock diffusers, with the time split.

Each mode renders a 48-frame seed walk and a 48-frame prompt morph at the model's size and writes them as
the CLI does (frame PNGs, GIF, MP4):
  student  ldm's render_walk on the distilled folder at its defaults (LCMScheduler, a few steps, no CFG pass)
  teacher  ldm's render_walk on the teacher at its defaults
  stock    plain StableDiffusionPipeline on the exported teacher at diffusers' defaults (its folder's
           scheduler, 50 steps, guidance 7.5, fp32), fed the same blended noise and embeddings a walk uses
Module hooks split the time into text encoder, UNet, VAE decode and the rest; writing is timed apart.

The student also renders a seed walk end to end as `scripts/sample.py --interpolate-seeds 1 2 3` does
(ldm.render.render_animation: frame PNGs as batches finish, then grid, GIF and MP4) at two frame counts:
the marginal frames/s between them (loading and first calls cancel), where one profiled walk's time went
(cProfile), and its arithmetic a frame, which with the machine's matmul rate bounds the frames/s.
"""

from __future__ import annotations

import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.machine import busy_cpus, machine_info
from ldm.folders import STOCK_GUIDANCE

TARGET_FPS = 20.0
TARGET_STOCK_SPEEDUP = 25.0
STOCK_STEPS = 50
FRAMES = 48
WALK = ("cat face", (1, 2))
MORPH = (("grinning face", "cat face"), 1)
CLI_WALK = ("cat face", (1, 2, 3))
CLI_FRAMES = 8  # the shorter of the end-to-end walk's two lengths
# where an end-to-end walk's time goes: (file suffix, function) whose cumulative profile time is each part's
PROFILE_PARTS = {
    "UNet": ("unet_2d_condition.py", "forward"),
    "VAE decode": ("ldm/sampling/vae.py", "decode"),
    "PNG frames": ("ldm/media.py", "save_png"),
    "grid": ("ldm/media.py", "make_grid"),
    "GIF": ("ldm/media.py", "save_gif"),
    "MP4": ("ldm/media.py", "save_mp4"),
}


class Stopwatch:
    """Seconds spent inside each named module's forward (pre/post hooks), accumulated."""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.seconds = dict.fromkeys(modules, 0.0)
        self._hooks = []
        for name, module in modules.items():
            start = {}

            def before(mod, args, start=start):
                start["t"] = time.perf_counter()

            def after(mod, args, output, name=name, start=start):
                self.seconds[name] += time.perf_counter() - start["t"]

            self._hooks += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]

    def reset(self) -> None:
        """Zero every counter."""
        self.seconds = dict.fromkeys(self.seconds, 0.0)


def _ours(folder: str, decoder: str | None = None):
    from ldm.sampling.requests import Settings
    from ldm.sampling.sampler import load_sampling_model
    from ldm.sampling.walks import render_walk

    model = load_sampling_model(folder, "cpu")
    settings = model.resolve(Settings(decoder=decoder))

    def walk(prompts, seeds, frames):
        specs, images = render_walk(model, prompts, seeds, frames, settings)
        return images, [model.parameters_text(sp, settings) for sp in specs]

    info = {"scheduler": settings.scheduler, "steps": settings.steps, "guidance": settings.guidance_scale,
            "precision": model.precision, "decoder": settings.decoder}
    return model.pipe, walk, info, model.decoding_vae(settings).decoder


def _stock(export: str):
    from diffusers import StableDiffusionPipeline

    from ldm.sampling.interpolate import blend, path_positions
    from ldm.sampling.noise import NoiseSource, SeedBlend
    from ldm.sampling.walks import spec_at

    pipe = StableDiffusionPipeline.from_pretrained(export, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    size, channels = pipe.unet.config.sample_size, pipe.unet.config.in_channels

    def walk(prompts, seeds, frames, batch=8):
        # the frames a walk asks for (ldm's spec_at): blended starting noise and slerped prompt embeddings, as
        # ldm morphs with a full model (stock diffusers has no prediction blend)
        specs = [spec_at(u, prompts, seeds, morph_mode="slerp")
                 for u in path_positions(frames, max(len(prompts), len(seeds)))]
        with torch.no_grad():
            embeds = {p: pipe.encode_prompt(p, "cpu", 1, False)[0] for p in prompts}
            negative = pipe.encode_prompt("", "cpu", 1, False)[0]
        images = []
        for start in range(0, frames, batch):
            chunk = specs[start:start + batch]
            source = NoiseSource([SeedBlend(sp.seed, sp.variation_seed, sp.variation_strength) for sp in chunk])
            latents = source.randn((len(chunk), channels, size, size))
            cond = torch.cat([embeds[sp.prompt] if sp.morph_to is None else
                              blend(embeds[sp.prompt], embeds[sp.morph_to], sp.morph_t, sp.morph_mode) for sp in chunk])
            images.append(pipe(prompt_embeds=cond, negative_prompt_embeds=negative.expand(len(chunk), -1, -1),
                               latents=latents, num_inference_steps=STOCK_STEPS, guidance_scale=STOCK_GUIDANCE,
                               output_type="pt").images)
        return torch.cat(images), ["stock diffusers"] * frames

    info = {"scheduler": type(pipe.scheduler).__name__, "steps": STOCK_STEPS, "guidance": STOCK_GUIDANCE,
            "precision": "fp32", "decoder": "full"}
    return pipe, walk, info, pipe.vae.decoder


def profile_split(stats: pstats.Stats, total_s: float) -> dict[str, float]:
    """Seconds of each PROFILE_PARTS part in a profile, and the rest as 'other'."""
    split = dict.fromkeys(PROFILE_PARTS, 0.0)
    for (file, _, function), (_, _, _, cumulative, _) in stats.stats.items():
        for part, (suffix, name) in PROFILE_PARTS.items():
            if function == name and file.replace("\\", "/").endswith(suffix):
                split[part] += cumulative
    split["other"] = total_s - sum(split.values())
    return split


def bench_cli_walk(folder: str, frames: tuple[int, int] = (CLI_FRAMES, FRAMES), rounds: int = 2,
                   decoder: str | None = None) -> dict:
    """A seed walk rendered and written as sample.py does it, at two lengths: marginal frames/s per round, one
    profiled walk's split, and the FLOPs a frame (decoder None: the model's, as sample.py's default)."""
    from ldm.render import render_animation
    from ldm.sampling.requests import Settings
    from ldm.sampling.sampler import load_sampling_model
    from ldm.sampling.walks import render_walk

    model = load_sampling_model(folder, "cpu")
    settings = model.resolve(Settings(decoder=decoder))
    prompt, seeds = CLI_WALK

    def walk(n: int) -> float:
        with tempfile.TemporaryDirectory(prefix="ldm-bench-") as tmp:
            start = time.perf_counter()
            render_animation(model, [prompt], list(seeds), n, settings, Path(tmp) / "walk")
            return time.perf_counter() - start

    walk(frames[0])  # warm-up: first-call allocations, kernel selection, the model hash, ffmpeg's first start
    fps = []
    for _ in range(rounds):
        short, long = walk(frames[0]), walk(frames[1])
        # noise can make the longer walk no slower on a tiny model: no rate then, rather than a negative one
        fps.append((frames[1] - frames[0]) / (long - short) if long > short else float("nan"))
    profile = cProfile.Profile()
    profile.enable()
    total = walk(frames[1])
    profile.disable()
    with FlopCounterMode(display=False) as counter:  # the arithmetic of 2 frames (UNet steps and decodes)
        render_walk(model, [prompt], list(seeds), 2, settings)
    return {"frames": list(frames), "fps": fps, "profiled_s": total,
            "split": profile_split(pstats.Stats(profile), total), "gflop_per_frame": counter.get_total_flops() / 2e9}


def bench_realtime(mode: str, folder: str, export: str | None = None, frames: int = FRAMES,
                   threads: int | None = None, cli_walk: bool = False) -> dict:
    """Render and write one seed walk and one prompt morph; frames/s and where the time went (cli_walk: also
    the end-to-end walk of bench_cli_walk)."""
    from ldm.media import write_animation

    if threads:
        torch.set_num_threads(threads)
    busy = busy_cpus()
    decoder = "full" if mode == "student-full" else None
    pipe, walk, info, decoding = _stock(export) if mode == "stock" else _ours(folder, decoder)
    watch = Stopwatch({"text encoder": pipe.text_encoder, "UNet": pipe.unet, "VAE decode": decoding})
    walk([WALK[0]], list(WALK[1]), 2)  # warm-up: first-call allocations and kernel selection
    result = {"mode": mode, **info, "frames": frames}
    for name, prompts, seeds in (("walk", [WALK[0]], list(WALK[1])), ("morph", list(MORPH[0]), [MORPH[1]])):
        watch.reset()
        start = time.perf_counter()
        images, parameters = walk(prompts, seeds, frames)
        render_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory(prefix="ldm-bench-") as tmp:
            start = time.perf_counter()
            write_animation(Path(tmp), images.float().cpu(), parameters)
            write_s = time.perf_counter() - start
        split = dict(watch.seconds)
        split["other"] = render_s - sum(split.values())
        split["writing"] = write_s
        result[name] = {"render_s": render_s, "fps": frames / render_s, "split": split}
    if cli_walk:
        result["cli_walk"] = bench_cli_walk(folder, (min(CLI_FRAMES, frames - 1), frames), decoder=decoder)
    result["machine"] = {**machine_info(), "busy_cpus_before": busy}
    return result


def format_cli_walk(walk: dict, rates: dict | None, precision: str) -> list[str]:
    """The end-to-end walk's lines: marginal frames/s per round, the profiled split, the arithmetic's bound."""
    short, long = walk["frames"]
    fps = " / ".join(f"{f:.1f}" for f in walk["fps"])
    lines = [f"student seed walk as sample.py writes it (--interpolate-seeds {' '.join(map(str, CLI_WALK[1]))}; "
             f"marginal {short} -> {long} frames; frame PNGs, grid, GIF, MP4): {fps} frames/s in "
             f"{len(walk['fps'])} rounds ({'meets' if min(walk['fps']) >= TARGET_FPS else 'below'} the "
             f"{TARGET_FPS:g} frames/s target)",
             f"  where a {long}-frame walk's {walk['profiled_s']:.2f} s went (cProfile): "
             + ", ".join(f"{part} {s / walk['profiled_s']:.0%}" for part, s in walk["split"].items())]
    if rates:
        rate = rates["bf16" if precision == "bf16" else "fp32"]
        lines.append(f"  {walk['gflop_per_frame']:.1f} GFLOP a frame: at this machine's {precision} matmul rate "
                     f"({rate:.0f} GFLOP/s) the arithmetic alone allows {rate / walk['gflop_per_frame']:.1f} "
                     "frames/s")
    return lines


def format_realtime_report(results: list[dict], rates: dict | None = None) -> str:
    """The frame rates, the time split and the ratios printed by `scripts/benchmark.py realtime`."""
    m = results[0]["machine"]
    lines = [f"Walk/morph benchmark: {results[0]['frames']} frames each, rendered then written (PNG, GIF, MP4)",
             f"machine: {m['cpu']}, {m['cpu_count']} CPUs, torch {m['torch']} with {m['torch_threads']} threads", "",
             f"{'mode':<12} {'scheduler':<24} {'steps':>5} {'CFG':>4} {'prec':>5} {'VAE':<5} {'kind':<6} "
             f"{'frames/s':>8} {'s/frame':>8} {'text':>6} {'UNet':>6} {'VAE':>6} {'other':>6} {'write s':>8}"]
    for r in results:
        for kind in ("walk", "morph"):
            k = r[kind]
            s = k["split"]
            lines.append(f"{r['mode']:<12} {r['scheduler']:<24} {r['steps']:>5} {r['guidance']:>4g} "
                         f"{r['precision']:>5} {r.get('decoder', 'full'):<5} {kind:<6} {k['fps']:>8.1f} "
                         f"{1 / k['fps']:>8.3f} "
                         + " ".join(f"{s[p] / k['render_s']:>6.0%}" for p in ("text encoder", "UNet", "VAE decode",
                                                                              "other"))
                         + f" {s['writing']:>8.2f}")
    by_mode = {r["mode"]: r for r in results}
    if "student" in by_mode:
        student = by_mode["student"]
        fps = min(student["walk"]["fps"], student["morph"]["fps"])
        lines += ["", f"student: {fps:.1f} frames/s at the slower of walk and morph "
                      f"({'meets' if fps >= TARGET_FPS else 'below'} the {TARGET_FPS:g} frames/s target)"]
        if "cli_walk" in student:
            lines += format_cli_walk(student["cli_walk"], rates, student["precision"])
        full = by_mode.get("student-full")
        if full is not None:
            gain = min(student[k]["fps"] / full[k]["fps"] for k in ("walk", "morph"))
            lines.append(f"student's {student.get('decoder', 'full')} decoder vs the full VAE: {gain:.2f}x the "
                         "frames/s (the slower of walk and morph)")
            if "cli_walk" in full and "cli_walk" in student:
                rates_full = " / ".join(f"{f:.1f}" for f in full["cli_walk"]["fps"])
                lines.append(f"  the same end-to-end walk with the full VAE: {rates_full} frames/s; "
                             + ", ".join(f"{part} {sec / full['cli_walk']['profiled_s']:.0%}"
                                         for part, sec in full["cli_walk"]["split"].items()))
        for other, target in (("teacher", None), ("stock", TARGET_STOCK_SPEEDUP)):
            if other in by_mode:
                ratio = min(student[k]["fps"] / by_mode[other][k]["fps"] for k in ("walk", "morph"))
                verdict = "" if target is None else \
                    f" ({'meets' if ratio >= target else 'below'} the {target:g}x target)"
                lines.append(f"student vs {other}: {ratio:.1f}x faster per image{verdict}")
    busy = [r["machine"].get("busy_cpus_before") for r in results]
    if any(b is not None and b > 0.25 for b in busy):
        lines.append(f"warning: other processes kept up to {max(b or 0 for b in busy):.1f} CPUs busy; "
                     "timings and ratios are unreliable")
    return "\n".join(lines)
