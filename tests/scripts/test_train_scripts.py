"""scripts/train_vae.py and scripts/train_unet.py: mistakes are answered before any model library loads."""

import pytest
from support import TINY, no_model_libraries, run_script


@pytest.mark.parametrize("script", ["scripts/train_vae.py", "scripts/train_unet.py"])
@pytest.mark.parametrize("case, message", [
    ("file", "exists and is not a folder"),
    ("under_file", "cannot create it"),
    ("bad_value", "train_unet.learning_rate"),
])
def test_bad_run_folder_or_config_is_one_line_before_torch(tiny_pipeline, tmp_path, script, case, message):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    out = {"file": a_file, "under_file": a_file / "run"}.get(case, tmp_path / "run")
    extra = ["train_unet.learning_rate=-1"] if case == "bad_value" else []
    if script.endswith("train_unet.py"):
        extra.append(f"--vae={tiny_pipeline / 'vae'}")  # a VAE to train on, so the run folder is what is wrong
    proc = run_script(script, "--config", str(TINY), "--output-dir", str(out), *extra, check=False,
                      env=no_model_libraries(tmp_path / "libs"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert a_file.read_text() == "not a folder" and not (tmp_path / "run").exists()
