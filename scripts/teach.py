"""Teach a model a new concept from a few images:
python scripts/teach.py my/cat/*.png --name zorbly --out runs/zorbly --class "face" """

from __future__ import annotations

import argparse
from pathlib import Path

from ldm.cli import Parser, quiet_libraries, run
from ldm.errors import LdmError
from ldm.sampling.requests import DEFAULT_MODEL
from ldm.train.checkpoints import checkpoint_root
from ldm.train.teach_inputs import check_name, image_paths

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METHODS = {"lora": "teach_dreambooth.yaml", "ti": "teach_ti.yaml"}  # --method -> its config in configs/


def parser() -> argparse.ArgumentParser:
    """The teach.py flags."""
    p = Parser(description="Teach a pipeline folder a new word from 1-50 images: a LoRA (DreamBooth, with prior "
               "preservation) or a textual-inversion embedding, with previews as it learns and a card.")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files, or folders of them")
    p.add_argument("--name", required=True, help="the new word prompts will use for the concept (one new word)")
    p.add_argument("--out", required=True, help="run folder: previews, checkpoints, the result and its card")
    p.add_argument("--class", dest="class_prompt", default="",
                   help="what the concept is (\"face\", \"a bird\"): the LoRA keeps this class as it was (prior "
                   "preservation) and the embedding starts from it")
    p.add_argument("--method", choices=list(METHODS), default="lora",
                   help="lora (DreamBooth-style LoRA on the UNet) or ti (textual inversion: one new embedding)")
    p.add_argument("--steps", type=int, help="most optimizer steps (default: the method's config)")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder to teach (default: the shipped model)")
    p.add_argument("--config", help="YAML config (default configs/teach_dreambooth.yaml or configs/teach_ti.yaml)")
    p.add_argument("--resume", nargs="?", const="latest", help="continue the run in --out (latest or a checkpoint)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="a config override, e.g. --set train_unet.learning_rate=5e-4 (repeatable)")
    return p


def main() -> None:
    """Check every argument, then teach and print the result's files."""
    args = parser().parse_args()
    name = check_name(args.name)
    paths = image_paths(args.images)
    if args.steps is not None and args.steps < 1:
        raise LdmError(f"--steps must be at least 1, got {args.steps}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise LdmError(f"--out {out} is a file")
    if args.resume is None and out.is_dir() and any(out.iterdir()):
        raise LdmError(f"--out {out} already holds a run: pass --resume to continue it, or choose another folder")
    if args.resume and not any(checkpoint_root(out, "unet").glob("checkpoint-*")):
        raise LdmError(f"--resume: {out} holds no checkpoint to resume")
    config = args.config or str(CONFIGS / METHODS[args.method])

    quiet_libraries()
    from ldm.train.teach_run import teach, teach_config

    cfg = teach_config(config, args.overrides, name, args.model, out, args.class_prompt, args.steps)
    result = teach(paths, cfg, out, args.resume)
    for path in result.files:
        print(path)


if __name__ == "__main__":
    run(main)
