"""scripts/sample.py and scripts/export.py end to end: outputs, --from-png round trip, one-line errors."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from support import ROOT, no_model_libraries, run_script


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.slow  # sample.py runs in subprocesses
def test_images_carry_parameters_that_recreate_them(tiny_pipeline, tmp_path):
    out = tmp_path / "images"
    proc = run_script("scripts/sample.py", "a red square", "--model", str(tiny_pipeline), "--num-images", "3",
                      "--seed", "40", "--steps", "4", "--scheduler", "euler-a", "--negative-prompt", "blue",
                      "--variation-seed", "7", "--variation-strength", "0.3", "--batch-size", "2", "--out", str(out))
    listed = proc.stdout.split()
    assert listed == [str(out / n) for n in ("00000-40.png", "00001-41.png", "00002-42.png", "grid-0000.png")]
    assert "seed 41" in proc.stderr
    text = Image.open(out / "00001-41.png").info["parameters"]
    assert text.startswith("a red square\nNegative prompt: blue\nSteps: 4, Sampler: Euler a, CFG scale: 3.0, Seed: 41")
    assert "Variation seed: 8, Variation seed strength: 0.3" in text
    again = tmp_path / "again"
    run_script("scripts/sample.py", "--from-png", str(out / "00001-41.png"), "--model", str(tiny_pipeline),
               "--out", str(again))
    assert np.array_equal(_pixels(again / "00000-41.png"), _pixels(out / "00001-41.png"))


def test_prompts_file_generates_each_line(tiny_pipeline, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\ufeffa red square\n\na blue circle\n", encoding="utf-8")
    proc = run_script("scripts/sample.py", "--prompts-file", str(prompts), "--model", str(tiny_pipeline),
                      "--seed", "1", "--steps", "2", "--out", str(tmp_path / "o"))
    names = [p.rsplit("/", 1)[-1] for p in proc.stdout.split()]
    assert names == ["00000-1.png", "00001-2.png", "grid-0000.png"]
    assert Image.open(tmp_path / "o" / "00001-2.png").info["parameters"].startswith("a blue circle\n")


@pytest.mark.slow  # sample.py runs in subprocesses
def test_seed_walk_writes_frames_gif_mp4_and_grid(tiny_pipeline, tmp_path):
    # bf16 is batch-exact; fp32 (the default on CPUs without native bf16) agrees only to ~1e-6, which
    # can move a pixel by one level
    exact = ["--precision", "bf16"]
    proc = run_script("scripts/sample.py", "--interpolate-seeds", "5", "6", "--prompt", "a red square", "--frames",
                      "4", "--loop", "--steps", "3", "--model", str(tiny_pipeline), "--out", str(tmp_path), *exact)
    out = tmp_path / "00000-walk"  # the walk's own numbered folder
    names = [str(Path(p).relative_to(out)) for p in proc.stdout.split()]
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
    (["x", "--width", "30"], "multiple of 8, this model's size step"),
    (["x", "--steps", "0"], "steps must be at least 1"),
    (["--interpolate-seeds", "1", "2", "--prompt", "x", "--frames", "1"], "frames must be at least 2"),
    (["x", "--guidance", "-2"], "guidance scale must be >= 0"),
    (["--prompts-file", "/nonexistent/prompts.txt"], "cannot read prompts file"),
    (["x", "--model", "/nonexistent/model"], "model folder not found"),
    (["--from-png", "/nonexistent.png"], "PNG not found"),
    (["x", "--batch-size", "0"], "batch size must be at least 1"),
    (["--interpolate-seeds", "1", "2", "--prompt", "x", "--fps", "0"], "fps must be above 0"),
    (["x", "--out", "/dev/null"], "--out /dev/null exists and is not a folder"),
    (["x", "--strength", "0.5"], "--strength needs --init-image"),
    (["x", "--mask", "m.png"], "--mask needs --init-image"),
    (["x", "--xyz", "steps=2,x"], "X/Y/Z axis steps: values must be whole numbers"),
    (["x", "--xyz", "scheduler=euler,magic"], "unknown scheduler 'magic'"),
    (["x", "--masked-content", "blur"], "invalid choice: 'blur'"),
    (["x", "--decoder", "tiny"], "this model ships no tiny decoder (vae_tiny/)"),
    (["--from-png", "tiny.png"], "was decoded by a tiny VAE (Decoder: tiny), which"),
    (["--interpolate-seeds", "1", "2", "--prompt", "x", "--init-image", "a.png"], "make images, not seed walks"),
])
def test_bad_arguments_fail_with_one_line(tiny_pipeline, tmp_path, args, message):
    if "--model" not in args:
        args = [*args, "--model", str(tiny_pipeline)]
    if "--out" not in args:
        args = [*args, "--out", str(tmp_path / "out")]
    if "tiny.png" in args:  # a student's image, from a model with a tiny VAE: this model has none
        text = "cat face\nSteps: 4, Sampler: LCM, CFG scale: 3.0, Seed: 5, Size: 32x32, Model: student, Decoder: tiny"
        info = PngInfo()
        info.add_text("parameters", text)
        Image.new("RGB", (32, 32)).save(tmp_path / "tiny.png", pnginfo=info)
        args = [str(tmp_path / "tiny.png") if a == "tiny.png" else a for a in args]
    proc = run_script("scripts/sample.py", *args, check=False, env=no_model_libraries(tmp_path / "libs"))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # sample.py runs in subprocesses
def test_image_to_image_writes_its_strength_and_from_png_needs_the_same_image(tiny_pipeline, tmp_path):
    start = tmp_path / "start.png"
    Image.fromarray(np.tile(np.arange(48, dtype=np.uint8)[None, :, None] * 5, (40, 1, 3))).save(start)  # 48x40
    out = tmp_path / "edit"
    run_script("scripts/sample.py", "a red square", "--init-image", str(start), "--strength", "0.6", "--seed", "3",
               "--steps", "4", "--model", str(tiny_pipeline), "--out", str(out))
    text = Image.open(out / "00000-3.png").info["parameters"]
    assert "Denoising strength: 0.6, Init image hash: " in text
    assert Image.open(out / "00000-3.png").size == (32, 32)  # the model's size, the start fitted to it
    args = ["scripts/sample.py", "--from-png", str(out / "00000-3.png"), "--model", str(tiny_pipeline)]
    refused = run_script(*args, "--out", str(tmp_path / "no"), check=False)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"error: {out / '00000-3.png'} was made from an init image (Denoising strength 0.6): pass --init-image PATH"]
    run_script(*args, "--init-image", str(start), "--out", str(tmp_path / "again"))
    assert np.array_equal(_pixels(tmp_path / "again" / "00000-3.png"), _pixels(out / "00000-3.png"))
    missing = run_script("scripts/sample.py", "x", "--init-image", str(tmp_path / "nope.png"), "--model",
                         str(tiny_pipeline), "--out", str(tmp_path / "o"), check=False)
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"error: init image {tmp_path / 'nope.png'}: file not found"]
    assert not (tmp_path / "o").exists()  # nothing written for a mistake


@pytest.mark.slow  # sample.py runs in subprocesses
def test_inpainting_from_the_command_line_keeps_the_unmasked_pixels(tiny_pipeline, tmp_path):
    start, mask = tmp_path / "start.png", tmp_path / "mask.png"
    Image.fromarray(np.full((32, 32, 3), (30, 140, 60), np.uint8)).save(start)
    painted = np.zeros((32, 32), np.uint8)
    painted[8:20, 8:20] = 255
    Image.fromarray(painted).save(mask)
    out = tmp_path / "inpaint"
    args = ["--init-image", str(start), "--mask", str(mask), "--mask-blur", "0", "--masked-content", "fill",
            "--inpaint-area", "masked", "--inpaint-padding", "4", "--steps", "3", "--model", str(tiny_pipeline)]
    run_script("scripts/sample.py", "a red square", "--seed", "5", *args, "--out", str(out))
    result = _pixels(out / "00000-5.png")
    keep = painted == 0
    assert np.array_equal(result[keep], np.asarray(Image.open(start))[keep]) and not np.array_equal(result, start)
    text = Image.open(out / "00000-5.png").info["parameters"]
    assert "Mask blur: 0, Masked content: fill, Inpaint area: Only masked, Masked area padding: 4, Mask hash: " in text
    refused = run_script("scripts/sample.py", "--from-png", str(out / "00000-5.png"), "--init-image", str(start),
                         "--model", str(tiny_pipeline), "--out", str(tmp_path / "no"), check=False)
    assert refused.stderr.strip().splitlines() == [
        f"error: {out / '00000-5.png'} was inpainted: pass --mask PATH (and --init-image PATH)"]
    run_script("scripts/sample.py", "--from-png", str(out / "00000-5.png"), "--init-image", str(start), "--mask",
               str(mask), "--model", str(tiny_pipeline), "--out", str(tmp_path / "again"))
    assert np.array_equal(_pixels(tmp_path / "again" / "00000-5.png"), result)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "small.png")
    wrong = run_script("scripts/sample.py", "x", "--init-image", str(start), "--mask", str(tmp_path / "small.png"),
                       "--model", str(tiny_pipeline), "--out", str(tmp_path / "o"), check=False)
    assert wrong.returncode == 2 and "is 16x16 but the init image is 32x32" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


@pytest.mark.slow  # sample.py runs in subprocesses
def test_xyz_plot_writes_every_cell_and_a_labelled_grid(tiny_pipeline, tmp_path):
    proc = run_script("scripts/sample.py", "a red square", "--xyz", "prompt=red,blue", "steps=2,3", "--seed", "4",
                      "--model", str(tiny_pipeline), "--out", str(tmp_path))
    names = [Path(p).name for p in proc.stdout.split()]
    assert names == ["00000-4.png", "00001-4.png", "00002-4.png", "00003-4.png", "xyz-grid-0000.png"]
    assert Image.open(tmp_path / "00001-4.png").info["parameters"].startswith("a blue square\nSteps: 2")
    assert Image.open(tmp_path / "xyz-grid-0000.png").size[0] > 2 * 128


@pytest.mark.slow  # sample.py runs in subprocesses
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


@pytest.mark.slow  # sample.py runs in subprocesses
def test_runs_into_one_folder_continue_the_numbering_and_overwrite_nothing(tiny_pipeline, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "00041-7.png").write_bytes(b"an earlier image")  # numbering goes on after the largest number there
    (out / "grid-0002.png").write_bytes(b"an earlier grid")
    common = ["--model", str(tiny_pipeline), "--steps", "2", "--out", str(out)]
    first = run_script("scripts/sample.py", "a red square", "--num-images", "2", "--seed", "1", *common).stdout.split()
    second = run_script("scripts/sample.py", "a red square", "--num-images", "2", "--seed", "1", *common).stdout.split()
    walk = run_script("scripts/sample.py", "--interpolate-seeds", "1", "2", "--prompt", "a red square", "--frames",
                      "2", *common).stdout.split()
    again = run_script("scripts/sample.py", "a red square", "--seed", "9", *common).stdout.split()
    assert first == [str(out / n) for n in ("00042-1.png", "00043-2.png", "grid-0003.png")]
    assert second == [str(out / n) for n in ("00044-1.png", "00045-2.png", "grid-0004.png")]
    assert walk[0] == str(out / "00046-walk" / "frame-0000.png") and walk[-1].endswith("00046-walk/animation.mp4")
    assert again == [str(out / "00047-9.png")]  # one image: no grid
    assert (out / "00041-7.png").read_bytes() == b"an earlier image"
    assert (out / "grid-0002.png").read_bytes() == b"an earlier grid"
    assert np.array_equal(_pixels(out / "00042-1.png"), _pixels(out / "00044-1.png"))
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("kind", ["images", "walk"])
@pytest.mark.slow  # sample.py runs in subprocesses
def test_ctrl_c_keeps_the_finished_images_and_says_how_many(tiny_pipeline, tmp_path, kind):
    out = tmp_path / "out"
    what = {"images": ["a red square", "--num-images", "40"],
            "walk": ["--interpolate-seeds", "1", "2", "--prompt", "a red square", "--frames", "40"]}[kind]
    proc = subprocess.Popen(
        [sys.executable, "scripts/sample.py", *what, "--seed", "1", "--steps", "20", "--batch-size", "2",
         "--model", str(tiny_pipeline), "--out", str(out)],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a shell that starts the test runner in the background ignores SIGINT for it; a user's terminal does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pattern = "0*.png" if kind == "images" else "00000-walk/frame-*.png"
    deadline = time.monotonic() + 300
    while not list(out.glob(pattern)) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    kept = sorted(out.glob(pattern))
    unit = "images" if kind == "images" else "frames (no animation)"
    last = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert proc.returncode == 130, stderr[-2000:]
    assert last == f"interrupted: kept {len(kept)} of 40 {unit} in {kept[0].parent}", stderr[-2000:]
    assert 2 <= len(kept) < 40 and len(kept) % 2 == 0  # whole batches of 2: one finished is all written
    assert "Traceback" not in stderr
    assert stdout.split() == [str(p) for p in kept]
    for path in kept:  # whole PNGs that re-create themselves
        assert Image.open(path).info["parameters"].startswith("a red square\n")
    assert not list(out.rglob(".*")) and not list(out.rglob("grid*")) and not list(out.rglob("animation.*"))
