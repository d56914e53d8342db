"""The sampling benchmark times stock diffusers and ours on the same model, and meters the UNet."""

import pytest
import torch

from benchmarks.sample import STOCK_STEPS, UNetMeter, bench_sample, first_unet, format_sample_report


def test_unet_meter(tiny_model):
    unet = tiny_model.pipe.unet
    meter = UNetMeter(unet)
    with torch.no_grad():
        unet(torch.randn(2, 4, 8, 8), torch.tensor(10), torch.randn(2, 16, 384))
    assert meter.call_shapes == (torch.Size([2, 4, 8, 8]), torch.Size([2, 16, 384]))
    meter.count_flops(torch.randn(2, 4, 8, 8), torch.tensor(10), torch.randn(2, 16, 384))
    assert meter.calls == 1 and meter.flops_per_call > 1e6 and meter.gflops() > 0


def test_first_unet_is_the_one_generate_runs(tiny_model):
    from ldm.sampling.requests import ImageSpec, Settings

    with first_unet() as seen:
        tiny_model.generate([ImageSpec("a red square", 0)], Settings(steps=2))
    assert len(seen) == 1 and seen[0] is tiny_model.pipe.unet


@pytest.fixture(scope="module")
def exported(tiny_pipeline, tmp_path_factory):
    from ldm.sampling.sampler import export_pipeline

    return export_pipeline(tiny_pipeline, tmp_path_factory.mktemp("bench") / "export")


def test_both_modes_sample_and_report(tiny_pipeline, exported):
    results = [bench_sample(mode, tiny_pipeline, exported, num_images=2, threads=1) for mode in ("stock", "ours")]
    stock, ours = results
    assert (stock["steps"], stock["guidance"], stock["precision"]) == (STOCK_STEPS, 7.5, "fp32")
    assert stock["scheduler"] == "DDIMScheduler"  # the folder's own
    assert ours["steps"] < STOCK_STEPS and ours["guidance"] != 7.5  # ldm's defaults, the model's guidance
    for r in results:
        # one UNet call a step, both prompts and the unconditional half in one batch
        assert r["unet_calls"] == r["steps"] and r["num_images"] == 2
        assert 0 < r["unet_s"] < r["wall_s"] and r["unet_gflops"] > 0 and r["peak_rss_mb"] > 0
    report = format_sample_report(results, "tiny", {"fp32": 100.0, "bf16": 400.0})
    assert "ours vs stock" in report
    speed = stock["wall_s"] / ours["wall_s"]
    assert f"{speed:.2f}x faster" in report
