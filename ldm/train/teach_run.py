"""What scripts/teach.py does: a few images and a new name -> a LoRA (DreamBooth) or an embedding (textual
inversion) for a pipeline folder, with preview grids as it learns and a card of what it learnt.

A teach run is a normal UNet run (ldm.train.unet: Accelerate, safetensors checkpoints, --resume, TensorBoard,
tqdm) over an image folder of the user's images and their augmented views, written into the run folder first.
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ldm.config import Config, load_config, validate
from ldm.data.teach_images import augmented_views, centred, load_concept_images, write_view_folder
from ldm.errors import LdmError
from ldm.folders import check_model_folder, folder_geometry
from ldm.models import load_tokenizer
from ldm.sampling.concepts import preview_prompts
from ldm.train.teach_card import write_card
from ldm.train.teach_inputs import check_new_word
from ldm.train.unet import train_unet

VIEWS_DIR = "teach-images"  # the image folder the run trains on, inside the run folder


@dataclass
class TeachResult:
    """Where a finished teach run put its result files, and its card."""

    out: Path
    files: list[Path]
    card: Path


def teach_config(config_file: str | Path, overrides: list[str], name: str, model: str | Path, out: str | Path,
                 class_prompt: str = "", steps: int | None = None) -> Config:
    """The run's config: the method's YAML, overrides, then the concept, the model folder and its resolution, and
    the run folder's views as the data."""
    # quoted: check_name allows letters and digits only, and YAML would read a bare `true` or `null` otherwise
    cfg = load_config(config_file, [*overrides, f"data.path={Path(out) / VIEWS_DIR}", f"teach.name='{name}'"])
    folder = check_model_folder(model, "--model")
    _, size = folder_geometry(folder)
    cfg.finetune.init_from = str(folder)
    cfg.data.source, cfg.data.resolution, cfg.data.heldout_fraction = "files", size, 0.0
    cfg.teach.class_prompt = class_prompt.strip()
    if steps is not None:
        cfg.train_unet.max_steps = steps
    tc = cfg.train_unet
    tc.validation_prompts = preview_prompts(name, cfg.teach.class_prompt)
    tc.checkpoint_every = min(tc.checkpoint_every, tc.max_steps)
    validate(cfg)
    return cfg


def captions(cfg: Config) -> list[str]:
    """The captions of every training view: the name alone first, then the name with its class."""
    t = cfg.teach
    return [t.name] + ([f"{t.name} {t.class_prompt}"] if t.class_prompt else [])


NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a quota, a file-size limit
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def no_room(exc: BaseException) -> int | None:
    """The errno of a write refused for want of room (an OSError, or safetensors' error naming it), else None."""
    if isinstance(exc, OSError):
        return exc.errno if exc.errno in NO_ROOM else None
    found = _OS_ERROR.search(str(exc))
    return int(found.group(1)) if found and int(found.group(1)) in NO_ROOM else None


def teach(images: list[Path], cfg: Config, out: str | Path, resume: str | None = None) -> TeachResult:
    """Teach cfg.teach.name from `images`; the result files and the card land in `out` only when the run ends."""
    out = Path(out)
    t, tc = cfg.teach, cfg.train_unet
    clock, cpu = time.perf_counter(), time.process_time()
    try:
        # 1. the name against the model's tokenizer, the images, checked and decoded, and their views as the run's
        # image folder (kept for --resume)
        check_new_word(load_tokenizer(Path(cfg.finetune.init_from) / "tokenizer"), t.name)
        pixels, opacity = load_concept_images(images, cfg.data.resolution)
        if t.centre_share > 0:
            pixels, opacity = centred(pixels, opacity, t.centre_share)
        views_dir = out / VIEWS_DIR
        if resume is None or not views_dir.is_dir():
            views = augmented_views(pixels, opacity, max(t.views, len(images)), torch.Generator().manual_seed(tc.seed),
                                    t.flip)
            write_view_folder(views_dir, views, captions(cfg))
        cfg.data.path = str(views_dir)  # where teach_config put it, unless out moved since
        # 2. the run: checkpoints, previews under samples/, the LoRA or the embedding at the end
        train_unet(cfg, out, resume)
        # 3. what it learnt, measured, and the card
        timing = {"wall_s": time.perf_counter() - clock, "cpu_s": time.process_time() - cpu,
                  "load_average": os.getloadavg()[0]}
        card, files = write_card(cfg, out, images, (pixels + 1) / 2, timing)
    except Exception as exc:  # safetensors reports a full disk as its own error type, with the OS error's number
        code = no_room(exc)
        if code is None:
            raise
        raise LdmError(f"no room to write in {out} ({os.strerror(code).lower()}): free some space, then run the same "
                       "command with --resume") from None
    return TeachResult(out, files, card)
