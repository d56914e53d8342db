"""scripts/benchmark.py answers --help and mistakes before torch, diffusers or transformers load."""

import pytest
from support import TINY, no_model_libraries, run_script


@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["schedulers"], ["ui"]])
def test_help_needs_no_model_libraries(tmp_path, command):
    proc = run_script("scripts/benchmark.py", *command, "--help", env=no_model_libraries(tmp_path / "libs"))
    assert proc.stdout.startswith("usage: benchmark.py"), proc.stdout[:200]
    assert proc.stderr == ""  # no library warnings either


@pytest.mark.parametrize("args, message", [
    (["trian"], "invalid choice: 'trian'"),
    (["train", "--stpes", "3"], "unrecognized arguments: --stpes"),
    (["train", "--steps", "0"], "--steps must be at least 1"),
    (["train", "--warmup", "-1"], "--warmup must be at least 0"),
    (["train", "--config", "/nonexistent.yaml"], "config file not found"),
    (["train", "--config", str(TINY), "--attention", "fast"], "invalid choice: 'fast'"),
    (["sample", "--model", "/nonexistent/model"], "model folder not found"),
    (["sample", "--num-images", "0"], "--num-images must be at least 1"),
    (["sample", "--only", "ours"], "--only needs --export"),
    (["schedulers", "--captions", "0"], "--captions must be at least 1"),
    (["ui", "--clients", "4", "0"], "--clients must be at least 1, got 0"),
    (["ui", "--requests", "0"], "--requests must be at least 1"),
    (["ui", "--max-batch", "0"], "--max-batch must be at least 1"),
    (["ui", "--model", "/nonexistent/model"], "model folder not found"),
    (["train", "--config", "configs/tiny.yaml", "--device", "gpu0"], "unknown device 'gpu0'"),
])
def test_bad_arguments_are_one_line_before_torch(tmp_path, args, message):
    proc = run_script("scripts/benchmark.py", *args, check=False, env=no_model_libraries(tmp_path / "libs"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert message in lines[0], proc.stderr


def test_schedulers_needs_a_config_naming_the_dataset(tiny_pipeline, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for item in tiny_pipeline.iterdir():  # the folder without its ldm_config.yaml
        if item.name != "ldm_config.yaml":
            (model / item.name).symlink_to(item)
    proc = run_script("scripts/benchmark.py", "schedulers", "--model", str(model), check=False,
                      env=no_model_libraries(tmp_path / "libs"))
    assert proc.returncode == 2 and "pass --config" in proc.stderr and "Traceback" not in proc.stderr


def _table(report: str) -> list[str]:
    """The rows under a report's `mode ...` header, up to the blank line."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("mode ")) + 1
    return lines[start:lines.index("", start)]


@pytest.mark.slow  # two benchmark children
def test_train_runs_both_modes_in_children_and_prints_the_ratio():
    proc = run_script("scripts/benchmark.py", "train", "--config", str(TINY), "--steps", "1", "--warmup", "0",
                      "--batch-size", "2", "--threads", "1")
    assert proc.stdout.startswith(f"UNet training benchmark, {TINY}"), proc.stdout[:300]
    assert [row.split()[0] for row in _table(proc.stdout)] == ["ours", "naive"] and "ours/naive: " in proc.stdout
    assert "running ours ..." in proc.stderr and "running naive ..." in proc.stderr


@pytest.mark.slow  # exports, then benchmark children
def test_sample_exports_then_times_stock_and_ours(tiny_pipeline):
    proc = run_script("scripts/benchmark.py", "sample", "--model", str(tiny_pipeline), "--num-images", "1",
                      "--threads", "1")
    assert [row.split()[:2] for row in _table(proc.stdout)] == [["stock", "DDIMScheduler"], ["ours", "euler-a"]]
    assert "ours vs stock: " in proc.stdout
