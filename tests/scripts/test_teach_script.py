"""scripts/teach.py: every bad input is one line (the ones that need no model before torch loads), nothing
half-written is left as a result, a full disk says so, and a checkpoint holds only what trains yet resumes exactly."""

import json
import os
import resource
import shutil

import pytest
from PIL import Image
from safetensors.torch import load_file
from support import ROOT, no_model_libraries, run_script, same_state

RESULTS = ("pytorch_lora_weights.safetensors", "learned_embeds.safetensors", "README.md", "teach.json")


def _one_line(proc, message: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    # one error line; a run that fails mid-way may have progress lines around it (tqdm redraws its bar on exit)
    errors = [line for line in proc.stderr.replace("\r", "\n").splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def _images(folder, count: int = 2):
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        Image.new("RGB", (48, 40), (40 * k, 200, 30)).save(folder / f"{k}.png")
    return folder


@pytest.mark.parametrize("case, message", [
    ("no images", "no images"),
    ("missing", "image not found"),
    ("too many", "51 images"),
    ("empty name", "needs a name"),
    ("long name", "1000 characters"),
    ("two words", "one word"),
    ("used out", "already holds a run"),
    ("zero steps", "--steps must be at least 1"),
    ("no run to resume", "no checkpoint"),
])
def test_bad_inputs_are_one_line_before_any_model_loads(case, message, tmp_path):
    images, out, name = [str(_images(tmp_path / "imgs"))], tmp_path / "out", "zorbly"
    extra = []
    if case == "no images":
        images = [str(_images(tmp_path / "none", 0))]
    elif case == "missing":
        images = [str(tmp_path / "nope.png")]
    elif case == "too many":
        images = [str(_images(tmp_path / "many", 51))]
    elif case == "empty name":
        name = ""
    elif case == "long name":
        name = "z" * 1000
    elif case == "two words":
        name = "my cat"
    elif case == "used out":
        out.mkdir()
        (out / "something").write_text("x")
    elif case == "zero steps":
        extra = ["--steps", "0"]
    elif case == "no run to resume":
        extra = ["--resume"]
    proc = run_script("scripts/teach.py", *images, "--name", name, "--out", str(out), *extra, check=False,
                      env=no_model_libraries(tmp_path / "libs"))
    _one_line(proc, message)
    assert case == "used out" or not out.exists() or not any(out.iterdir())


def test_help_needs_no_model_libraries(tmp_path):
    proc = run_script("scripts/teach.py", "--help", env=no_model_libraries(tmp_path / "libs"))
    assert proc.stdout.startswith("usage:") and "--class" in proc.stdout


@pytest.mark.slow  # teach.py loads torch in subprocesses
@pytest.mark.parametrize("case, message", [("not an image", "notes.png: not an image"),
                                           ("a known word", "'bird' is already a word"),
                                           ("a gif and a cmyk jpeg", None)])
def test_bad_inputs_found_after_loading_leave_no_result(case, message, tiny_pipeline, tmp_path):
    folder = _images(tmp_path / "imgs")
    name = "bird" if case == "a known word" else "zorbly"
    if case == "not an image":
        (folder / "notes.png").write_text("hello")
    out = tmp_path / "out"
    steps = ["--steps", "1", "--set", "train_unet.sample_every=100", "--set", "teach.class_images=1",
             "--set", "teach.views=2", "--set", "train_unet.batch_size=2", "--class", "a square"]
    if message is None:  # odd modes teach like any others
        Image.new("P", (30, 30), 3).save(folder / "anim.gif")
        Image.new("CMYK", (70, 20), (0, 200, 0, 0)).save(folder / "print.jpg")
        run_script("scripts/teach.py", str(folder), "--name", name, "--out", str(out), "--model",
                   str(tiny_pipeline), *steps)
        assert all((out / f).is_file() for f in ("pytorch_lora_weights.safetensors", "README.md"))
        assert len(list((out / "teach-images" / "images").iterdir())) == 4  # four images, at least teach.views
        proc = run_script("scripts/sample.py", "zorbly riding a bicycle", "--lora", str(out), "--model",
                          str(tiny_pipeline), "--steps", "2", "--seed", "1", "--out", str(tmp_path / "images"))
        assert "LoRA" in Image.open(proc.stdout.split()[0]).text["parameters"]
        return
    proc = run_script("scripts/teach.py", str(folder), "--name", name, "--out", str(out), "--model",
                      str(tiny_pipeline), *steps, check=False)
    _one_line(proc, message)
    assert not any((out / f).exists() for f in RESULTS)


@pytest.mark.slow  # a real run until the disk (a file-size limit) refuses a write
def test_a_full_disk_is_one_line_and_offers_no_result(tiny_pipeline, tmp_path):
    import subprocess
    import sys

    def limit():  # the latent cache's and the checkpoint's files are over 10 KB: a write fails as on a full disk
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "scripts/teach.py", str(_images(tmp_path / "imgs")), "--name", "zorbly",
                           "--out", str(out), "--model", str(tiny_pipeline), "--method", "ti", "--steps", "2",
                           "--set", "train_unet.sample_every=100", "--set", "teach.views=2",
                           "--set", "train_unet.batch_size=2"],
                          cwd=ROOT, capture_output=True, text=True, preexec_fn=limit, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    _one_line(proc, "no room to write in")
    assert not any((out / f).exists() for f in RESULTS)


@pytest.mark.slow  # teach.py and sample.py in subprocesses
def test_a_taught_embedding_samples_by_its_folder(tiny_pipeline, tmp_path):
    out = tmp_path / "ti"
    proc = run_script("scripts/teach.py", str(_images(tmp_path / "imgs")), "--name", "Zorbly", "--out", str(out),
                      "--model", str(tiny_pipeline), "--method", "ti", "--steps", "2", "--set",
                      "train_unet.sample_every=1", "--set", "teach.views=2", "--set", "train_unet.batch_size=2")
    assert str(out / "learned_embeds.safetensors") in proc.stdout.split()
    assert len(list((out / "samples").glob("unet-*.png"))) == 2  # a preview each step here
    card = json.loads((out / "teach.json").read_text())
    assert card["steps"] == 2 and len(card["preview_changes"]) == 1 and card["name_likeness_after"] > 0
    proc = run_script("scripts/sample.py", "a zorbly on a red background", "--embedding", str(out), "--model",
                      str(tiny_pipeline), "--steps", "2", "--seed", "1", "--out", str(tmp_path / "images"))
    assert Image.open(proc.stdout.split()[0]).size == (32, 32)
    proc = run_script("scripts/sample.py", "zorbly", "--embedding", str(tmp_path), "--model", str(tiny_pipeline),
                      check=False, env=no_model_libraries(tmp_path / "libs"))
    _one_line(proc, "holds no embedding")


@pytest.mark.slow  # teach.py in subprocesses
@pytest.mark.parametrize("method, result", [("ti", "learned_embeds.safetensors"),
                                            ("lora", "pytorch_lora_weights.safetensors")])
def test_a_checkpoint_holds_what_trains_and_resumes_to_the_unbroken_result(method, result, tiny_pipeline, tmp_path):
    args = [str(_images(tmp_path / "imgs")), "--name", "zorbly", "--model", str(tiny_pipeline), "--method", method,
            "--steps", "4", "--set", "train_unet.checkpoint_every=2", "--set", "train_unet.checkpoints_total_limit=2",
            "--set", "train_unet.sample_every=100", "--set", "teach.views=2", "--set", "train_unet.batch_size=2"]
    whole = tmp_path / "whole"
    run_script("scripts/teach.py", *args, "--out", str(whole))
    middle = whole / "checkpoints" / "unet" / "checkpoint-2"
    unet = load_file(middle / "model.safetensors")
    if method == "ti":  # the frozen UNet and text encoder stay in the model folder: only the new vector is kept
        assert not unet and list(load_file(middle / "model_1.safetensors")) == ["embeddings.word_embeddings.vectors"]
    else:
        assert unet and all(".lora_" in name for name in unet)
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    shutil.rmtree(resumed / "checkpoints" / "unet" / "checkpoint-4")
    for name in RESULTS:
        (resumed / name).unlink(missing_ok=True)
    run_script("scripts/teach.py", *args, "--out", str(resumed), "--resume", str(resumed / middle.relative_to(whole)))
    assert same_state(load_file(whole / result), load_file(resumed / result))
