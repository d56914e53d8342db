"""Training throughput and memory: our cached-latent trainer step against a naive encode-every-batch loop.

"ours" does what ldm/train/unet.py does: latents and text embeddings encoded once (ldm.cache), each
step draws a batch from that cache and runs the UNet under the config's mixed precision. "naive" does
what diffusers' examples/text_to_image/train_text_to_image.py does with default flags: every step
encodes the pixel batch through the VAE and the captions through the text encoder, all in fp32. Both
then take the same UNet step (loss, backward, clipping, AdamW, LR schedule, EMA when the config has it),
each with its own AdamW and EMA settings: the example's defaults for naive, the trainer's for ours.

The images are procedural and held in memory, so the benchmark needs no files and no data module;
models are randomly initialised (timing does not depend on the weights) except the packaged text
encoder, whose real size matters.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor
from diffusers.training_utils import EMAModel
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ldm.bench_options import ATTENTION, MODES
from ldm.cache import encode_dataset, sample_batch
from ldm.config import Config, load_config, vae_factor
from ldm.data.images import to_tensor
from ldm.data.shapes import make_shape
from ldm.errors import LdmError
from ldm.models import (
    build_noise_scheduler,
    build_unet,
    build_vae,
    cross_attention_dim,
    encode_prompts,
    load_text_encoder,
    use_training_attention,
)
from ldm.precision import resolve_mixed_precision
from ldm.train.losses import diffusion_loss
from ldm.train.optimization import make_ema, make_lr_scheduler, make_optimizer
from ldm.train.schedule import batch_indices, step_generator

RESULT_PREFIX = "LDM_BENCH_RESULT "  # marks the child's result line among library chatter
TARGET_SPEEDUP = 3.0


class SquaresDataset(torch.utils.data.Dataset):
    """The procedural shapes (ldm.data.shapes) held in memory, so timing never waits on image decoding."""

    def __init__(self, count: int, size: int, seed: int = 0):
        shapes = [make_shape(i, size, seed) for i in range(count)]
        self.size = size
        self.pixels = torch.stack([to_tensor(image) for image, _ in shapes])
        self.captions: list[str] = [caption for _, caption in shapes]

    def __len__(self) -> int:
        return len(self.captions)

    def load(self, i: int) -> torch.Tensor:
        """Image i as a (3, size, size) tensor in [-1, 1]."""
        return self.pixels[i]

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.pixels[i], "caption": self.captions[i], "index": i}


def rss_peak_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def reset_rss_peak() -> bool:
    """Restart the peak-RSS count from the current RSS (Linux only); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def machine_info() -> dict:
    """CPU model, core count, torch threads and the instruction sets that decide bf16 speed."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = line.split(":", 1)[1]
            if model and flags:
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": "avx512_bf16" in flags.split(),
        "amx_bf16": "amx_bf16" in flags.split(),
    }


def busy_cpus(window_s: float = 0.5) -> float | None:
    """How many CPUs other work keeps busy, sampled from /proc/stat while this process idles (Linux only)."""

    def snapshot() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    try:
        busy0, total0 = snapshot()
        time.sleep(window_s)
        busy1, total1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    return round((busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1), 2)


def _precision(cfg: Config, mode: str, precision: str | None) -> str:
    if precision is None:
        # naive is the example with default flags (fp32); ours is the trainer with the config's setting
        precision = "no" if mode == "naive" else cfg.train_unet.mixed_precision
    return resolve_mixed_precision(precision, torch.device("cpu"))  # fp16 or an unknown name: a one-line error


def bench_train(config_path: str | Path | None, mode: str, steps: int = 3, warmup: int = 1,
                batch_size: int | None = None, *, precision: str | None = None, channels_last: bool = False,
                attention: str = "trainer", num_images: int = 256, threads: int | None = None,
                overrides: list[str] | None = None) -> dict:
    """Time `steps` UNet training steps (after `warmup` untimed ones) in `mode` 'ours' or 'naive'."""
    if mode not in MODES:
        raise LdmError(f"benchmark mode must be one of {', '.join(MODES)}, got {mode!r}")
    if attention not in ATTENTION:
        raise LdmError(f"attention must be one of {', '.join(ATTENTION)}, got {attention!r}")
    if steps < 1 or warmup < 0:
        raise LdmError("benchmark needs steps >= 1 and warmup >= 0")
    cfg = load_config(config_path, overrides)
    batch_size = batch_size or cfg.train_unet.batch_size
    if batch_size < 1:
        raise LdmError("batch size must be at least 1")
    precision = _precision(cfg, mode, precision)
    # measured before any work of ours: a busy machine makes every timing below meaningless
    busy_before = busy_cpus()
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _bench(cfg, mode, steps, warmup, batch_size, precision, channels_last, attention, num_images,
                      busy_before)
    finally:
        torch.set_num_threads(previous_threads)


def _bench(cfg: Config, mode: str, steps: int, warmup: int, batch_size: int, precision: str,
           channels_last: bool, attention: str, num_images: int, busy_before: float | None) -> dict:
    tc = cfg.train_unet
    t_setup = time.perf_counter()

    # 1. frozen encoders, the data and (ours) its cache
    torch.manual_seed(tc.seed)
    tokenizer, text_encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    vae = build_vae(cfg.vae, cfg.data.resolution).requires_grad_(False).eval()
    scaling = float(vae.config.scaling_factor)
    data = SquaresDataset(num_images, cfg.data.resolution, seed=tc.seed)
    cache_s = 0.0
    cache = None
    if mode == "ours":
        t0 = time.perf_counter()
        cache = encode_dataset(vae, tokenizer, text_encoder, data, flip=cfg.data.flip)
        cache_s = time.perf_counter() - t0

    # 2. the UNet step both modes share
    latent_size = cfg.data.resolution // vae_factor(cfg)
    unet = build_unet(cfg.unet, vae.config.latent_channels, latent_size, cross_attention_dim(text_encoder))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    unet.to(memory_format=memory_format).train()
    if attention == "classic":
        unet.set_attn_processor(AttnProcessor())
    elif attention == "trainer":
        use_training_attention(unet, torch.device("cpu"), mixed_precision=precision)
    backend = (lambda: sdpa_kernel(SDPBackend.MATH)) if attention == "math" else contextlib.nullcontext
    ema = None
    model_info = {"model_cls": UNet2DConditionModel, "model_config": unet.config}
    if tc.ema_decay > 0:
        # the example's defaults: EMAModel without foreach, AdamW with PyTorch's default (on the CPU a per-tensor
        # loop); ours: what ldm's trainer builds (foreach EMA, fused AdamW)
        ema = (make_ema(unet.parameters(), tc.ema_decay, **model_info) if mode == "ours" else
               EMAModel(unet.parameters(), decay=tc.ema_decay, **model_info))
    noise_scheduler = build_noise_scheduler(cfg.noise)
    optimizer = (make_optimizer(unet.parameters(), tc) if mode == "ours" else
                 torch.optim.AdamW(unet.parameters(), lr=tc.learning_rate, betas=(tc.adam_beta1, tc.adam_beta2),
                                   weight_decay=tc.weight_decay))
    lr_scheduler = make_lr_scheduler(optimizer, tc, 1)
    n = len(data)

    def batch(step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = batch_indices(step, 0, 1, batch_size, n, tc.seed)
        if cache is not None:
            return sample_batch(cache, idx, gen, scaling, tc.caption_dropout)[:2]
        # as the diffusers example: a posterior sample of this batch's pixels, embeddings of its captions
        with torch.no_grad():
            latents = vae.encode(data.pixels[idx]).latent_dist.sample(generator=gen) * scaling
            embeds = encode_prompts(tokenizer, text_encoder, [data.captions[i] for i in idx])
        return latents, embeds

    def train_step(step: int) -> tuple[float, float]:
        gen = step_generator(tc.seed, step)
        t0 = time.perf_counter()
        latents, embeds = batch(step, gen)
        t_data = time.perf_counter() - t0
        latents = latents.contiguous(memory_format=memory_format)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"), backend():
            loss = diffusion_loss(unet, noise_scheduler, latents, embeds, gen, tc.snr_gamma)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), tc.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(unet.parameters())
        return float(loss.detach()), t_data

    setup_s = time.perf_counter() - t_setup
    setup_peak = rss_peak_mb()
    # the training-loop peak, apart from loading and (ours) the one-off cache encoding
    can_reset = reset_rss_peak()

    # 3. warm-up (oneDNN picks and caches kernels on first use), then the timed steps
    losses = [train_step(s)[0] for s in range(warmup)]
    data_s = 0.0
    cpu0, t0 = time.process_time(), time.perf_counter()
    for s in range(warmup, warmup + steps):
        loss, t_data = train_step(s)
        losses.append(loss)
        data_s += t_data
    elapsed = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    loop_peak = rss_peak_mb()

    # FLOPs of one UNet forward and backward, counted after the timing (the count runs slower than the step)
    latents, embeds = batch(0, step_generator(tc.seed, 0))
    with FlopCounterMode(display=False) as counter, backend():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = diffusion_loss(unet, noise_scheduler, latents, embeds, step_generator(tc.seed, 0), tc.snr_gamma)
        loss.backward()
    optimizer.zero_grad(set_to_none=True)
    unet_step_s = (elapsed - data_s) / steps
    return {
        "mode": mode,
        "precision": "bf16" if precision == "bf16" else "fp32",
        "channels_last": channels_last,
        "attention": attention,
        "batch_size": batch_size,
        "steps": steps,
        "warmup": warmup,
        "samples_per_s": steps * batch_size / elapsed,
        "step_s": elapsed / steps,
        "data_s": data_s / steps,
        "unet_step_s": unet_step_s,
        "step_gflop": counter.get_total_flops() / 1e9,
        "unet_gflops": counter.get_total_flops() / 1e9 / unet_step_s,
        "cpu_s_per_step": cpu_s / steps,
        "setup_s": setup_s,
        "cache_s": cache_s,
        "peak_rss_mb": max(setup_peak, loop_peak),
        "loop_peak_rss_mb": loop_peak if can_reset else None,
        "losses": losses,
        "loss_finite": all(math.isfinite(x) for x in losses),
        "unet_params_m": sum(p.numel() for p in unet.parameters()) / 1e6,
        "latent_shape": [vae.config.latent_channels, latent_size, latent_size],
        "resolution": cfg.data.resolution,
        "ema": ema is not None,
        "num_images": n,
        "machine": {**machine_info(), "busy_cpus_before": busy_before},
    }


def emit_result(result: dict) -> None:
    """Print a child's result as one marked JSON line for the parent to pick out."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(command: list[str], timeout: float | None = None) -> dict:
    """Run one benchmark mode in its own process (so its peak RSS is its own) and return its result."""
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1].removeprefix("error: ")
    raise LdmError(f"benchmark child ({' '.join(command[2:])}) failed with exit code {proc.returncode}: {tail}")


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def format_report(results: list[dict], config: str, rates: dict | None = None) -> str:
    """The table and the ours/naive ratios as printed by `scripts/benchmark.py train`.

    `rates` ({"fp32": GFLOP/s, "bf16": GFLOP/s}, this machine's matmul) adds each mode's UNet rate as a
    share of the ceiling for its precision."""
    first = results[0]
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
    if rates:
        lines.append(f"matmul:   {rates['fp32']:.0f} GFLOP/s fp32, {rates['bf16']:.0f} GFLOP/s bf16 (the ceiling)")
    lines += [
        "",
        f"{'mode':<6} {'precision':<15} {'samples/s':>9} {'s/step':>7} {'data s/step':>11} {'UNet s/step':>11} "
        f"{'GFLOP/s':>7} {'of matmul':>9} {'CPU s/step':>10} {'peak RSS MB':>11} {'loop peak MB':>12} "
        f"{'setup s':>7} {'last loss':>9}",
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
            f"{r['setup_s']:>7.1f} {r['losses'][-1]:>9.4f}"
        )
    by_mode = {r["mode"]: r for r in results}
    if "ours" in by_mode and "naive" in by_mode:
        ours, naive = by_mode["ours"], by_mode["naive"]
        speed = ours["samples_per_s"] / naive["samples_per_s"]
        verdict = "meets" if speed >= TARGET_SPEEDUP else "below"
        lines += ["", f"ours/naive: {speed:.2f}x samples/s ({verdict} the {TARGET_SPEEDUP:g}x target), "
                      f"{ours['peak_rss_mb'] / naive['peak_rss_mb']:.2f}x peak RSS"]
        if ours["loop_peak_rss_mb"] and naive["loop_peak_rss_mb"]:
            lines[-1] += f", {ours['loop_peak_rss_mb'] / naive['loop_peak_rss_mb']:.2f}x loop peak RSS"
        # the ratio is the product of what the cache saves (naive's encoding) and what the UNet step gains
        cached = naive["step_s"] / naive["unet_step_s"]
        faster = naive["unet_step_s"] / ours["step_s"]
        lines.append(f"  = {cached:.2f}x from not encoding each batch (naive spends {naive['data_s']:.2f} of its "
                     f"{naive['step_s']:.2f} s a step on it) x {faster:.2f}x from ours's UNet step")
        if speed < TARGET_SPEEDUP:
            need_s = naive["step_s"] / TARGET_SPEEDUP * ours["batch_size"] / naive["batch_size"]
            need = f"{TARGET_SPEEDUP:g}x needs ours's step at {need_s:.2f} s, {ours['step_gflop'] / need_s:.0f} GFLOP/s"
            if rates:
                need += f" ({ours['step_gflop'] / need_s / rates[ours['precision']]:.0%} of {ours['precision']} matmul)"
            lines.append("  " + need)
        lines.append(f"ours also paid {ours['cache_s']:.1f} s once to encode its {ours['num_images']} images "
                     "(not in samples/s: the cache is reused across runs)")
    busy = [r["machine"]["busy_cpus_before"] for r in results if r["machine"].get("busy_cpus_before") is not None]
    if busy and max(busy) > 0.25:
        lines.append(f"warning: other processes kept {max(busy):.1f} CPUs busy as a mode started; they share "
                     "these cores, so the timings (and the ratio) are unreliable")
    return "\n".join(lines)
