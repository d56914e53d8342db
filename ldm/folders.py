"""What model and run folders hold, read from their files without loading a model (scripts check inputs first)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from ldm.config import Config, current_name, downsampling_factor
from ldm.errors import LdmError

log = logging.getLogger("ldm")

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
STOCK_GUIDANCE = 7.5  # for folders that do not say: what diffusers' pipeline defaults to
# A pipeline folder's optional tiny autoencoder (AutoencoderTiny, ldm/train/tiny_vae.py), beside its vae/. diffusers
# loads only what model_index.json names, so plain diffusers ignores it; ldm decodes a student's images with it.
TINY_VAE = "vae_tiny"


def refuse_pickle(path: str | Path) -> None:
    """Raise a clear error for pickle checkpoints, which can run arbitrary code when loaded."""
    if Path(path).suffix.lower() in PICKLE_SUFFIXES:
        raise LdmError(
            f"{path} is a pickle checkpoint; ldm loads safetensors only (pickles can run code). "
            "Convert it to a diffusers folder with safetensors weights first."
        )


def read_json(path: Path):
    """A JSON file's contents, or a one-line LdmError naming the file."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LdmError(f"{path} is not valid JSON: {exc}") from None


def check_pipeline_folder(folder: Path) -> dict:
    """The folder's model_index.json, after checking it is a loadable SD pipeline folder (one-line errors)."""
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise LdmError(f"not a diffusers pipeline folder (no model_index.json): {folder}")
    index = read_json(index_file)
    if not isinstance(index, dict) or "StableDiffusion" not in str(index.get("_class_name", "")):
        raise LdmError(f"{folder} is not a Stable Diffusion pipeline folder (model_index.json _class_name)")
    for part in ("unet", "vae", "tokenizer", "scheduler"):
        if not (folder / part).is_dir():
            raise LdmError(f"pipeline folder {folder} has no {part}/ folder")
    for part in ("unet", "vae"):
        if not any((folder / part).glob("*.safetensors")):
            raise LdmError(f"{folder / part} has no .safetensors weights (ldm does not load pickles)")
    return index


def check_model_folder(folder: str | Path, what: str = "model") -> Path:
    """A pipeline folder given by a user, checked (not a pickle, exists, SD layout) before anything loads."""
    folder = Path(folder).expanduser()
    refuse_pickle(folder)
    if not folder.is_dir():
        raise LdmError(f"{what} folder not found: {folder}")
    check_pipeline_folder(folder)
    return folder


def part_folder(path: str | Path, part: str, label: str, where: str) -> Path:
    """A model part's folder (part 'vae', 'unet', ...; label 'VAE', 'UNet' in messages): the folder itself, or
    a pipeline folder's <part>/; `where` names the flag or key that gave the path."""
    path = Path(path).expanduser()
    if (path / part / "config.json").is_file():
        return path / part
    if (path / "config.json").is_file():
        return path
    raise LdmError(f"{where}: no {label} at {path} (expected a {label} folder or a pipeline folder with {part}/)")


def vae_folder(path: str | Path, where: str = "--init-from") -> Path:
    """The VAE folder a flag names: a VAE folder itself, or a pipeline folder's vae/."""
    return part_folder(path, "vae", "VAE", where)


def folder_guidance(folder: Path) -> float:
    """The guidance scale the folder's training config names (ours), else stock diffusers' default."""
    config_file = folder / "ldm_config.yaml"
    if config_file.is_file():
        try:
            return float(yaml.safe_load(config_file.read_text())["train_unet"]["guidance_scale"])
        except (yaml.YAMLError, KeyError, TypeError, ValueError):
            log.warning("%s: no train_unet.guidance_scale; using %s", config_file, STOCK_GUIDANCE)
    return STOCK_GUIDANCE


def folder_training_images(folder: Path) -> Path | None:
    """The image folder the model was trained on, when its training config names one that exists here."""
    config_file = folder / "ldm_config.yaml"
    try:
        data = (yaml.safe_load(config_file.read_text()) or {}).get("data", {}) if config_file.is_file() else {}
    except (yaml.YAMLError, AttributeError):
        return None
    files = isinstance(data, dict) and current_name("data.source", data.get("source")) == "files"
    path = data.get("path") if files else None
    return Path(path) if path and Path(path).is_dir() else None


def folder_geometry(folder: Path) -> tuple[int, int]:
    """(VAE factor, default image size in pixels) from the folder's configs, as diffusers' pipeline derives them."""
    vae, unet = read_json(folder / "vae" / "config.json"), read_json(folder / "unet" / "config.json")
    try:
        factor = downsampling_factor(vae["block_out_channels"])
        return factor, int(unet["sample_size"]) * factor
    except (KeyError, TypeError, ValueError) as exc:
        raise LdmError(f"{folder}: vae/unet config lacks block_out_channels or sample_size ({exc})") from None


def is_student(unet_config) -> bool:
    """Whether a UNet (its config: a dict or diffusers' FrozenDict) is a few-step student: it takes a guidance
    embedding (time_cond_proj_dim), as Latent Consistency Distillation makes it, and samples with LCMScheduler."""
    return hasattr(unet_config, "get") and unet_config.get("time_cond_proj_dim") is not None


def refuse_student_teacher(unet_config, source: str | Path) -> None:
    """The one refusal to distil from a few-step student (`source` names where its UNet config came from)."""
    if is_student(unet_config):
        raise LdmError(f"{source} is already a few-step student (its UNet takes a guidance embedding): distil "
                       "from its teacher instead")


def has_tiny_vae(folder: Path) -> bool:
    """Whether a pipeline folder ships a tiny autoencoder (TINY_VAE/)."""
    return (Path(folder) / TINY_VAE / "config.json").is_file()


def folder_student_steps(folder: Path) -> int | None:
    """None for an ordinary model; for a few-step student (its UNet takes a guidance embedding) the step
    count its distillation config names, or 0 when it names none."""
    if not is_student(read_json(folder / "unet" / "config.json")):
        return None
    config_file = folder / "ldm_config.yaml"
    try:
        data = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
        return int(data["distill"]["default_steps"]) if data["finetune"]["method"] == "lcm" else 0
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        return 0


def find_vae(cfg: Config, output_dir: Path, vae_arg: str | None) -> Path:
    """The VAE to encode with: --vae, then the config's vae_path, then <output-dir>/vae."""
    for given in (vae_arg, cfg.vae_path):
        if given:
            if not Path(given).is_dir():
                raise LdmError(f"VAE folder not found: {given}")
            return Path(given)
    if (output_dir / "vae").is_dir():
        return output_dir / "vae"
    raise LdmError(
        f"no VAE in {output_dir / 'vae'}: train one first with scripts/train_vae.py --output-dir {output_dir}, "
        "or pass --vae PATH"
    )
