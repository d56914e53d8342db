"""Train configs/tiny.yaml (VAE then UNet) on the shapes data and check that it learned."""

import json

import torch
from support import TINY

from ldm.config import load_config
from ldm.data.dataset import build_dataset
from ldm.metrics import heldout_psnr
from ldm.models import load_vae
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.sampler import load_sampling_model


def test_output_is_a_diffusers_pipeline_folder(tiny_run):
    index = json.loads((tiny_run / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    for part in ("vae", "unet", "scheduler", "tokenizer", "text_encoder"):
        assert (tiny_run / part).is_dir(), part
    weights = [p for p in tiny_run.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".ckpt")]
    final = [p for p in weights if "checkpoints" not in p.parts and "cache" not in p.parts]
    assert final and all(p.suffix == ".safetensors" for p in final)
    assert (tiny_run / "ldm_config.yaml").is_file()
    scaling = json.loads((tiny_run / "vae" / "config.json").read_text())["scaling_factor"]
    assert scaling != 0.18215 and 0.05 < scaling < 20


def test_vae_reconstructs_heldout_shapes(tiny_run):
    cfg = load_config(TINY)
    vae = load_vae(tiny_run / "vae")
    assert heldout_psnr(vae, build_dataset(cfg.data, "heldout"), "cpu") > 20.0  # untrained: ~12 dB


def _colour_score(images: torch.Tensor) -> float:
    return float((images[:, 0] - images[:, 2]).mean())


def test_unet_follows_the_colour_in_the_prompt(tiny_run):
    model = load_sampling_model(tiny_run, "cpu")
    settings = Settings(steps=20, scheduler="ddim")
    red = model.generate([ImageSpec("a red square on a black background", k) for k in range(6)], settings)
    blue = model.generate([ImageSpec("a blue square on a black background", k) for k in range(6)], settings)
    assert red.shape == (6, 3, 32, 32)
    assert _colour_score(red) - _colour_score(blue) > 0.05, (_colour_score(red), _colour_score(blue))
