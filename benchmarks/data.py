"""The data path at scale: latent-cache build images/s with 1 and 2 processes, and the peak memory of a process
drawing training batches from sharded caches of 10k to 1M rows (made directly, not encoded), beside the
whole-cache-in-memory reading that ldm used before the cache was sharded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.child import RESULT_PREFIX, run_child
from benchmarks.machine import machine_info, rss_peak_mb
from ldm.cache import SHARD_ROWS, ShardedCache, sample_batch
from ldm.shards import write_tensors

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS_PER_SHARD = 64  # distinct caption embeddings a synthetic shard holds (rows share them, as group phrases do)


def _rss_parts_mb() -> dict[str, float]:
    """This process's resident memory now, split into anonymous (its own) and file-backed (mapped files) MiB."""
    parts = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile"):
            parts[name] = int(value.split()[0]) / 1024
    return parts


def synthetic_cache(folder: Path, rows: int, latent: tuple[int, int, int], tokens: int, width: int,
                    shard_rows: int = SHARD_ROWS) -> Path:
    """A sharded cache of `rows` rows in the trainer's layout with one caption embedding a row, its latents and
    embeddings left as holes in sparse files (zeros: a million rows take seconds and almost no disk); returns
    the index file."""
    names, shard_of, row_of = [], [], []
    for k, start in enumerate(range(0, rows, shard_rows)):
        n = min(shard_rows, rows - start)
        name = f"shard-{k:08d}.safetensors"
        holes = {"mean": ("F32", [n, *latent]), "std": ("F32", [n, *latent]), "embeds": ("F16", [n, tokens, width])}
        filled = {"caption_index": np.arange(n, dtype=np.int64), "caption_offsets": np.arange(n + 1, dtype=np.int64)}
        _write_sparse(folder / name, holes, filled)
        names.append(name)
        shard_of.append(np.full(n, k, np.int32))
        row_of.append(np.arange(n, dtype=np.int32))
    index = folder / "index-synthetic.safetensors"
    write_tensors(index, {"shard": torch.from_numpy(np.concatenate(shard_of)),
                          "row": torch.from_numpy(np.concatenate(row_of)),
                          "caption_offsets": torch.arange(rows + 1, dtype=torch.int64),
                          "uncond": torch.zeros(1, tokens, width, dtype=torch.float16)},
                  {"shards": json.dumps(names), "flip": "0", "rows": str(rows)})
    return index


_SIZES = {"F32": 4, "F16": 2, "I64": 8}


def _write_sparse(path: Path, holes: dict[str, tuple[str, list[int]]], filled: dict[str, np.ndarray]) -> None:
    """A safetensors file (header, then the tensors back to back) whose `holes` tensors are never written."""
    layout, blobs, offset = {}, [], 0
    for name, (dtype, shape) in holes.items():
        size = int(np.prod(shape)) * _SIZES[dtype]
        layout[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    for name, array in filled.items():
        layout[name] = {"dtype": "I64", "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        blobs.append((offset, array.tobytes()))
        offset += array.nbytes
    text = json.dumps(layout, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        base = f.tell()
        for at, blob in blobs:
            f.seek(base + at)
            f.write(blob)
        f.truncate(base + offset)


def bench_rss(rows: int, mode: str, steps: int, batch: int, latent: tuple[int, int, int], tokens: int,
              width: int, read_threads: tuple[int, ...] = ()) -> dict:
    """Peak memory of drawing `steps` training batches from a `rows`-row cache: sharded or all in memory.

    read_threads: for a sharded cache, also the batches/s the trainer's CachedBatches delivers with that many
    reading threads (a step that took no time: the most the reads can feed)."""
    with tempfile.TemporaryDirectory(prefix="ldm-bench-data-") as tmp:
        t0 = time.perf_counter()
        index = synthetic_cache(Path(tmp), rows, latent, tokens, width)
        made = time.perf_counter() - t0
        base = rss_peak_mb()
        t0 = time.perf_counter()
        cache = ShardedCache(Path(tmp), index)
        if mode == "memory":  # before: every tensor of every shard read whole into this process
            from ldm.cache import MemoryCache

            cache = MemoryCache(_read_whole(cache))
        opened = time.perf_counter() - t0
        gen = torch.Generator().manual_seed(0)
        for _ in range(5):  # untimed: first calls import and set up
            sample_batch(cache, torch.randint(0, rows, (batch,), generator=gen).tolist(), gen, 0.18, 0.1)
        t0 = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(0, rows, (batch,), generator=gen).tolist()
            sample_batch(cache, idx, gen, 0.18, 0.1)
        drawn = time.perf_counter() - t0
        peak, parts = rss_peak_mb(), _rss_parts_mb()  # before the threads' batches in flight add their own
        threaded = {n: _threaded_rate(cache, n, steps, batch) for n in read_threads} if mode == "sharded" else {}
        return {"rows": rows, "mode": mode, "peak_rss_mb": peak, "before_open_mb": base,
                **{k.lower() + "_mb": v for k, v in parts.items()}, "make_s": made, "open_s": opened,
                "batches_per_s": steps / drawn, "batch": batch, "threads_batches_per_s": threaded}


def _threaded_rate(cache, threads: int, steps: int, batch: int) -> float:
    """Batches/s of the trainer's CachedBatches reading with `threads` threads, drawn back to back."""
    from ldm.config import UNetTrainConfig
    from ldm.train.unet import CachedBatches

    tc = UNetTrainConfig(batch_size=batch, caption_dropout=0.1)
    batches = CachedBatches(cache, tc, 0.18, prefetch=2 * threads, workers=threads)
    try:
        for s in range(2):  # untimed: the threads start
            batches(s, 0)
        t0 = time.perf_counter()
        for s in range(2, 2 + steps):
            batches(s, 0)
        return steps / (time.perf_counter() - t0)
    finally:
        batches.close()


def _read_whole(cache: ShardedCache) -> dict[str, torch.Tensor]:
    """The old layout: one set of tensors for the whole dataset, in memory (embeddings offset per shard)."""
    means, stds, embeds, index, offsets, base = [], [], [], [], [0], 0
    for k in range(len(cache.shard_names)):
        f = cache._shard(k)

        def whole(name: str) -> torch.Tensor:
            return torch.from_numpy(f.rows(name, np.arange(f.shape(name)[0])))  # noqa: B023 (used at once)

        means.append(whole("mean"))
        stds.append(whole("std"))
        embeds.append(whole("embeds"))
        index.append(whole("caption_index") + base)
        base += embeds[-1].shape[0]
        shard_offsets = whole("caption_offsets").numpy()
        offsets.extend((shard_offsets[1:] + offsets[-1]).tolist())
    return {"mean": torch.cat(means), "std": torch.cat(stds), "embeds": torch.cat(embeds),
            "caption_index": torch.cat(index), "caption_offsets": torch.tensor(offsets), "uncond": cache.uncond}


def bench_build(processes: int, images: int, config: str) -> dict:
    """Wall time of building the latent cache of `images` procedural shapes at the config's size, with a VAE of
    the config's architecture, by `processes` processes (accelerate launch)."""
    with tempfile.TemporaryDirectory(prefix="ldm-bench-build-") as tmp:
        cmd = [*_launch(processes), str(ROOT / "benchmarks" / "build_cache_child.py"), tmp, str(images), config]
        env = _env(processes)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "build failed")
        timings = [json.loads(line[len(RESULT_PREFIX):]) for line in proc.stdout.splitlines()
                   if line.startswith(RESULT_PREFIX)]
    encode = max(t["encode_s"] for t in timings)
    return {"processes": processes, "images": images, "encode_s": encode, "wall_s": wall,
            "images_per_s": images / encode}


def _env(processes: int) -> dict[str, str]:
    """The environment of each of `processes` processes: the cores shared out among them."""
    return {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes))}


def _launch(processes: int) -> list[str]:
    return ([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
             "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"] if processes > 1
            else [sys.executable])


def bench_train_processes(processes: int, config: str, batch: int = 16, warmup: int = 5, steps: int = 25) -> dict:
    """The trainer's samples/s with `processes` processes (DDP): one run of `steps` steps on procedural images with
    a random VAE, timed by the trainer itself (the samples/s it logs every `warmup` steps), leaving out the first
    `warmup` steps (kernel choice, first allocations) and everything outside the steps (start-up, the cache build,
    the final save)."""
    from ldm.config import load_config
    from ldm.models import build_vae, save_model

    if not 0 < warmup < steps:
        raise ValueError(f"need 0 < warmup < steps, got {warmup} and {steps}")
    cfg = load_config(config)
    with tempfile.TemporaryDirectory(prefix="ldm-bench-ddp-") as tmp:
        torch.manual_seed(0)
        save_model(build_vae(cfg.vae, cfg.data.resolution), Path(tmp) / "vae")
        out = Path(tmp) / "run"
        cmd = [*_launch(processes), str(ROOT / "scripts" / "train_unet.py"), "--config", config,
               "--output-dir", str(out), "--vae", str(Path(tmp) / "vae"),
               f"train_unet.max_steps={steps}", f"train_unet.batch_size={batch}", "data.source=shapes",
               "data.shapes_count=512", "train_unet.sample_every=1000000", "train_unet.checkpoint_every=1000000",
               "train_unet.validation_prompts=[]", f"train_unet.log_every={warmup}",
               "train_unet.gradient_accumulation_steps=1"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(processes), cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "run failed")
        logged = logged_scalars(out / "logs", "samples_per_s")
    step_s = steady_step_s(logged, batch * processes)
    return {"processes": processes, "batch": batch, "step_s": step_s, "samples_per_s": batch * processes / step_s}


def logged_scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one scalar in the TensorBoard logs under log_dir, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: dict[int, float] = {}
    for folder in sorted({f.parent for f in Path(log_dir).rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            points.update((e.step, e.value) for e in acc.Scalars(tag))
    return sorted(points.items())


def steady_step_s(logged: list[tuple[int, float]], samples_per_step: int) -> float:
    """Seconds a step from a trainer's logged (step, samples/s), each rate over the steps since the last log: the
    first window (warm-up) left out, the others weighted by their steps. Positive whenever the rates are."""
    if len(logged) < 2:
        raise RuntimeError(f"need the samples/s of at least two logged windows, the run logged {len(logged)}")
    if any(rate <= 0 for _, rate in logged):
        raise RuntimeError(f"a logged samples/s is not positive: {logged}")
    steps = logged[-1][0] - logged[0][0]
    seconds = sum((step - before) * samples_per_step / rate
                  for (before, _), (step, rate) in zip(logged, logged[1:]))
    return seconds / steps


def rss_children(sizes: list[int], steps: int, batch: int, memory_up_to: int,
                 read_threads: tuple[int, ...] = (1, 4)) -> list[dict]:
    """One process per (size, mode), so that each peak is its own."""
    results = []
    for rows in sizes:
        for mode in ("sharded", "memory"):
            if mode == "memory" and rows > memory_up_to:
                continue
            cmd = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "data", "--only", f"rss:{mode}:{rows}",
                   "--steps", str(steps), "--batch-size", str(batch),
                   "--read-threads", *map(str, read_threads)]
            print(f"running {mode} cache of {rows:,} rows ...", file=sys.stderr, flush=True)
            results.append(run_child(cmd))
    return results


def format_data_report(build: list[dict], rss: list[dict], latent, tokens: int, width: int,
                       train: list[dict] | None = None) -> str:
    """The report: build rates and the scaling ratio, memory per cache size and mode, training per process count."""
    info = machine_info()
    lines = [f"machine: {info['cpu']}, {info['cpu_count']} cores", ""]
    if build:
        lines += ["cache build (procedural shapes, the config's VAE architecture, random weights):", "",
                  "| processes | images | encode s | images/s |", "|---|---|---|---|"]
        for r in build:
            lines.append(f"| {r['processes']} | {r['images']} | {r['encode_s']:.1f} | {r['images_per_s']:.0f} |")
        if len(build) > 1:
            lines += ["", f"{build[-1]['processes']} processes / 1: "
                      f"{build[-1]['images_per_s'] / build[0]['images_per_s']:.2f}x the images/s"]
        lines.append("")
    per_row = 2 * int(np.prod(latent)) * 4 + tokens * width * 2
    lines += [f"training reads ({rss[0]['batch'] if rss else '?'} rows a batch; a row is {per_row / 1024:.0f} KiB: "
              f"latents {latent} fp32 mean and std, one caption {tokens}x{width} fp16):", "",
              "| rows | cache | peak RSS MiB | anonymous MiB | file-backed MiB | open s | batches/s |",
              "|---|---|---|---|---|---|---|"]
    for r in rss:
        kind = "sharded, rows read on demand" if r["mode"] == "sharded" else "all in memory"
        lines.append(f"| {r['rows']:,} | {kind} "
                     f"| {r['peak_rss_mb']:.0f} | {r.get('rssanon_mb', 0):.0f} | {r.get('rssfile_mb', 0):.0f} "
                     f"| {r['open_s']:.2f} | {r['batches_per_s']:.0f} |")
    sharded = [r for r in rss if r["mode"] == "sharded"]
    threads = sorted({n for r in sharded for n in r.get("threads_batches_per_s", {})}, key=int)
    if threads:
        lines += ["", "sharded reads through the trainer's CachedBatches, by reading threads (batches/s, drawn back "
                  "to back):", "", "| rows | " + " | ".join(f"{n} thread{'s' * (int(n) > 1)}" for n in threads)
                  + " |", "|---|" + "---|" * len(threads)]
        for r in sharded:
            rates = r.get("threads_batches_per_s", {})
            lines.append(f"| {r['rows']:,} | " + " | ".join(f"{rates[n]:.0f}" if n in rates else "-" for n in threads)
                         + " |")
    if len(sharded) > 1:
        lines += ["", f"sharded peak RSS, largest / smallest cache ({sharded[-1]['rows']:,} / "
                  f"{sharded[0]['rows']:,} rows): {sharded[-1]['peak_rss_mb'] / sharded[0]['peak_rss_mb']:.2f}x"]
    if train:
        lines += ["", f"training (the config's UNet, {train[0]['batch']} images a process a step, procedural data):",
                  "", "| processes | s/step | samples/s |", "|---|---|---|"]
        lines += [f"| {r['processes']} | {r['step_s']:.2f} | {r['samples_per_s']:.1f} |" for r in train]
        if len(train) > 1:
            lines += ["", f"{train[-1]['processes']} processes / 1: "
                      f"{train[-1]['samples_per_s'] / train[0]['samples_per_s']:.2f}x the samples/s"]
    return "\n".join(lines)
