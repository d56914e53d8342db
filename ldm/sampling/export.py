"""A pipeline folder exported for stock diffusers: weights cast, a LoRA fused in, the text encoder copied."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ldm.errors import LdmError
from ldm.folders import TINY_VAE
from ldm.io import atomic_folder
from ldm.models import REFERENCE_FILE
from ldm.pipeline_folder import load_pipeline, load_tiny_vae, write_pipeline
from ldm.sampling.loras import LoraAdapters
from ldm.sampling.requests import Settings
from ldm.sampling.sampler import SamplingModel

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def export_pipeline(folder: str | Path, out: str | Path, dtype: str = "fp32", lora: str | None = None,
                    lora_scale: float = 1.0, reference_encoder: bool = False) -> Path:
    """Write a self-contained copy (text encoder included, a LoRA fused in if given) for stock diffusers.

    With reference_encoder, a packaged encoder the source only references stays a reference: how the
    shipped model is kept small in git (it then needs ldm, or the package, to load).
    """
    if dtype not in DTYPES:
        raise LdmError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    folder, out = Path(folder), Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise LdmError(f"output folder {out} exists and is not empty")
    pipe = load_pipeline(folder, "cpu")
    if lora is not None:
        SamplingModel(pipe).resolve(Settings(lora=lora))  # checks the file
        LoraAdapters(pipe).use(lora, lora_scale)
        pipe.fuse_lora(lora_scale=1.0)  # the adapter weight already carries the scale
        pipe.unload_lora_weights()
    pipe = pipe.to(dtype=DTYPES[dtype])
    reference = folder / "text_encoder" / REFERENCE_FILE
    config = folder / "ldm_config.yaml"
    with atomic_folder(out) as tmp:  # whole or not at all: a folder that loads, or none
        write_pipeline(pipe, tmp, json.loads(reference.read_text()) if reference_encoder and reference.is_file()
                       else None, config.read_text() if config.is_file() else None)
        tiny = load_tiny_vae(folder, "cpu")
        if tiny is not None:  # ldm decodes a student's images with it: the copy samples as the source does
            tiny.to(dtype=DTYPES[dtype]).save_pretrained(tmp / TINY_VAE, safe_serialization=True)
    return out
