"""The same script under `accelerate launch` with two CPU processes.

Accelerate's `--cpu` launcher starts a single process (multi-CPU launching needs MPI), so two local
processes are started with its torchrun-based launcher; on a machine without GPUs they train as
one gloo process group.
"""

import json
import os
import subprocess
import sys

import pytest
from support import ROOT, TINY


def test_two_process_cpu_run(tiny_run, tmp_path):
    # this interpreter's accelerate (the one on PATH may belong to another Python without ldm)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "scripts/train_unet.py", "--config", str(TINY), "--output-dir", str(tmp_path),
           "--vae", str(tiny_run / "vae"), "train_unet.max_steps=6", "train_unet.checkpoint_every=3",
           "train_unet.batch_size=8", "data.shapes_count=64"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x 2 processes" in proc.stderr + proc.stdout
    assert (proc.stderr + proc.stdout).count("result ->") == 1  # only the main process writes
    assert (tmp_path / "checkpoints" / "unet" / "checkpoint-6" / "ldm_state.json").is_file()
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "model_index.json").is_file()


@pytest.mark.slow
def test_fsdp_sharded_checkpoint_is_safetensors_and_resumes_exactly(tmp_path):
    # torch shards on CPU over gloo (Accelerate's FSDP plugin needs an accelerator): see the helper's docstring
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "tests/helpers/fsdp_checkpoint.py", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.count("fsdp checkpoint ok") == 2
    state = json.loads((tmp_path / "checkpoint-3" / "ldm_state.json").read_text())
    assert state == {"step": 3, "format": "safetensors-1", "optimizer_keys": "names"}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ti", "lora"])
def test_teaching_runs_under_two_processes(method, tiny_pipeline, tmp_path):
    # textual inversion trains the text encoder's new vector alone: its UNet has no weight that trains, which
    # DistributedDataParallel refuses, and its encoder is the model that syncs
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for k in range(2):
        Image.new("RGB", (40, 40), (90 * k, 200, 30)).save(images / f"{k}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "scripts/teach.py", str(images), "--name", "zorbly", "--method", method, "--class", "a square",
           "--out", str(out), "--model", str(tiny_pipeline), "--steps", "3", "--set", "teach.views=2",
           "--set", "teach.class_images=2", "--set", "train_unet.batch_size=2", "--set", "train_unet.sample_every=2",
           "--set", "train_unet.checkpoint_every=2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    out_text = proc.stdout + proc.stderr
    assert proc.returncode == 0, out_text[-3000:]
    assert "x 2 processes" in out_text and out_text.count("result ->") == 1
    result = "learned_embeds.safetensors" if method == "ti" else "pytorch_lora_weights.safetensors"
    assert (out / result).is_file() and (out / "teach.json").is_file()
    assert (out / "checkpoints" / "unet" / "checkpoint-3" / "ldm_state.json").is_file()
