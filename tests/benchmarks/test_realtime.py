"""The walk/real-time benchmark renders and writes a seed walk and a prompt morph per mode, splits the time by
module, and reports frames/s and the student's ratios."""

import pytest

from benchmarks.realtime import STOCK_STEPS, bench_realtime, format_realtime_report


@pytest.fixture(scope="module")
def exported(tiny_pipeline, tmp_path_factory):
    from ldm.sampling.export import export_pipeline

    return export_pipeline(tiny_pipeline, tmp_path_factory.mktemp("bench") / "export")


@pytest.fixture(scope="module")
def student_folder(tmp_path_factory):
    """A random tiny few-step student that ships a tiny VAE, as the shipped student does."""
    from support import make_random_pipeline

    return make_random_pipeline(tmp_path_factory.mktemp("bench") / "student", seed=1, student=True, tiny_vae=True)


@pytest.mark.slow  # the realtime benchmark end to end
def test_every_mode_renders_both_animations_and_the_report_compares_them(tiny_pipeline, student_folder, exported):
    results = [bench_realtime("student", student_folder, frames=4, threads=1, cli_walk=True),
               bench_realtime("student-full", student_folder, frames=4, threads=1, cli_walk=True),
               bench_realtime("teacher", tiny_pipeline, frames=4, threads=1),
               bench_realtime("stock", tiny_pipeline, exported, frames=4, threads=1)]
    student, full, teacher, stock = results
    assert (student["scheduler"], student["steps"], student["decoder"]) == ("lcm", 2, "tiny")
    assert (full["decoder"], teacher["decoder"]) == ("full", "full") and "cli_walk" in full
    assert (stock["steps"], stock["guidance"], stock["scheduler"]) == (STOCK_STEPS, 7.5, "DDIMScheduler")
    for r in results:
        for kind in ("walk", "morph"):
            split = r[kind]["split"]
            assert r[kind]["fps"] > 0 and split["UNet"] > 0 and split["VAE decode"] > 0 and split["writing"] > 0
            # ours keeps prompt embeddings, so a prompt the warm-up embedded costs nothing in the walk
            assert split["text encoder"] >= 0 and sum(split.values()) - split["writing"] == pytest.approx(
                r[kind]["render_s"])
    assert stock["walk"]["split"]["text encoder"] > 0 and student["morph"]["split"]["text encoder"] > 0
    # the student makes 2 UNet calls a frame without the unconditional half; stock makes 50 with it
    assert student["walk"]["split"]["UNet"] < stock["walk"]["split"]["UNet"]
    # the end-to-end walk: two rounds of 3 and 4 frames, one profiled walk split into its parts
    walk = student["cli_walk"]
    assert walk["frames"] == [3, 4] and len(walk["fps"]) == 2  # tiny-model timings: their sign is noise
    assert all(walk["split"][part] > 0 for part in ("UNet", "VAE decode", "PNG frames", "GIF", "MP4"))
    assert sum(walk["split"].values()) == pytest.approx(walk["profiled_s"]) and walk["gflop_per_frame"] > 0
    assert "cli_walk" not in teacher and "cli_walk" not in stock
    report = format_realtime_report(results, {"fp32": 100.0, "bf16": 400.0})
    assert "student vs stock" in report and "student vs teacher" in report and "frames/s target" in report
    assert "student seed walk as sample.py writes it" in report and "the arithmetic alone allows" in report
    assert "student's tiny decoder vs the full VAE" in report and "the same end-to-end walk with the full VAE" in report


def test_bad_arguments_are_one_line(tmp_path):
    from support import run_script

    run = run_script("scripts/benchmark.py", "realtime", "--frames", "1", check=False)
    assert run.returncode == 2 and "--frames must be at least 2" in run.stderr
    run = run_script("scripts/benchmark.py", "realtime", "--student", str(tmp_path), check=False)
    assert run.returncode == 2 and "not a diffusers pipeline folder" in run.stderr
