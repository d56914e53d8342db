"""Training throughput and memory: ldm's UNet trainer against a naive encode-every-batch loop.

Both modes (benchmarks.loops) train the same UNet on the same batches; this times `steps` of each after
untimed warm-up steps, and reports samples/s, where a step's time goes, the UNet's achieved GFLOP/s and
peak memory.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from benchmarks import loops
from benchmarks.machine import busy_cpus, machine_info, reset_rss_peak, rss_peak_mb
from benchmarks.options import ATTENTION, MODES
from ldm.config import Config, load_config
from ldm.errors import LdmError
from ldm.precision import resolve_mixed_precision


def _precision(cfg: Config, mode: str, precision: str | None, device: torch.device) -> str:
    if precision is None:
        # naive is the example with default flags (fp32); ours is the trainer with the config's setting
        precision = "no" if mode == "naive" else cfg.train_unet.mixed_precision
    return resolve_mixed_precision(precision, device)  # an unknown name or one the device lacks: a one-line error


def bench_device(name: str | None) -> torch.device:
    """The device both loops train on: `name`, else a GPU if there is one, else the CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LdmError(f"unknown device {name!r} (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LdmError(f"device {name}: no CUDA GPU here")
    return device



def bench_train(config_path: str | Path | None, mode: str, steps: int = 3, warmup: int = 1,
                batch_size: int | None = None, *, precision: str | None = None, channels_last: bool = False,
                attention: str = "trainer", num_images: int = 256, threads: int | None = None,
                overrides: list[str] | None = None, device: str | None = None) -> dict:
    """Time `steps` UNet training steps (after `warmup` untimed ones) in `mode` 'ours' or 'naive' on `device`
    (default: a GPU if there is one)."""
    if mode not in MODES:
        raise LdmError(f"benchmark mode must be one of {', '.join(MODES)}, got {mode!r}")
    if attention not in ATTENTION:
        raise LdmError(f"attention must be one of {', '.join(ATTENTION)}, got {attention!r}")
    if steps < 1 or warmup < 0:
        raise LdmError("benchmark needs steps >= 1 and warmup >= 0")
    cfg = load_config(config_path, overrides)
    cfg.train_unet.batch_size = batch_size or cfg.train_unet.batch_size
    if cfg.train_unet.batch_size < 1:
        raise LdmError("batch size must be at least 1")
    where = bench_device(device)
    precision = _precision(cfg, mode, precision, where)
    # measured before any work of ours: a busy machine makes every timing below meaningless
    busy_before = busy_cpus()
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _bench(cfg, mode, steps, warmup, precision, channels_last, attention, num_images, busy_before, where)
    finally:
        torch.set_num_threads(previous_threads)


def _bench(cfg: Config, mode: str, steps: int, warmup: int, precision: str, channels_last: bool, attention: str,
           num_images: int, busy_before: float | None, device: torch.device) -> dict:
    """One mode's row: set it up, time its steps after the warm-up, and measure its memory."""
    t_setup = time.perf_counter()
    data = loops.SquaresDataset(num_images, cfg.data.resolution, seed=cfg.train_unet.seed)
    setup = loops.ours if mode == "ours" else loops.naive
    loop = setup(cfg, data, precision, attention, channels_last, device)
    gpu = device.type == "cuda"
    try:
        setup_s = time.perf_counter() - t_setup
        setup_peak = rss_peak_mb()
        # the training-loop peak, apart from loading and (ours) the one-off cache encoding
        can_reset = _reset_peaks(device)
        losses, data_s, elapsed, cpu_s = _timed_steps(loop, warmup, steps, device)
        loop_peak = rss_peak_mb()
        gpu_peak = torch.cuda.max_memory_allocated(device) / 2**20 if gpu else None
        step_flops = loop.count_flops()
    finally:
        loop.close()
    unet_step_s = (elapsed - data_s) / steps
    return {
        "mode": mode,
        "precision": "bf16" if precision == "bf16" else "fp32",
        "channels_last": channels_last,
        "attention": attention,
        "batch_size": cfg.train_unet.batch_size,
        "samples_per_step": loop.samples_per_step,
        "steps": steps,
        "warmup": warmup,
        "samples_per_s": steps * loop.samples_per_step / elapsed,
        "step_s": elapsed / steps,
        "data_s": data_s / steps,
        "unet_step_s": unet_step_s,
        "step_gflop": step_flops / 1e9,
        "unet_gflops": step_flops / 1e9 / unet_step_s,
        "cpu_s_per_step": cpu_s / steps,
        "setup_s": setup_s,
        "cache_s": loop.cache_s,
        "peak_rss_mb": max(setup_peak, loop_peak),
        "loop_peak_rss_mb": loop_peak if can_reset else None,
        "device": str(device),
        "gpu_name": torch.cuda.get_device_name(device) if gpu else None,
        "peak_gpu_mb": gpu_peak,
        "losses": losses,
        "loss_finite": all(math.isfinite(x) for x in losses),
        **_run_facts(cfg, loop, len(data), busy_before),
    }


def _reset_peaks(device: torch.device) -> bool:
    """Restart the peak-memory counters (RSS, and the GPU's); whether the RSS peak could be reset."""
    can_reset = reset_rss_peak()
    if device.type == "cuda":
        loops.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    return can_reset


def _timed_steps(loop, warmup: int, steps: int, device: torch.device) -> tuple[list[float], float, float, float]:
    """Warm-up steps, then the timed ones: every loss, and the timed steps' data, wall and CPU seconds."""
    # warm-up (oneDNN picks and caches kernels on first use), then the timed steps
    losses = [loop.step(s)[0] for s in range(warmup)]
    data_s = 0.0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for s in range(warmup, warmup + steps):
        loss, t_data = loop.step(s)
        losses.append(loss)
        data_s += t_data
    loops.synchronize(device)
    elapsed = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    return losses, data_s, elapsed, cpu_s


def _run_facts(cfg: Config, loop, num_images: int, busy_before: float | None) -> dict:
    """What was trained and where: the UNet's size, latent shape, resolution, EMA, images and the machine."""
    return {
        "unet_params_m": sum(p.numel() for p in loop.unet.parameters()) / 1e6,
        "latent_shape": loop.latent_shape,
        "resolution": cfg.data.resolution,
        "ema": loop.ema,
        "num_images": num_images,
        "machine": {**machine_info(), "busy_cpus_before": busy_before},
    }


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def format_report(results: list[dict], config: str, rates: dict | None = None) -> str:
    """The table and the ours/naive ratios as printed by `scripts/benchmark.py train`.

    `rates` ({"fp32": GFLOP/s, "bf16": GFLOP/s}, this machine's matmul) adds each mode's UNet rate as a
    share of the ceiling for its precision."""
    lines = _header_lines(results[0], config, rates) + _table_lines(results, rates)
    by_mode = {r["mode"]: r for r in results}
    if "ours" in by_mode and "naive" in by_mode:
        lines += _ratio_lines(by_mode["ours"], by_mode["naive"], rates)
    busy = [r["machine"]["busy_cpus_before"] for r in results if r["machine"].get("busy_cpus_before") is not None]
    if busy and max(busy) > 0.25:
        lines.append(f"warning: other processes kept {max(busy):.1f} CPUs busy as a mode started; they share "
                     "these cores, so the timings (and the ratio) are unreliable")
    return "\n".join(lines)


def _header_lines(first: dict, config: str, rates: dict | None) -> list[str]:
    """The report's first lines: the config, the machine, the run's settings, the device and the matmul ceiling."""
    m = first["machine"]
    c, h, w = first["latent_shape"]
    isa = ", ".join(k for k in ("avx512_bf16", "amx_bf16") if m.get(k)) or "no bf16 instructions"
    lines = [
        f"UNet training benchmark, {config}",
        f"machine:  {m['cpu']}, {m['cpu_count']} CPUs, torch {m['torch']} with {m['torch_threads']} threads "
        f"({m['capability']}, {isa})",
        f"settings: batch {first['batch_size']}, {first['resolution']}x{first['resolution']} px -> {c}x{h}x{w} "
        f"latents, UNet {first['unet_params_m']:.1f}M params ({first['step_gflop']:.0f} GFLOP a step forward and "
        f"backward), EMA {'on' if first['ema'] else 'off'}, {first['steps']} timed steps after {first['warmup']} "
        f"warm-up, {first['num_images']} in-memory images",
    ]
    if first.get("gpu_name"):
        lines.append(f"device:   {first['device']}, {first['gpu_name']}")
    if rates:
        lines.append(f"matmul:   {rates['fp32']:.0f} GFLOP/s fp32, {rates['bf16']:.0f} GFLOP/s bf16 (the ceiling)")
    return lines


def _table_lines(results: list[dict], rates: dict | None) -> list[str]:
    """A blank line, the table's heading and one row per mode."""
    gpu = any(r.get("peak_gpu_mb") is not None for r in results)
    lines = [
        "",
        f"{'mode':<6} {'precision':<15} {'samples/s':>9} {'s/step':>7} {'data s/step':>11} {'UNet s/step':>11} "
        f"{'GFLOP/s':>7} {'of matmul':>9} {'CPU s/step':>10} {'peak RSS MB':>11} {'loop peak MB':>12} "
        f"{'setup s':>7} {'last loss':>9}" + (f" {'peak GPU MB':>11}" if gpu else ""),
    ]
    for r in results:
        extras = [" CL"] if r["channels_last"] else []
        extras += [f" {r['attention']}"]
        fmt = r["precision"] + "".join(extras)
        share = f"{r['unet_gflops'] / rates[r['precision']]:.0%}" if rates else "-"
        lines.append(
            f"{r['mode']:<6} {fmt:<15} {r['samples_per_s']:>9.2f} {r['step_s']:>7.2f} {r['data_s']:>11.2f} "
            f"{r['unet_step_s']:>11.2f} {r['unet_gflops']:>7.0f} {share:>9} "
            f"{r['cpu_s_per_step']:>10.2f} {_mb(r['peak_rss_mb']):>11} {_mb(r['loop_peak_rss_mb']):>12} "
            f"{r['setup_s']:>7.1f} {r['losses'][-1]:>9.4f}" + (f" {_mb(r.get('peak_gpu_mb')):>11}" if gpu else "")
        )
    return lines


def _ratio_lines(ours: dict, naive: dict, rates: dict | None) -> list[str]:
    """Ours against naive: the ratios, where the speed-up comes from, and the one-off cache cost."""
    speed = ours["samples_per_s"] / naive["samples_per_s"]
    lines = ["", f"ours/naive: {speed:.2f}x samples/s, {ours['peak_rss_mb'] / naive['peak_rss_mb']:.2f}x peak RSS"]
    if ours["loop_peak_rss_mb"] and naive["loop_peak_rss_mb"]:
        lines[-1] += f", {ours['loop_peak_rss_mb'] / naive['loop_peak_rss_mb']:.2f}x loop peak RSS"
    if ours.get("peak_gpu_mb") and naive.get("peak_gpu_mb"):
        lines[-1] += f", {ours['peak_gpu_mb'] / naive['peak_gpu_mb']:.2f}x peak GPU memory"
    # the ratio is the product of what the cache saves (naive's encoding) and what the UNet step gains
    cached = naive["step_s"] / naive["unet_step_s"]
    faster = naive["unet_step_s"] / ours["step_s"]
    lines.append(f"  = {cached:.2f}x from not encoding each batch (naive spends {naive['data_s']:.2f} of its "
                 f"{naive['step_s']:.2f} s a step on it) x {faster:.2f}x from ours's UNet step")
    if rates:
        # against a baseline the ratio says little where the machine is the limit (a CPU without AMX); this
        # says how close to that limit the trainer's step runs
        lines.append(f"ours's UNet step: {ours['unet_gflops']:.0f} GFLOP/s, "
                     f"{ours['unet_gflops'] / rates[ours['precision']]:.0%} of this machine's "
                     f"{ours['precision']} matmul peak")
    lines.append(f"ours also paid {ours['cache_s']:.1f} s once to encode its {ours['num_images']} images "
                 "(not in samples/s: the cache is reused across runs)")
    return lines
