"""Paths and helpers shared by the tests (importable as `support`, see pytest pythonpath)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def run_script(*args: str, env: dict | None = None, check: bool = True, timeout: int = 600):
    """Run a Python script from the repository in a subprocess and return the CompletedProcess."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


class _Planted:
    """Unpickling this creates a folder: evidence that a file was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def same_state(a, b) -> bool:
    """Deep equality for nested training state with tensors, arrays and NaN (dtypes and container types too)."""
    import math

    import numpy as np
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def planted_pickle(marker: Path) -> bytes:
    """A code-carrying pickle: loading it creates the folder `marker`."""
    import pickle

    return pickle.dumps(_Planted(marker))


def no_model_libraries(folder: Path) -> dict:
    """An environment in which importing torch, diffusers or transformers fails loudly.

    Scripts check their arguments before they import those (seconds of start-up); running a bad-input
    case under this environment shows that the check really comes first.
    """
    for name in ("torch", "diffusers", "transformers"):
        (folder / name).mkdir(parents=True, exist_ok=True)
        message = f"{name} imported before the arguments were checked"
        (folder / name / "__init__.py").write_text(f"raise ImportError({message!r})\n")
    # the checkout under test next (a script then imports its ldm, not an installed one), then the caller's path
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), str(ROOT), os.environ.get("PYTHONPATH")]))}


def make_random_pipeline(folder: Path, seed: int = 0, text_encoder=None, tokenizer=None, student: bool = False,
                         tiny_vae: bool = False) -> Path:
    """A randomly initialised tiny pipeline folder (configs/tiny.yaml sizes) in diffusers' layout; with
    `student`, shaped like a few-step student (a guidance embedding, LCMScheduler); with `tiny_vae`, a random
    tiny autoencoder beside its VAE (vae_tiny/)."""
    import torch

    from ldm.config import load_config, vae_factor
    from ldm.models import (
        build_noise_scheduler,
        build_unet,
        build_vae,
        cross_attention_dim,
        load_text_encoder,
    )
    from ldm.pipeline_folder import sampling_scheduler, save_pipeline

    cfg = load_config(TINY)
    if text_encoder is None:
        tokenizer, text_encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    else:
        cfg.text.encoder = "given"  # not the packaged encoder: save_pipeline copies it into the folder
    torch.manual_seed(seed)
    vae = build_vae(cfg.vae, cfg.data.resolution)
    factor = vae_factor(cfg)
    unet = build_unet(cfg.unet, cfg.vae.latent_channels, cfg.data.resolution // factor,
                      cross_attention_dim(text_encoder))
    scheduler = sampling_scheduler(build_noise_scheduler(cfg.noise))
    if student:
        from diffusers import LCMScheduler, UNet2DConditionModel

        unet = UNet2DConditionModel.from_config(unet.config, time_cond_proj_dim=256)
        scheduler = LCMScheduler.from_config(scheduler.config)
        cfg.finetune.method, cfg.distill.default_steps = "lcm", 2
    save_pipeline(folder, cfg, unet, vae, scheduler, tokenizer, text_encoder)
    if tiny_vae:
        from ldm.folders import TINY_VAE
        from ldm.train.tiny_vae import build_tiny_vae

        build_tiny_vae(vae, cfg.train_tiny_vae).save_pretrained(folder / TINY_VAE, safe_serialization=True)
    return folder


def make_tiny_clip(folder: Path, max_length: int = 16):
    """A randomly initialised tiny CLIP text encoder and a character-level CLIP tokenizer (no download)."""
    import json

    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=max_length, bos_token_id=0,
                            eos_token_id=1, pad_token_id=1)
    return tokenizer, CLIPTextModel(config).eval()


def shapes_folder(folder: Path, count: int = 24) -> Path:
    """An image folder of `count` 32 px shapes with a metadata.jsonl of their captions."""
    import json

    from ldm.data.shapes import make_shape

    folder.mkdir(parents=True)
    with open(folder / "metadata.jsonl", "w") as meta:
        for i in range(count):
            image, caption = make_shape(i, 32)
            image.save(folder / f"{i:03d}.png")
            meta.write(json.dumps({"file_name": f"{i:03d}.png", "text": caption}) + "\n")
    return folder


def kill_then_resume(train, folder: Path, kill_at: int, *args: str) -> str:
    """Run train(folder, *args, script=..., check=..., env=...) killed at its `kill_at`-th loss call
    (tests/helpers/patched_train.py), then again with --resume latest; the resumed run's output."""
    killed = train(folder, *args, script="tests/helpers/patched_train.py", check=False,
                   env={"LDM_TEST_KILL_AT": str(kill_at)})
    assert killed.returncode != 0, "the run was not killed"
    resumed = train(folder, *args, "--resume", "latest", script="tests/helpers/patched_train.py")
    return resumed.stderr + resumed.stdout
