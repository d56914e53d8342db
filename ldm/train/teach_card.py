"""A finished teach run measured and described: the images it was taught from, its settings, how its previews
settled, and how close the name's images came to the user's (and how little the class moved), as README.md and
teach.json in the run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ldm.config import Config
from ldm.io import write_text_atomic
from ldm.media import make_grid, save_image_atomic
from ldm.metrics import image_features
from ldm.sampling.concepts import EMBEDDING_FILE, LORA_FILE, load_embedding
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.sampler import SamplingModel, load_sampling_model
from ldm.train.checkpoints import checkpoint_root, list_checkpoints
from ldm.train.early_stop import preview_change

CARD_FILE, MEASURES_FILE = "README.md", "teach.json"
EARLY = " (stopped early: the previews stopped changing)"


def likeness(images: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean distance from each image to the nearest target (image features, ldm.metrics; lower is closer)."""
    return float(torch.cdist(image_features(images), image_features(targets)).min(dim=1).values.mean())


def preview_changes(samples: Path) -> list[float]:
    """Each preview grid's mean absolute pixel change from the one before (samples/unet-*.png, in step order)."""
    grids = [torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255)
             for p in sorted(samples.glob("unet-*.png"))]
    return [preview_change(a, b) for a, b in zip(grids, grids[1:], strict=False)]


def result_file(cfg: Config, out: Path) -> Path:
    """The run's result: its LoRA file or its embedding file."""
    return out / (EMBEDDING_FILE if cfg.finetune.method == "textual_inversion" else LORA_FILE)


def taught_model(cfg: Config, out: Path, device: str | None = None) -> tuple[SamplingModel, Settings]:
    """The run's model with what it learnt, and the settings that switch it on (the LoRA) for generate()."""
    model = load_sampling_model(cfg.finetune.init_from, device, "fp32", cfg.train_unet.guidance_scale)
    settings = Settings(steps=cfg.train_unet.sample_steps)
    if cfg.finetune.method == "textual_inversion":
        load_embedding(model.pipe, result_file(cfg, out))
        return model, settings
    return model, Settings(steps=cfg.train_unet.sample_steps, lora=str(result_file(cfg, out)))


def measure(cfg: Config, out: Path, targets: torch.Tensor, seeds: int = 4) -> tuple[dict, torch.Tensor]:
    """The name's likeness to the targets (images in [0, 1]) before and after, the class prompt's change, and the
    taught model's images of the name (seeds train_unet.seed ...)."""
    t, seed = cfg.teach, cfg.train_unet.seed
    name_specs = [ImageSpec(t.name, seed + k) for k in range(seeds)]
    class_specs = [ImageSpec(t.class_prompt, seed + k) for k in range(seeds)] if t.class_prompt else []
    base = load_sampling_model(cfg.finetune.init_from, None, "fp32", cfg.train_unet.guidance_scale)
    before = base.generate(name_specs + class_specs, Settings(steps=cfg.train_unet.sample_steps))
    del base
    model, settings = taught_model(cfg, out)
    after = model.generate(name_specs + class_specs, settings)
    n = len(name_specs)
    measures = {"name_likeness_before": likeness(before[:n], targets),
                "name_likeness_after": likeness(after[:n], targets)}
    if class_specs:
        measures["class_change"] = float((after[n:] - before[n:]).abs().mean())
    return measures, after[:n]


def settings(cfg: Config) -> list[tuple[str, object]]:
    """The settings a card names: the optimisation's, and the method's own."""
    t, tc = cfg.teach, cfg.train_unet
    common = [("learning rate", tc.learning_rate), ("batch", tc.batch_size), ("EMA", tc.ema_decay),
              ("views", t.views), ("flip", t.flip)]
    if cfg.finetune.method == "textual_inversion":
        return common
    return [*common, ("LoRA rank", cfg.finetune.lora_rank), ("prior weight", t.prior_weight if t.class_prompt else 0),
            ("class images", t.class_images if t.class_prompt else 0)]


def write_card(cfg: Config, out: Path, images: list[Path], targets: torch.Tensor,
               timing: dict[str, float]) -> tuple[Path, list[Path]]:
    """Measure the run and write its card (README.md), measures (teach.json) and result grid; returns the card and
    the files a user takes away."""
    t, tc = cfg.teach, cfg.train_unet
    steps = max((step for step, _ in list_checkpoints(checkpoint_root(out, "unet"))), default=0)
    changes = preview_changes(out / "samples")
    measures, taught = measure(cfg, out, targets)
    grid = save_image_atomic(make_grid(taught), out / "result.png")
    save_image_atomic(make_grid(targets), out / "images.png")
    record = {"name": t.name, "method": cfg.finetune.method, "class_prompt": t.class_prompt,
              "images": [str(p) for p in images], "steps": steps, "max_steps": tc.max_steps,
              "stopped_early": steps < tc.max_steps, "preview_changes": changes, **measures, **timing}
    write_text_atomic(out / MEASURES_FILE, json.dumps(record, indent=2) + "\n")
    result = result_file(cfg, out)
    use = (f"--embedding {out}" if cfg.finetune.method == "textual_inversion" else f"--lora {out}")
    lines = [
        f"# {t.name}", "",
        f"Taught to `{cfg.finetune.init_from}` by `scripts/teach.py` ({cfg.finetune.method}) from {len(images)} "
        f"image(s){f', an instance of {t.class_prompt!r}' if t.class_prompt else ''}.", "",
        f"    python scripts/sample.py \"{t.name}\" {use}", "",
        "| measure | value |", "|---|---|",
        f"| steps | {steps} of {tc.max_steps}{EARLY if steps < tc.max_steps else ''} |",
        f"| likeness of \"{t.name}\" to your images, before -> after (image-feature distance, lower is closer) | "
        f"{measures['name_likeness_before']:.2f} -> {measures['name_likeness_after']:.2f} |",
    ]
    if "class_change" in measures:
        lines.append(f"| change of \"{t.class_prompt}\" images (mean absolute pixel change, same seeds; prior "
                     f"preservation keeps it small) | {measures['class_change']:.3f} |")
    lines += [
        f"| preview change per preview (mean absolute pixel change) | {', '.join(f'{c:.3f}' for c in changes)} |",
        f"| wall time / CPU time | {timing['wall_s']:.0f} s / {timing['cpu_s']:.0f} s (load average "
        f"{timing['load_average']:.1f}) |", "",
        "Settings: " + ", ".join(f"{k} {v}" for k, v in settings(cfg)) + ".", "",
        "Images: " + ", ".join(f"`{p.name}`" for p in images) + " (`images.png`); the name's images now: `result.png`; "
        "previews as it learnt: `samples/`.", "",
    ]
    card = write_text_atomic(out / CARD_FILE, "\n".join(lines))
    return card, [result, out / "ldm_config.yaml", grid, card]
