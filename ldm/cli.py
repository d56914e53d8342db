"""Shared plumbing for the thin command-line scripts: common flags and one-line errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

# Scripts talk to users through their own messages; the libraries' import-time notices (optional
# torchvision, CLIP-typed text encoders) and per-file loading bars are noise there. Set before any
# library is imported; a user's own setting wins.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from ldm.config import MIXED_PRECISIONS, Config, load_config
from ldm.errors import LdmError
from ldm.sampling.schema import FIELDS, Field


def quiet_libraries() -> None:
    """Turn off diffusers' and transformers' per-component loading bars; our own bars track the real work.

    Scripts call it after checking their arguments, just before they import and load models, so that a
    mistake or --help is answered without the seconds that importing torch and diffusers takes.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def run(main: Callable[[], object]) -> None:
    """Run a script's main(); a user error prints one line and exits 2, never a traceback."""
    try:
        main()
    except LdmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except RuntimeError as exc:
        reason = _lost_process(exc)
        if reason is None:
            raise
        print(f"error: {reason}", file=sys.stderr)
        sys.exit(1)


def _lost_process(exc: RuntimeError) -> str | None:
    """One line for a distributed run whose peer process died, else None (only after torch.distributed started)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    from ldm.train.distributed import lost_process

    return lost_process(exc)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `error: ...` and exit 2, no usage dump."""

    def error(self, message: str):
        """Print one line and exit 2."""
        self.exit(2, f"error: {message} (see --help)\n")


def add_request_flags(parser: argparse.ArgumentParser, fields: tuple[Field, ...] = FIELDS) -> None:
    """A flag for each request field that has one: its name, type, default, choices and help from the schema."""
    for f in fields:
        if f.flag:
            metavar = None if f.choices else f.flag.lstrip("-").replace("-", "_").upper()  # --guidance GUIDANCE
            parser.add_argument(f.flag, dest=f.name, type=f.kind, default=f.flag_default, choices=f.choices or None,
                                metavar=metavar, help=f.help)


def flag_values(args: argparse.Namespace, fields: tuple[Field, ...]) -> dict:
    """{field name: value} of the fields among `fields` that have flags."""
    return {f.name: getattr(args, f.name) for f in fields if f.flag}


def training_parser(description: str, default_config: str) -> argparse.ArgumentParser:
    """The flags users of diffusers' training scripts expect, plus key=value config overrides."""
    p = Parser(description=description)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train_unet.max_steps=200")
    p.add_argument("--config", default=default_config, help=f"YAML config (default {default_config})")
    p.add_argument("--output-dir", required=True, help="run folder: checkpoints, logs, samples and the model")
    p.add_argument("--data", help="image folder to train on (overrides data.source/data.path)")
    p.add_argument("--max-steps", type=int, help="total optimizer steps")
    p.add_argument("--checkpoint-every", type=int, help="save a resumable checkpoint every N steps")
    p.add_argument("--gradient-accumulation-steps", type=int, help="micro-batches per optimizer step")
    p.add_argument("--mixed-precision", choices=MIXED_PRECISIONS,
                   help="autocast precision (auto: bf16 where the hardware computes it, else fp32)")
    p.add_argument("--resume", help="'latest' or a checkpoint folder")
    p.add_argument("--trust-pickle-checkpoint", action="store_true",
                   help="let --resume convert a checkpoint that an older ldm saved with pickles (they can run code: "
                   "only for checkpoints you trust)")
    return p


def check_resume(args: argparse.Namespace, kind: str) -> None:
    """Refuse a bad --resume (missing, incomplete, or pickled without trust) before anything is created or loaded."""
    from ldm.train.checkpoints import checkpoint_root, resolve_resume

    resolve_resume(checkpoint_root(args.output_dir, kind), args.resume, args.trust_pickle_checkpoint, quiet=True)


def config_from_args(args: argparse.Namespace, section: str) -> Config:
    """Load the config and fold the command-line flags into it as overrides."""
    overrides = list(args.overrides)
    if args.data:
        overrides += ["data.source=files", f"data.path={args.data}"]
    for flag in ("max_steps", "checkpoint_every", "gradient_accumulation_steps", "mixed_precision"):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{section}.{flag}={value}")
    return load_config(args.config, overrides)

