"""scripts/sample.py and scripts/export.py end to end: outputs, --from-png round trip, one-line errors."""

import shutil

import numpy as np
import pytest
import yaml
from PIL import Image
from support import no_model_libraries, run_script


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_images_carry_parameters_that_recreate_them(tiny_pipeline, tmp_path):
    out = tmp_path / "images"
    proc = run_script("scripts/sample.py", "a red square", "--model", str(tiny_pipeline), "--num-images", "3",
                      "--seed", "40", "--steps", "4", "--scheduler", "euler-a", "--negative-prompt", "blue",
                      "--variation-seed", "7", "--variation-strength", "0.3", "--batch-size", "2", "--out", str(out))
    listed = proc.stdout.split()
    assert listed == [str(out / n) for n in ("00000-40.png", "00001-41.png", "00002-42.png", "grid.png")]
    assert "seed 41" in proc.stderr
    text = Image.open(out / "00001-41.png").info["parameters"]
    assert text.startswith("a red square\nNegative prompt: blue\nSteps: 4, Sampler: Euler a, CFG scale: 3.0, Seed: 41")
    assert "Variation seed: 8, Variation seed strength: 0.3" in text
    again = tmp_path / "again"
    run_script("scripts/sample.py", "--from-png", str(out / "00001-41.png"), "--model", str(tiny_pipeline),
               "--out", str(again))
    assert np.array_equal(_pixels(again / "00001-41.png"), _pixels(out / "00001-41.png"))


def test_prompts_file_generates_each_line(tiny_pipeline, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\ufeffa red square\n\na blue circle\n", encoding="utf-8")
    proc = run_script("scripts/sample.py", "--prompts-file", str(prompts), "--model", str(tiny_pipeline),
                      "--seed", "1", "--steps", "2", "--out", str(tmp_path / "o"))
    names = [p.rsplit("/", 1)[-1] for p in proc.stdout.split()]
    assert names == ["00000-1.png", "00001-2.png", "grid.png"]
    assert Image.open(tmp_path / "o" / "00001-2.png").info["parameters"].startswith("a blue circle\n")


def test_seed_walk_writes_frames_gif_mp4_and_grid(tiny_pipeline, tmp_path):
    # bf16 is batch-exact; fp32 (the default on CPUs without native bf16) agrees only to ~1e-6, which
    # can move a pixel by one level
    exact = ["--precision", "bf16"]
    out = tmp_path / "walk"
    proc = run_script("scripts/sample.py", "--interpolate-seeds", "5", "6", "--prompt", "a red square", "--frames",
                      "4", "--loop", "--steps", "3", "--model", str(tiny_pipeline), "--out", str(out), *exact)
    names = [p.rsplit("/", 1)[-1] for p in proc.stdout.split()]
    assert names == [f"frame-{k:04d}.png" for k in range(4)] + ["grid.png", "animation.gif", "animation.mp4"]
    gif = Image.open(out / "animation.gif")
    assert gif.n_frames == 4 and gif.size == (256, 256)
    assert (out / "animation.mp4").read_bytes()[4:8] == b"ftyp"
    plain = tmp_path / "plain"
    run_script("scripts/sample.py", "a red square", "--seed", "6", "--steps", "3", "--model", str(tiny_pipeline),
               "--out", str(plain), *exact)
    assert np.array_equal(_pixels(out / "frame-0002.png"), _pixels(plain / "00000-6.png"))


@pytest.mark.parametrize("args, message", [
    (["x", "--scheduler", "magic"], "invalid choice: 'magic'"),
    (["x", "--width", "30"], "multiple of the model's factor"),
    (["x", "--steps", "0"], "steps must be at least 1"),
    (["--interpolate-seeds", "1", "2", "--prompt", "x", "--frames", "1"], "frames must be at least 2"),
    (["x", "--guidance", "-2"], "guidance scale must be >= 0"),
    (["--prompts-file", "/nonexistent/prompts.txt"], "cannot read prompts file"),
    (["x", "--model", "/nonexistent/model"], "model folder not found"),
    (["--from-png", "/nonexistent.png"], "PNG not found"),
])
def test_bad_arguments_fail_with_one_line(tiny_pipeline, tmp_path, args, message):
    if "--model" not in args:
        args = [*args, "--model", str(tiny_pipeline)]
    proc = run_script("scripts/sample.py", *args, check=False, env=no_model_libraries(tmp_path / "libs"))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_folder_without_a_guidance_default_warns_once(tiny_pipeline, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_pipeline, model)
    config = yaml.safe_load((model / "ldm_config.yaml").read_text())
    del config["train_unet"]["guidance_scale"]
    (model / "ldm_config.yaml").write_text(yaml.safe_dump(config))
    proc = run_script("scripts/sample.py", "x", "--model", str(model), "--steps", "1", "--out", str(tmp_path / "o"))
    assert proc.stderr.count("no train_unet.guidance_scale; using 7.5") == 1, proc.stderr


def test_help_needs_no_model_libraries(tmp_path):
    for script in ("scripts/sample.py", "scripts/export.py", "scripts/train_vae.py", "scripts/train_unet.py",
                   "scripts/evaluate.py"):
        proc = run_script(script, "--help", env=no_model_libraries(tmp_path / "libs"))
        assert proc.stdout.startswith("usage:"), (script, proc.stdout[:200])


def test_export_script_refuses_a_bad_model(tmp_path):
    proc = run_script("scripts/export.py", "--model", str(tmp_path), "--out", str(tmp_path / "x"), check=False,
                      env=no_model_libraries(tmp_path / "libs"))
    assert proc.returncode == 2 and "model_index.json" in proc.stderr and "Traceback" not in proc.stderr
