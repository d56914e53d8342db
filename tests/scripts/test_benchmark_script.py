"""scripts/benchmark.py answers --help and mistakes before torch, diffusers or transformers load."""

import pytest
from support import TINY, no_model_libraries, run_script


@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["schedulers"]])
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
