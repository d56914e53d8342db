"""Fine-tuning from an existing pipeline folder: its components, LoRA adapters (peft), and LoRA files.

LoRA files are written the way diffusers' `StableDiffusionPipeline.save_lora_weights` writes them, so a
stock pipeline reads them with `load_lora_weights`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import diffusers
import torch
from diffusers import DDPMScheduler
from safetensors.torch import load_file, save_file

from ldm.config import FinetuneConfig
from ldm.errors import LdmError
from ldm.folders import check_model_folder
from ldm.io import one_line
from ldm.models import MINILM, REFERENCE_FILE, load_pipeline_text_encoder, load_unet, load_vae
from ldm.sampling.concepts import LORA_FILE  # the name diffusers' save/load_lora_weights use

LORA_EMA_FILE = "lora_ema.safetensors"


@dataclass
class InitComponents:
    """Everything a fine-tune keeps from the folder it starts from."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    tokenizer: object
    text_encoder: torch.nn.Module
    noise_scheduler: DDPMScheduler  # training noise, with the folder's betas and prediction type
    sampling_scheduler: object  # the folder's own scheduler, saved with the result
    encoder_spec: str  # 'minilm' when the folder references the packaged encoder, else its folder


def load_init_components(folder: str | Path) -> InitComponents:
    """Load a pipeline folder's UNet, VAE, tokenizer, text encoder and scheduler for fine-tuning."""
    folder = check_model_folder(folder, "--init-from")
    config_file = folder / "scheduler" / "scheduler_config.json"
    try:
        scheduler_config = json.loads(config_file.read_text())
        scheduler_cls = getattr(diffusers, scheduler_config["_class_name"])
    except (OSError, json.JSONDecodeError, KeyError, AttributeError) as exc:
        raise LdmError(f"cannot read the scheduler of {folder}: {exc}") from None
    tokenizer, text_encoder = load_pipeline_text_encoder(folder)
    referenced = (folder / "text_encoder" / REFERENCE_FILE).is_file()
    return InitComponents(
        unet=load_unet(folder / "unet"),
        vae=load_vae(folder / "vae"),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        noise_scheduler=DDPMScheduler.from_config(scheduler_config),
        sampling_scheduler=scheduler_cls.from_config(scheduler_config),
        encoder_spec=MINILM if referenced else str(folder / "text_encoder"),
    )


def add_lora(unet: torch.nn.Module, cfg: FinetuneConfig) -> list[torch.nn.Parameter]:
    """Freeze the UNet and attach LoRA adapters to its attention projections; return the new parameters."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, init_lora_weights="gaussian",
                        target_modules=list(cfg.lora_target_modules))
    try:
        unet.add_adapter(config)
    except ValueError as exc:
        raise LdmError(f"cannot add LoRA to the UNet: {one_line(exc)}") from None
    params = [p for p in unet.parameters() if p.requires_grad]
    if not params:
        raise LdmError(f"finetune.lora_target_modules {cfg.lora_target_modules} matched no UNet layer")
    return params


CLIP_TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def text_encoder_lora_problem() -> str | None:
    """Why the installed transformers/peft cannot put LoRA on a text encoder, or None when they can."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version
    from transformers.integrations import peft as transformers_peft

    try:
        installed = version("peft")
    except PackageNotFoundError:
        return "peft is not installed"
    # transformers' add_adapter refuses peft releases older than this (5.24 asks for one not yet published).
    needed = getattr(transformers_peft, "MIN_PEFT_VERSION", None)
    if needed and Version(installed) < Version(needed):
        return f"transformers {version('transformers')} needs peft >= {needed}, and peft {installed} is installed"
    return None


def require_text_encoder_lora() -> None:
    """Refuse finetune.lora_text_encoder at start-up, in one line, where the installed libraries lack it."""
    problem = text_encoder_lora_problem()
    if problem:
        raise LdmError(f"finetune.lora_text_encoder is unavailable: {problem}; install the tested versions with "
                       "pip install -c requirements-lock.txt -e . (UNet LoRA and everything else work as they are)")


def add_text_encoder_lora(text_encoder: torch.nn.Module, cfg: FinetuneConfig) -> list[torch.nn.Parameter]:
    """LoRA adapters on a CLIP text encoder's attention; return the new parameters."""
    from peft import LoraConfig

    kind = getattr(text_encoder.config, "model_type", "")
    if kind != "clip_text_model":
        # diffusers' LoRA files and load_lora_weights cover CLIP text encoders only (they look for
        # q_proj/k_proj/v_proj/out_proj); a file for another encoder would not load in stock diffusers.
        raise LdmError(f"finetune.lora_text_encoder needs a CLIP text encoder (this one is {kind!r}); "
                       "set it to false to adapt the UNet only")
    targets = list(cfg.lora_text_encoder_modules) or CLIP_TEXT_TARGETS
    text_encoder.requires_grad_(False)
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, init_lora_weights="gaussian",
                        target_modules=targets)
    try:
        text_encoder.add_adapter(config)
    except ValueError as exc:
        raise LdmError(f"cannot add LoRA to the text encoder: {one_line(exc)}") from None
    return [p for p in text_encoder.parameters() if p.requires_grad]


def lora_layers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A model's LoRA weights under the key names diffusers' LoRA files use."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(model))


def save_lora(unet: torch.nn.Module, out_dir: str | Path, text_encoder: torch.nn.Module | None = None) -> Path:
    """Write the LoRA file (safetensors) that stock diffusers' load_lora_weights reads."""
    from diffusers import StableDiffusionPipeline

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".lora-tmp"
    te_layers = lora_layers(text_encoder) if text_encoder is not None else None
    StableDiffusionPipeline.save_lora_weights(tmp, unet_lora_layers=lora_layers(unet),
                                              text_encoder_lora_layers=te_layers, safe_serialization=True)
    final = out_dir / LORA_FILE
    (tmp / LORA_FILE).replace(final)
    tmp.rmdir()
    return final


def save_ema_params(ema, folder: Path) -> None:
    """EMA shadow weights of a parameter list (LoRA) as safetensors, with its step count."""
    state = ema.state_dict()
    tensors = {f"p{k}": t.detach().cpu().contiguous() for k, t in enumerate(state["shadow_params"])}
    save_file(tensors, folder / LORA_EMA_FILE, metadata={"optimization_step": str(state["optimization_step"])})


def load_ema_params(ema, folder: Path) -> None:
    """Restore what save_ema_params wrote."""
    from safetensors import safe_open

    path = folder / LORA_EMA_FILE
    tensors = load_file(path)
    with safe_open(path, "pt") as f:
        step = int(f.metadata()["optimization_step"])
    state = ema.state_dict()
    state["shadow_params"] = [tensors[f"p{k}"] for k in range(len(tensors))]
    state["optimization_step"] = step
    ema.load_state_dict(state)
