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
    assert meter.rows == meter.counted_rows == 2 and meter.total_flops() == meter.flops_per_call


def test_first_unet_is_the_one_generate_runs(tiny_model):
    from ldm.sampling.requests import ImageSpec, Settings

    with first_unet() as seen:
        tiny_model.generate([ImageSpec("a red square", 0)], Settings(steps=2))
    assert len(seen) == 1 and seen[0] is tiny_model.pipe.unet


@pytest.fixture(scope="module")
def exported(tiny_pipeline, tmp_path_factory):
    from ldm.sampling.export import export_pipeline

    return export_pipeline(tiny_pipeline, tmp_path_factory.mktemp("bench") / "export")


def test_both_modes_sample_and_report(tiny_pipeline, tiny_student, exported):
    results = [bench_sample(mode, tiny_pipeline, exported, num_images=2, threads=1) for mode in ("stock", "ours")]
    results.append(bench_sample("student", tiny_student.folder, exported, num_images=2, threads=1))
    stock, ours, student = results
    assert (stock["steps"], stock["guidance"], stock["precision"]) == (STOCK_STEPS, 7.5, "fp32")
    assert stock["scheduler"] == "DDIMScheduler"  # the folder's own
    assert ours["steps"] < STOCK_STEPS and ours["guidance"] != 7.5  # ldm's defaults, the model's guidance
    assert (student["scheduler"], student["steps"]) == ("lcm", 2)  # the student's folder's defaults
    for r in results:
        # one UNet call a step, both prompts and the unconditional half in one batch
        assert r["unet_calls"] == r["steps"] and r["num_images"] == [2]
        assert 0 < r["unet_s"] < r["wall_s"] and r["unet_gflops"] > 0 and r["peak_rss_mb"] > 0
        assert r["s_per_image"] == pytest.approx(r["wall_s"] / 2)
    # 50 steps with CFG against fewer steps: stock does the most arithmetic an image, the student the least
    assert stock["gflop_per_image"] > ours["gflop_per_image"] > student["gflop_per_image"] > 0
    report = format_sample_report(results, "tiny", {"fp32": 100.0, "bf16": 400.0})
    for mode in ("ours", "student"):
        speed = stock["wall_s"] / results[1 if mode == "ours" else 2]["wall_s"]
        assert f"{mode} vs stock: {speed:.2f}x faster" in report
    assert "fewer FLOPs an image" in report


def test_two_counts_give_the_marginal_time_an_image(tiny_pipeline, exported):
    r = bench_sample("ours", tiny_pipeline, exported, num_images=[1, 3], threads=1)
    assert r["num_images"] == [1, 3] and len(r["walls_s"]) == 2 and r["unet_calls"] == 2 * r["steps"]
    assert r["s_per_image"] == pytest.approx((r["walls_s"][1] - r["walls_s"][0]) / 2)
    report = format_sample_report([r], "tiny", {"fp32": 100.0, "bf16": 400.0})
    assert "marginal time per image between 1 and 3 images" in report
