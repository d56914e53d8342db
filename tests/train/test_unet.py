"""The UNet loop through its public entry points: the run folder is a diffusers pipeline that follows the
prompt's colour, and a checkpoint exports to the same weights the run wrote."""

import json

import pytest
import torch
from safetensors.torch import load_file

from ldm.errors import LdmError
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.sampler import load_sampling_model
from ldm.train.unet import pipeline_from_checkpoint


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


def _colour_score(images: torch.Tensor) -> float:
    return float((images[:, 0] - images[:, 2]).mean())


def test_unet_follows_the_colour_in_the_prompt(tiny_run):
    model = load_sampling_model(tiny_run, "cpu")
    settings = Settings(steps=20, scheduler="ddim")
    red = model.generate([ImageSpec("a red square on a black background", k) for k in range(6)], settings)
    blue = model.generate([ImageSpec("a blue square on a black background", k) for k in range(6)], settings)
    assert red.shape == (6, 3, 32, 32)
    assert _colour_score(red) - _colour_score(blue) > 0.05, (_colour_score(red), _colour_score(blue))


def test_the_last_checkpoint_exports_the_weights_the_run_wrote(tiny_run, tmp_path):
    # the run writes its EMA weights; the checkpoint of the last step holds them beside the raw ones
    out = pipeline_from_checkpoint(tiny_run / "checkpoints" / "unet" / "checkpoint-200", tmp_path / "model")
    exported = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    written = load_file(tiny_run / "unet" / "diffusion_pytorch_model.safetensors")
    assert exported.keys() == written.keys() and all(torch.equal(exported[k], written[k]) for k in written)
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "StableDiffusionPipeline"


def test_exporting_something_that_is_not_a_checkpoint_is_one_line(tiny_run, tmp_path):
    with pytest.raises(LdmError, match="is not a UNet checkpoint"):
        pipeline_from_checkpoint(tiny_run / "unet", tmp_path / "model")
