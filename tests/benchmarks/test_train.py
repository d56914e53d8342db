"""The training benchmark runs both modes on the tiny config and reports sane numbers."""

import math

import pytest
import torch
from support import ROOT, TINY

from benchmarks.options import MODES
from benchmarks.train import bench_train, format_report
from ldm.errors import LdmError


def test_both_modes_train_and_report():
    # one thread: on a shared 2-core machine, OpenMP threads waiting on a descheduled peer take 100x longer
    results = [bench_train(TINY, mode, steps=2, warmup=0, batch_size=4, num_images=16, threads=1) for mode in MODES]
    for r in results:
        assert math.isfinite(r["samples_per_s"]) and r["samples_per_s"] > 0
        assert r["loss_finite"] and len(r["losses"]) == 2
        assert r["peak_rss_mb"] > 0
    assert results[0]["cache_s"] > 0 and results[1]["data_s"] > 0
    for r in results:
        # the same model and batch in both modes: the same work a step, whatever the precision
        assert r["step_gflop"] == pytest.approx(results[0]["step_gflop"], rel=1e-6) and r["step_gflop"] > 0
        assert 0 < r["unet_step_s"] <= r["step_s"]
    assert results[1]["unet_step_s"] < results[1]["step_s"]  # naive's step includes encoding its batch
    report = format_report(results, "configs/tiny.yaml", {"fp32": 100.0, "bf16": 400.0})
    assert "ours/naive" in report and "from not encoding each batch" in report
    share = results[1]["unet_gflops"] / 100.0  # naive runs fp32, so its share is of the fp32 rate
    naive_row = next(line for line in report.splitlines() if line.startswith("naive "))
    assert f" {share:.0%} " in naive_row
    ours = results[0]
    assert f"{ours['unet_gflops'] / {'fp32': 100.0, 'bf16': 400.0}[ours['precision']]:.0%} of this machine's" in report
    assert "target" not in report  # the CPU-bound 3x target is retired; the share of the peak replaces it


def test_ours_steps_as_the_trainer_does_with_accumulation():
    # the trainer's step takes gradient_accumulation_steps micro-batches before one update: so does ours
    r = bench_train(TINY, "ours", steps=1, warmup=0, batch_size=2, num_images=8, threads=1,
                    overrides=["train_unet.gradient_accumulation_steps=3"])
    assert r["batch_size"] == 2 and r["samples_per_step"] == 6
    assert r["samples_per_s"] == pytest.approx(6 / r["step_s"])
    assert r["loss_finite"] and len(r["losses"]) == 1


def test_unknown_mode_is_a_user_error():
    with pytest.raises(LdmError, match="mode"):
        bench_train(TINY, "fast")


def test_unknown_attention_and_bad_counts_are_user_errors():
    with pytest.raises(LdmError, match="attention"):
        bench_train(TINY, "ours", attention="flash")
    with pytest.raises(LdmError, match="steps >= 1"):
        bench_train(TINY, "ours", steps=0)


@pytest.mark.parametrize("attention", ["math", "classic"])
def test_bf16_attention_variants_train(attention):
    r = bench_train(TINY, "ours", steps=1, warmup=0, batch_size=2, num_images=4, threads=1, precision="bf16",
                    attention=attention)
    assert r["precision"] == "bf16" and r["attention"] == attention and r["loss_finite"]


def test_a_later_run_in_the_same_process_may_change_precision():
    # each ours run builds its own Accelerator, which accelerate otherwise keeps for the whole process
    fp32 = bench_train(TINY, "ours", steps=1, warmup=0, batch_size=2, num_images=4, threads=1, precision="no")
    bf16 = bench_train(TINY, "ours", steps=1, warmup=0, batch_size=2, num_images=4, threads=1, precision="bf16")
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")


def test_the_device_is_checked_and_named_in_the_results():
    r = bench_train(TINY, "naive", steps=1, warmup=0, batch_size=2, num_images=4, threads=1, device="cpu")
    assert r["device"] == "cpu" and r["peak_gpu_mb"] is None and r["gpu_name"] is None
    with pytest.raises(LdmError, match="unknown device 'gpu0'"):
        bench_train(TINY, "ours", device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(LdmError, match="no CUDA GPU here"):
            bench_train(TINY, "ours", device="cuda")


def test_a_gpu_report_gives_each_modes_peak_gpu_memory_and_their_ratio():
    results = [bench_train(TINY, mode, steps=1, warmup=0, batch_size=2, num_images=4, threads=1) for mode in MODES]
    for r, peak in zip(results, (1500.0, 6000.0), strict=True):  # as a GPU run fills them in
        r.update(device="cuda:0", gpu_name="NVIDIA H100", peak_gpu_mb=peak)
    report = format_report(results, "configs/benchmark_sd15.yaml")
    assert "device:   cuda:0, NVIDIA H100" in report and "peak GPU MB" in report
    assert "0.25x peak GPU memory" in report
    assert next(line for line in report.splitlines() if line.startswith("naive ")).rstrip().endswith("6,000")


def test_the_stable_diffusion_sized_config_has_sd15s_shapes():
    # SD 1.5: an 859.5M UNet with 768-wide cross-attention (here MiniLM's 384: 849.9M), an 83.7M factor-8 VAE
    from ldm.config import load_config, vae_factor
    from ldm.models import build_unet, build_vae

    cfg = load_config(ROOT / "configs" / "benchmark_sd15.yaml")
    with torch.device("meta"):  # shapes only: no memory for 934M weights
        unet = build_unet(cfg.unet, cfg.vae.latent_channels, cfg.data.resolution // vae_factor(cfg), 384)
        vae = build_vae(cfg.vae, cfg.data.resolution)
    assert vae_factor(cfg) == 8 and cfg.data.resolution // vae_factor(cfg) == 64
    assert sum(p.numel() for p in unet.parameters()) == pytest.approx(849.9e6, rel=1e-3)
    assert sum(p.numel() for p in vae.parameters()) == pytest.approx(83.65e6, rel=1e-3)
    assert [type(b).__name__ for b in unet.down_blocks] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
