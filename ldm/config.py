"""Typed, validated configuration loaded from YAML plus `key=value` overrides."""

from __future__ import annotations

import dataclasses
import functools
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ldm.errors import LdmError
from ldm.io import one_line


@dataclass
class DataConfig:
    """Where images come from and how they are prepared."""

    # "shapes" (procedural, needs no files) or "files": images and captions read from data.path, an image folder,
    # a datasets save_to_disk folder, Parquet files or tar shards (ldm/data/dataset.py tells them apart)
    source: str = "shapes"
    path: str | None = None  # for source=files
    caption_column: str = "text"
    resolution: int = 64
    flip: bool = False  # random horizontal flips
    shapes_count: int = 1024  # size of the procedural shapes set
    heldout_fraction: float = 0.05  # used when a folder records no split of its own
    num_workers: int = 0  # DataLoader processes decoding images; the UNet trainer's threads reading cached rows


@dataclass
class TextConfig:
    """The frozen text encoder: 'minilm' (the packaged all-MiniLM-L6-v2) or a transformers folder."""

    encoder: str = "minilm"
    max_length: int = 32  # prompts are padded/truncated to this many tokens


@dataclass
class VAEConfig:
    """AutoencoderKL shape; its downsampling factor is downsampling_factor(block_out_channels)."""

    block_out_channels: list[int] = field(default_factory=lambda: [64, 128, 128])
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 32


@dataclass
class UNetConfig:
    """UNet2DConditionModel shape; cross_attention_dim follows the text encoder."""

    block_out_channels: list[int] = field(default_factory=lambda: [64, 128, 256])
    layers_per_block: int = 1
    attention_heads: int = 8  # per attention layer (diffusers calls this attention_head_dim)
    norm_num_groups: int = 32
    # True per level: that level has cross-attention (CrossAttn*Block2D).
    cross_attention: list[bool] = field(default_factory=lambda: [False, True, True])
    # the block between the down and up paths at the lowest resolution (UNetMidBlock2DCrossAttn), or none
    mid_block: bool = True


@dataclass
class NoiseConfig:
    """The DDPM noise schedule used for training (and saved as the pipeline's scheduler)."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    prediction_type: str = "epsilon"  # or "v_prediction"


@dataclass
class TrainConfig:
    """Optimisation settings shared by the VAE and UNet trainers."""

    batch_size: int = 32  # per process
    learning_rate: float = 2e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 0.01
    warmup_steps: int = 100
    max_steps: int = 1000
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    # "auto" (bf16 where the hardware computes it, else fp32; see ldm.precision), "no", "bf16", "fp16" (GPU)
    mixed_precision: str = "auto"
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 3
    max_nonfinite_steps: int = 5  # abort after this many non-finite steps in a row


@dataclass
class VAETrainConfig(TrainConfig):
    """VAE loss weights and validation cadence."""

    recon_loss: str = "l1"  # "l1" or "mse"
    kl_weight: float = 1e-6
    eval_every: int = 500
    scaling_samples: int = 512  # images encoded to estimate the latent scaling factor
    init_from: str | None = None  # continue from a trained VAE folder (or a pipeline folder's vae/)
    # false: fine-tune the decoder only. The encoder, hence every latent and the scaling factor, stays
    # as it was, so a UNet trained on those latents keeps working (as Stable Diffusion's ft-MSE VAE).
    train_encoder: bool = True
    # share of training images redrawn at a random size (40-100% of the frame), place, mirroring and
    # background (ldm/data/augment.py), so that the VAE does not learn one layout; 0 trains on images as they are
    augment: float = 0.0


@dataclass
class TinyVAETrainConfig(TrainConfig):
    """A tiny autoencoder (diffusers AutoencoderTiny, TAESD's design) taught to copy a trained VAE: its decoder
    is several times faster, for a few-step student whose images it decodes (ldm/train/tiny_vae.py)."""

    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    max_steps: int = 2000
    # the width of every level; the decoder's blocks per level, from the latent's size up to the image's. The
    # image-sized level costs the most and copies least: 0 blocks there keeps the decoder ~4x faster than ours
    channels: int = 64
    decoder_blocks: list[int] = field(default_factory=lambda: [3, 3, 0])
    # the encoder (image to latents, for plain diffusers' use of the folder; ldm encodes with the full VAE) is
    # narrower: it costs training time and saves users none
    encoder_channels: int = 32
    encoder_blocks: list[int] = field(default_factory=lambda: [1, 2, 2])
    # std of the noise added to the latents the decoder learns from: a sampler's latents lie a little off the
    # encoder's, and the decoder should answer for those smoothly too
    latent_noise: float = 0.1
    encoder_weight: float = 1.0  # the encoder's latent-matching loss against the decoder's pixel loss
    eval_every: int = 500
    augment: float = 0.0  # as train_vae.augment: a share of images redrawn at another size, place and background


@dataclass
class UNetTrainConfig(TrainConfig):
    """Diffusion-specific training settings."""

    caption_dropout: float = 0.1  # share of empty prompts, for classifier-free guidance
    # images with several captions (a list in the data's caption column): the share of draws that use the
    # first (primary) one; the rest pick among the others uniformly
    primary_caption_share: float = 0.5
    ema_decay: float = 0.999  # 0 disables EMA
    snr_gamma: float | None = None  # min-SNR-gamma loss weighting; null disables
    sample_every: int = 500
    sample_steps: int = 25
    guidance_scale: float = 3.0
    validation_prompts: list[str] = field(
        default_factory=lambda: ["a red circle on a white background", "a blue square on a black background"]
    )
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more time
    attention: str = "auto"  # "auto" (classic matmul for bf16/fp16 on a CPU, else fused SDPA), "sdpa", "classic"


@dataclass
class FinetuneConfig:
    """Start from an existing pipeline folder instead of a fresh UNet: tune all of it, or LoRA adapters."""

    init_from: str | None = None  # a diffusers StableDiffusionPipeline folder (ours or Stable Diffusion)
    # "full" (every UNet weight), "lora" (low-rank adapters through peft), "lcm" (distil a few-step
    # student: Latent Consistency Distillation, settings in the distill section), or teach one new concept
    # (settings in the teach section): "dreambooth" (LoRA with prior preservation) or "textual_inversion"
    # (a new token's input embedding alone)
    method: str = "full"
    lora_rank: int = 8
    lora_alpha: float = 8.0  # adapter output is scaled by alpha / rank
    lora_target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    lora_text_encoder: bool = False  # also adapt a CLIP text encoder (prompts are then encoded every step)
    lora_text_encoder_modules: list[str] = field(default_factory=list)  # empty: CLIP's attention projections


@dataclass
class DistillConfig:
    """Latent Consistency Distillation of a few-step student from the --init-from teacher (finetune.method lcm)."""

    skeleton_steps: int = 50  # the teacher's DDIM solver jumps between this many timesteps (LCMScheduler's 50)
    # guidance scales (as users type them) the student learns to imitate; train_unet.guidance_scale, the
    # student's default, must lie in this range
    guidance_min: float = 2.0
    guidance_max: float = 5.0
    huber_c: float = 0.001  # pseudo-Huber distance's c
    guidance_embedding_dim: int = 256  # the UNet's time_cond_proj_dim
    default_steps: int = 4  # the student's default number of sampling steps (written into its folder)
    # a student of this teacher to go on distilling (a pipeline folder, e.g. the shipped weights/emoji64-lcm);
    # default: a new student, the teacher's UNet with a zero guidance projection
    student_from: str | None = None
    # a student smaller than its teacher (fewer FLOPs a step: a faster live model and walk): its UNet's
    # block_out_channels and layers_per_block; null: the teacher's. It starts from the teacher's weights cut to its
    # shape (ldm.train.student_shape); the trajectory objective then teaches it the teacher's solves
    student_channels: list[int] | None = None
    student_layers: int | None = None
    # "consistency": one teacher DDIM step a draw, agreement carried up by the target network (the paper);
    # "trajectory": whole teacher solves, the student regressed onto where each ends (ldm.train.trajectories):
    # far better on a small budget, and the way to go on from a consistency-distilled student;
    # "dmd": distribution matching (DMD2, ldm.train.distribution_matching): the student's own samples move
    # toward the guided teacher's distribution, scored against a fake-score network that learns the student's
    objective: str = "consistency"
    buffer_solves: int = 4096  # trajectory: teacher solves kept to draw points from (on the CPU)
    solves_per_step: int = 2  # trajectory: new solves a micro-batch adds (each costs 2 x skeleton_steps evaluations)
    solve_batch: int = 64  # trajectory: queued solves the teacher runs together (small batches waste a CPU or GPU)
    # trajectory: solves made before the first step (and again after --resume, the buffer not being saved), so
    # that early steps do not fit a handful of solves over and over
    initial_solves: int = 1024
    # trajectory: share of solves whose caption is two of one training image's captions joined, words dropped at
    # random (ldm.train.solve_prompts): wordings the dataset lacks, where a student otherwise drifts from its teacher
    recombined_share: float = 0.0
    # dmd: steps of the fake-score network (its own AdamW) per student micro-batch, each on fresh student samples:
    # DMD2's two time-scale rule (5 there), so that it keeps up with the student it scores
    fake_updates: int = 5
    fake_learning_rate: float | None = None  # dmd: the fake-score network's rate; null: train_unet.learning_rate
    # dmd: weight of the trajectory loss added to the matching loss (DMD's regression term; the trajectory
    # settings above then apply); 0: matching alone (DMD2), and the teacher runs no solves
    trajectory_weight: float = 0.0


@dataclass
class TeachConfig:
    """Teaching a pipeline folder one new concept from a few images (finetune.method dreambooth or
    textual_inversion; scripts/teach.py fills it in)."""

    name: str = ""  # the new word prompts use for the concept
    class_prompt: str = ""  # what the concept is an instance of ("face", "a bird"); empty: none
    # dreambooth: class images the model draws from class_prompt before the first step, and the weight of their
    # loss (DreamBooth's prior preservation: the class keeps looking as it did); 0 turns it off
    class_images: int = 16
    prior_weight: float = 1.0
    class_steps: int = 20  # sampling steps of each class image
    # early stop: the run ends once this many previews in a row each moved less than the tolerance (mean
    # absolute pixel change in [0, 1] between consecutive preview grids of the same seeds); 0 never stops early
    settle_patience: int = 2
    settle_tolerance: float = 0.01
    # training images made from the user's few: the images, then shifted and scaled copies up to this many (0: the
    # images alone). A model trained on one layout per caption (the emoji set: centred, 0.9 of the frame) blurs
    # several layouts of one word into colour mush: measured 0/8 with 24 views, 8/8 with the 3 images centred
    views: int = 0
    flip: bool = False  # views may be mirrored (never for a concept with a handedness: text, a logo)
    # dreambooth: weight of rows that keep the empty prompt's prediction as it was, at the instance images
    # (classifier-free guidance measures every prompt against it); 0 turns them off
    keep_unconditional: float = 0.0
    # each image's content centred at this share of the frame, on its own background, before any view is made
    # (0: as given, for photos)
    centre_share: float = 0.0


@dataclass
class Config:
    """A whole run: data, models, schedule and both trainers."""

    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train_vae: VAETrainConfig = field(default_factory=VAETrainConfig)
    train_unet: UNetTrainConfig = field(default_factory=UNetTrainConfig)
    train_tiny_vae: TinyVAETrainConfig = field(default_factory=TinyVAETrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    teach: TeachConfig = field(default_factory=TeachConfig)
    vae_path: str | None = None  # a trained VAE folder; default <output-dir>/vae


MIXED_PRECISIONS = ("auto", "no", "bf16", "fp16")  # Accelerate's names, plus auto (ldm.precision)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # sampling's names (ldm.precision)
CHOICES = {
    "data.source": ("shapes", "files"),
    "noise.prediction_type": ("epsilon", "v_prediction"),
    "noise.beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2"),
    "train_vae.recon_loss": ("l1", "mse"),
    "train_vae.mixed_precision": MIXED_PRECISIONS,
    "train_unet.mixed_precision": MIXED_PRECISIONS,
    "train_tiny_vae.mixed_precision": MIXED_PRECISIONS,
    "train_unet.attention": ("auto", "sdpa", "classic"),
    "finetune.method": ("full", "lora", "lcm", "dreambooth", "textual_inversion"),
    "distill.objective": ("consistency", "trajectory", "dmd"),
}

# Values renamed since: a config that still says the old name (a model folder's ldm_config.yaml, a checkpoint's
# config.yaml) loads as before, with a one-line note; an error would refuse every older run and model folder.
RENAMED = {"data.source": {"imagefolder": "files"}}  # imagefolder also read Arrow, Parquet and tar


def current_name(key: str, value: Any) -> Any:
    """`value` of config key `key` under its current name (RENAMED), for code that reads raw YAML."""
    return RENAMED.get(key, {}).get(value, value) if isinstance(value, str) else value


@functools.cache  # once per process and name, however often a config is read
def _note_renamed(key: str, old: str, new: str) -> None:
    logging.getLogger("ldm").warning("config key '%s': '%s' is now called '%s' (read the same; rename it in your "
                                     "config)", key, old, new)


# Numeric ranges, checked like CHOICES: values outside them would crash deep in torch or diffusers with a
# traceback, or train nonsense without a word (a negative min-SNR gamma flips the loss's sign).
_AT_LEAST_1 = (lambda v: v >= 1, "must be at least 1")
_AT_LEAST_0 = (lambda v: v >= 0, "must be >= 0")
_POSITIVE = (lambda v: v > 0, "must be > 0")
_FRACTION = (lambda v: 0 <= v < 1, "must be in [0, 1)")
_SHARE = (lambda v: 0 <= v <= 1, "must be in [0, 1]")
LIMITS = {
    "data.resolution": _AT_LEAST_1,
    "data.shapes_count": _AT_LEAST_1,
    "data.heldout_fraction": _FRACTION,
    "data.num_workers": _AT_LEAST_0,
    "text.max_length": (lambda v: v >= 2, "must be at least 2"),
    "noise.num_train_timesteps": _AT_LEAST_1,
    "noise.beta_start": _FRACTION,
    "noise.beta_end": _FRACTION,
    **{f"{part}.{key}": _AT_LEAST_1 for part in ("vae", "unet") for key in ("layers_per_block", "norm_num_groups")},
    "vae.latent_channels": _AT_LEAST_1,
    "unet.attention_heads": _AT_LEAST_1,
    **{f"{section}.{key}": limit for section in ("train_vae", "train_unet", "train_tiny_vae")
       for key, limit in (
        ("batch_size", _AT_LEAST_1), ("max_steps", _AT_LEAST_1), ("gradient_accumulation_steps", _AT_LEAST_1),
        ("checkpoint_every", _AT_LEAST_1), ("log_every", _AT_LEAST_1), ("checkpoints_total_limit", _AT_LEAST_1),
        ("max_nonfinite_steps", _AT_LEAST_1), ("learning_rate", _AT_LEAST_0), ("weight_decay", _AT_LEAST_0),
        ("warmup_steps", _AT_LEAST_0), ("max_grad_norm", _POSITIVE), ("adam_beta1", _FRACTION),
        ("adam_beta2", _FRACTION), ("seed", _AT_LEAST_0))},
    "train_vae.kl_weight": _AT_LEAST_0,
    "train_vae.eval_every": _AT_LEAST_1,
    "train_vae.scaling_samples": _AT_LEAST_1,
    "train_vae.augment": _SHARE,
    "train_tiny_vae.channels": _AT_LEAST_1,
    "train_tiny_vae.encoder_channels": _AT_LEAST_1,
    "train_tiny_vae.latent_noise": _AT_LEAST_0,
    "train_tiny_vae.encoder_weight": _AT_LEAST_0,
    "train_tiny_vae.eval_every": _AT_LEAST_1,
    "train_tiny_vae.augment": _SHARE,
    "train_unet.caption_dropout": _FRACTION,
    "train_unet.primary_caption_share": _SHARE,
    "train_unet.ema_decay": _FRACTION,
    "train_unet.snr_gamma": _POSITIVE,
    "train_unet.sample_every": _AT_LEAST_1,
    "train_unet.sample_steps": _AT_LEAST_1,
    "train_unet.guidance_scale": _AT_LEAST_0,
    "finetune.lora_rank": _AT_LEAST_1,
    "finetune.lora_alpha": _POSITIVE,
    "distill.skeleton_steps": _AT_LEAST_1,
    "distill.guidance_min": _AT_LEAST_0,
    "distill.guidance_max": _AT_LEAST_0,
    "distill.huber_c": _POSITIVE,
    "distill.guidance_embedding_dim": (lambda v: v >= 2 and v % 2 == 0, "must be an even number >= 2"),
    "distill.default_steps": _AT_LEAST_1,
    "distill.buffer_solves": _AT_LEAST_1,
    "distill.solves_per_step": _AT_LEAST_1,
    "distill.solve_batch": _AT_LEAST_1,
    "distill.initial_solves": _AT_LEAST_0,
    "distill.recombined_share": _SHARE,
    "distill.fake_updates": _AT_LEAST_1,
    "distill.fake_learning_rate": _POSITIVE,
    "distill.trajectory_weight": _AT_LEAST_0,
    "distill.student_layers": _AT_LEAST_1,
    "teach.class_images": _AT_LEAST_0,
    "teach.prior_weight": _AT_LEAST_0,
    "teach.class_steps": _AT_LEAST_1,
    "teach.settle_patience": _AT_LEAST_0,
    "teach.settle_tolerance": _AT_LEAST_0,
    "teach.views": _AT_LEAST_0,
    "teach.centre_share": _SHARE,
    "teach.keep_unconditional": _AT_LEAST_0,
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; return it (ints widen to floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except LdmError:
                pass
        raise LdmError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise LdmError(f"config key '{key}': expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads "5e-4" (no dot) as a string; users mean a number.
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float) and isinstance(value, bool):
        raise LdmError(f"config key '{key}': expected {tp.__name__}, got {value!r}")
    if not isinstance(value, tp):
        raise LdmError(f"config key '{key}': expected {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    where = f"'{prefix}'" if prefix else "the top level"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LdmError(f"config: expected a mapping at {where}, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            full = f"{prefix}.{key}" if prefix else str(key)
            raise LdmError(f"unknown config key '{full}' (known keys at {where}: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        coerced = _coerce(value, hints[key], full)  # a "5e-3" override becomes 0.005: not a rename
        kwargs[key] = current_name(full, coerced)
        if kwargs[key] != coerced:
            _note_renamed(full, coerced, kwargs[key])
        if full in CHOICES and kwargs[key] not in CHOICES[full]:
            raise LdmError(f"config key '{full}': {value!r} is not one of {', '.join(CHOICES[full])}")
        if full in LIMITS and kwargs[key] is not None and not LIMITS[full][0](kwargs[key]):
            raise LdmError(f"config key '{full}': {LIMITS[full][1]}, got {value!r}")
    return cls(**kwargs)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise LdmError(f"config override '{dotted}': '{part}' is not a section")
    node[parts[-1]] = value


YAML11_BOOL_WORDS = {"yes", "no", "on", "off", "y", "n"}


def parse_overrides(overrides: list[str]) -> dict:
    """Turn ['train_unet.max_steps=100', ...] into a nested dict (values parsed as YAML)."""
    data: dict = {}
    for item in overrides:
        if "=" not in item:
            raise LdmError(f"config override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        if raw.strip().lower() in YAML11_BOOL_WORDS:  # YAML 1.1 reads `no` as False; mixed_precision=no means "no"
            value = raw.strip()
        _set_dotted(data, key.strip(), value)
    return data


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_from_dict(data: dict) -> Config:
    """Validate a plain mapping into a Config."""
    cfg = _build(Config, data)
    validate(cfg)
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when path is None) and apply key=value overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise LdmError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise LdmError(f"config file {path} is not valid YAML: {one_line(exc)}") from None
    return config_from_dict(_merge(data, parse_overrides(overrides or [])))


def validate(cfg: Config) -> None:
    """Cross-field checks that types alone cannot express."""
    # model shapes diffusers would otherwise reject with a traceback (or an assert) mid-build
    for part in ("vae", "unet"):
        mc = getattr(cfg, part)
        if not mc.block_out_channels:
            raise LdmError(f"config key '{part}.block_out_channels': needs at least one level")
        for channels in mc.block_out_channels:
            if channels < 1 or channels % mc.norm_num_groups:
                raise LdmError(f"config key '{part}.block_out_channels': {channels} is not a positive multiple of "
                               f"{part}.norm_num_groups ({mc.norm_num_groups})")
    factor = vae_factor(cfg)
    if cfg.data.resolution % factor:
        raise LdmError(
            f"config key 'data.resolution': {cfg.data.resolution} is not a multiple of the VAE factor {factor}"
        )
    if cfg.data.source == "files" and not cfg.data.path:
        raise LdmError("config key 'data.path': source 'files' needs a folder or file (or pass --data PATH)")
    if len(cfg.unet.cross_attention) != len(cfg.unet.block_out_channels):
        raise LdmError("config key 'unet.cross_attention': needs one entry per unet.block_out_channels level")
    latent = cfg.data.resolution // factor
    if latent % downsampling_factor(cfg.unet.block_out_channels):
        halvings = len(cfg.unet.block_out_channels) - 1
        raise LdmError(f"config: latent size {latent} cannot be halved {halvings} times by the UNet")
    if cfg.finetune.method == "lcm":
        d = cfg.distill
        if not d.guidance_min <= cfg.train_unet.guidance_scale <= d.guidance_max:
            raise LdmError(f"config key 'train_unet.guidance_scale': the student's default "
                           f"{cfg.train_unet.guidance_scale} is outside the distilled range "
                           f"[distill.guidance_min {d.guidance_min}, distill.guidance_max {d.guidance_max}]")
        if d.objective == "dmd" and d.default_steps > d.skeleton_steps:
            raise LdmError(f"config key 'distill.default_steps': the student samples at most distill.skeleton_steps "
                           f"({d.skeleton_steps}) steps, not {d.default_steps}")
    if cfg.finetune.method in ("dreambooth", "textual_inversion") and not cfg.teach.name:
        raise LdmError(f"config key 'teach.name': finetune.method {cfg.finetune.method} needs the concept's new word")
    if not cfg.train_vae.train_encoder and not cfg.train_vae.init_from:
        raise LdmError("config key 'train_vae.train_encoder': false needs a trained VAE to keep the encoder of "
                       "(train_vae.init_from or --init-from)")


def downsampling_factor(block_out_channels) -> int:
    """How much a VAE or UNet with these levels shrinks its input: 2 per level after the first (diffusers' rule)."""
    return 2 ** (len(block_out_channels) - 1)


def vae_factor(cfg: Config) -> int:
    """The VAE's spatial downsampling factor."""
    return downsampling_factor(cfg.vae.block_out_channels)


def config_to_dict(cfg: Config) -> dict:
    """The resolved config as plain data (saved beside every checkpoint and output)."""
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
