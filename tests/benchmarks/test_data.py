"""The data benchmark's synthetic caches are real sharded caches (sparse, so a million rows cost no disk), and its
report carries the ratios."""


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


def test_training_rate_comes_from_two_real_runs():
    from benchmarks.data import bench_train_processes

    r = bench_train_processes(1, "configs/tiny.yaml", batch=4, steps=(2, 6))
    assert r["processes"] == 1 and r["step_s"] > 0 and r["samples_per_s"] == 4 / r["step_s"]
