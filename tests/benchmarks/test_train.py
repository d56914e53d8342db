"""The training benchmark runs both modes on the tiny config and reports sane numbers."""

import math

import pytest
from support import TINY

from ldm.bench import MODES, SquaresDataset, bench_train, format_report
from ldm.errors import LdmError


def test_squares_are_in_range_and_captioned():
    data = SquaresDataset(8, 16, seed=1)
    assert data.load(0).shape == (3, 16, 16)
    assert data.pixels.min() >= -1 and data.pixels.max() <= 1
    assert len(data.captions) == 8 and all(c.startswith("a ") for c in data.captions)


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


def test_unknown_mode_is_a_user_error():
    with pytest.raises(LdmError, match="mode"):
        bench_train(TINY, "fast")


@pytest.mark.parametrize("attention", ["math", "classic"])
def test_bf16_attention_variants_train(attention):
    r = bench_train(TINY, "ours", steps=1, warmup=0, batch_size=2, num_images=4, threads=1, precision="bf16",
                    attention=attention)
    assert r["precision"] == "bf16" and r["attention"] == attention and r["loss_finite"]


def test_scheduler_sweep_reports_fidelity_and_time(tiny_pipeline, tmp_path):
    import json

    from ldm.bench_sample import format_sweep, scheduler_sweep
    from ldm.data.shapes import make_shape

    with open(tmp_path / "metadata.jsonl", "w") as meta:
        for i in range(6):
            make_shape(i, 32)[0].save(tmp_path / f"{i}.png")
            meta.write(json.dumps({"file_name": f"{i}.png", "text": f"shape number {i}"}) + "\n")
    (tmp_path / "config.yaml").write_text(f"data: {{source: imagefolder, path: {tmp_path}, resolution: 32}}\n")
    rows = scheduler_sweep(tiny_pipeline, tmp_path / "config.yaml", captions=4, sweep=(("ddim", 2), ("euler", 3)))
    # the first row is stock diffusers' defaults: the folder's own scheduler (DDIM), 50 steps, CFG 7.5, fp32
    assert [(r["scheduler"], r["steps"]) for r in rows] == [("stock (ddim)", 50), ("ddim", 2), ("euler", 3)]
    assert (rows[0]["guidance"], rows[0]["precision"]) == (7.5, "fp32")
    assert rows[1]["guidance"] != 7.5  # ours: the model's own default guidance
    assert all(0 <= r["top1"] <= r["top5"] <= 1 and r["s_per_image"] > 0 for r in rows)
    assert "top-1" in format_sweep(rows).splitlines()[0]
    no_stock = scheduler_sweep(tiny_pipeline, tmp_path / "config.yaml", captions=4, sweep=(("ddim", 2),), stock=False)
    assert [r["scheduler"] for r in no_stock] == ["ddim"]
    assert no_stock[0]["top1"] == rows[1]["top1"]  # same captions and seeds: the same images


def test_matmul_rate_and_unet_meter(tiny_model):
    import torch

    from ldm.bench_sample import UNetMeter, matmul_gflops, matmul_rates

    assert matmul_gflops(torch.float32, n=128, repeats=2) > 0
    rates = matmul_rates()
    assert set(rates) == {"fp32", "bf16"} and min(rates.values()) > 0
    unet = tiny_model.pipe.unet
    meter = UNetMeter(unet)
    with torch.no_grad():
        unet(torch.randn(2, 4, 8, 8), torch.tensor(10), torch.randn(2, 16, 384))
    meter.count_flops(torch.randn(2, 4, 8, 8), torch.tensor(10), torch.randn(2, 16, 384))
    assert meter.calls == 1 and meter.flops_per_call > 1e6 and meter.gflops() > 0
