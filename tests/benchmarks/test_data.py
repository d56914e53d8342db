"""The data benchmark's synthetic caches are real sharded caches (sparse, so a million rows cost no disk), and its
report carries the ratios."""


import time
from pathlib import Path

import pytest
import torch

from benchmarks.data import bench_rss, format_data_report, synthetic_cache
from ldm.cache import ShardedCache, sample_batch


def test_a_synthetic_cache_is_read_like_an_encoded_one(tmp_path):
    index = synthetic_cache(tmp_path, 10_000, (4, 16, 16), 24, 384, shard_rows=4096)
    cache = ShardedCache(tmp_path, index)
    assert len(cache) == 10_000 and len(cache.shard_names) == 3
    latents, embeds, _, picks = sample_batch(cache, [0, 4095, 4096, 9999], torch.Generator().manual_seed(0), 0.2, 0.0)
    assert latents.shape == (4, 4, 16, 16) and embeds.shape == (4, 24, 384) and picks.tolist() == [0, 4095, 4096, 9999]
    logical = sum((tmp_path / n).stat().st_size for n in cache.shard_names)
    on_disk = sum((tmp_path / n).stat().st_blocks * 512 for n in cache.shard_names)
    assert logical > 250e6 and on_disk < logical / 100  # holes: the latents and embeddings are never written


def test_the_report_compares_sizes_and_modes():
    rows = [bench_rss(n, mode, steps=3, batch=8, latent=(4, 8, 8), tokens=8, width=32, read_threads=(1, 2))
            for n, mode in ((2000, "sharded"), (2000, "memory"), (8000, "sharded"))]
    assert all(r["peak_rss_mb"] > 0 and r["batches_per_s"] > 0 for r in rows)
    # the trainer's own batches, read by 1 and 2 threads, on sharded caches only
    assert [sorted(r["threads_batches_per_s"]) for r in rows] == [[1, 2], [], [1, 2]]
    assert all(rate > 0 for r in rows for rate in r["threads_batches_per_s"].values())
    build = [{"processes": 1, "images": 64, "encode_s": 2.0, "images_per_s": 32.0},
             {"processes": 2, "images": 64, "encode_s": 1.0, "images_per_s": 64.0}]
    train = [{"processes": 1, "batch": 16, "step_s": 0.5, "samples_per_s": 32.0},
             {"processes": 2, "batch": 16, "step_s": 0.5, "samples_per_s": 64.0}]
    report = format_data_report(build, rows, (4, 8, 8), 8, 32, train)
    assert "| 2 | 0.50 | 64.0 |" in report and report.endswith("2 processes / 1: 2.00x the samples/s")
    assert "2 processes / 1: 2.00x the images/s" in report
    assert "| 2,000 | all in memory |" in report and "largest / smallest cache (8,000 / 2,000 rows)" in report
    assert "| rows | 1 thread | 2 threads |" in report and report.count("| 8,000 | ") == 2


@pytest.mark.slow  # a real training run in a subprocess
def test_training_rate_comes_from_a_real_runs_own_step_times():
    from benchmarks.data import bench_train_processes

    r = bench_train_processes(1, "configs/tiny.yaml", batch=4, warmup=2, steps=6)
    assert r["processes"] == 1 and r["step_s"] > 0 and r["samples_per_s"] == 4 / r["step_s"]


def test_training_rate_stays_positive_when_start_up_is_slow(monkeypatch):
    # A busy machine once made a 2-step run take longer than a 6-step one, and the difference of their wall
    # times gave -0.0996 s a step. The trainer's own rates, after the warm-up window, are what count.
    import subprocess

    from torch.utils.tensorboard import SummaryWriter

    import benchmarks.data as data

    rates = {2: 5.0, 4: 40.0, 6: 20.0}  # samples/s the trainer logs over each window (the first: warm-up)

    def fake_train(cmd, **kwargs):
        args = dict(a.split("=", 1) for a in cmd if a.startswith("train_unet."))
        steps, every = int(args["train_unet.max_steps"]), int(args.get("train_unet.log_every", 1000))
        time.sleep(0.5 if steps < 6 else 0.0)  # a slow start-up, whichever run has it
        writer = SummaryWriter(str(Path(cmd[cmd.index("--output-dir") + 1]) / "logs" / "unet"))
        for step in range(1, steps + 1):
            if step % every == 0 or step == steps:
                writer.add_scalar("samples_per_s", rates[step], global_step=step)
        writer.close()
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(data.subprocess, "run", fake_train)
    r = data.bench_train_processes(1, "configs/tiny.yaml", batch=4, warmup=2, steps=6)
    assert r["step_s"] == pytest.approx((2 * 4 / 40 + 2 * 4 / 20) / 4)  # 0.15 s: steps 3-6 only
    assert r["samples_per_s"] == pytest.approx(4 / 0.15)


def test_a_steady_rate_needs_two_logged_windows():
    from benchmarks.data import steady_step_s

    assert steady_step_s([(5, 10.0), (10, 20.0), (25, 40.0)], 16) == pytest.approx((5 * 16 / 20 + 15 * 16 / 40) / 20)
    with pytest.raises(RuntimeError, match="at least two"):
        steady_step_s([(25, 40.0)], 16)


@pytest.mark.slow  # a real cache build in a subprocess
def test_a_cache_build_is_timed_by_the_process_that_encodes():
    from benchmarks.data import bench_build

    r = bench_build(1, 8, "configs/tiny.yaml")  # benchmarks/build_cache_child.py under plain python
    assert r["processes"] == 1 and r["images"] == 8 and 0 < r["encode_s"] < r["wall_s"]
    assert r["images_per_s"] == 8 / r["encode_s"]
