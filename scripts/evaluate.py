"""Measure a model's quality on its dataset: python scripts/evaluate.py [--model weights/emoji64]"""

import argparse
import sys
from pathlib import Path

from ldm.cli import Parser, quiet_libraries, run
from ldm.config import Config, load_config
from ldm.data.offers import evaluation_offer
from ldm.errors import LdmError
from ldm.folders import check_model_folder
from ldm.sampling.limits import check
from ldm.sampling.requests import DEFAULT_MODEL, Settings
from ldm.sampling.schema import DECODERS


def parse_args() -> argparse.Namespace:
    """The flags, with one-line errors for the values argparse cannot judge."""
    p = Parser(description="Fidelity, generalisation, diversity and smoothness of a model, beside baselines.")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    p.add_argument("--config", help="config naming the dataset (default: the model's ldm_config.yaml)")
    p.add_argument("--data", help="dataset folder (default: the config's data.path)")
    p.add_argument("--captions", type=int, default=200, help="training captions in the fidelity sample")
    p.add_argument("--write-card", action="store_true",
                   help="also write the table into the model card (<model>/README.md, or --card)")
    p.add_argument("--card", help="with --write-card: the card to write instead of <model>/README.md")
    p.add_argument("--steps", type=int, nargs="+", metavar="N",
                   help="evaluate at each of these step counts, side by side (default: the model's own)")
    p.add_argument("--decoder", nargs="+", choices=DECODERS,
                   help="evaluate with each of these VAE decoders, side by side (default: the model's own; tiny: its "
                   "folder's vae_tiny/)")
    p.add_argument("--compare", "--teacher", dest="compare", metavar="FOLDER",
                   help="another pipeline folder evaluated at its defaults in a column beside (the previous "
                   "release, or the model a few-step student was distilled from)")
    p.add_argument("--device", help="cpu, cuda, ... (default: a GPU if there is one)")
    args = p.parse_args()
    if args.card and not args.write_card:
        raise LdmError("--card names the card that --write-card writes: add --write-card")
    if args.captions < 1:
        raise LdmError(f"--captions must be at least 1, got {args.captions}")
    for steps in args.steps or ():
        check("steps", steps)
    return args


def checked_config(args: argparse.Namespace) -> Config:
    """The config naming the dataset, with the model folders and the dataset folder checked before torch loads."""
    model_dir = Path(args.model)
    config = Path(args.config) if args.config else model_dir / "ldm_config.yaml"
    if not config.is_file():
        raise LdmError(f"no config {config}: pass --config")
    cfg = load_config(config, [f"data.path={args.data}", "data.source=files"] if args.data else [])
    check_model_folder(model_dir)
    if args.compare:
        check_model_folder(args.compare, "--compare")
    if cfg.data.source == "files" and cfg.data.path and not Path(cfg.data.path).expanduser().is_dir():
        raise LdmError(f"dataset folder {cfg.data.path} not found: build it first (the emoji dataset: "
                       f"python scripts/build_emoji_dataset.py --out {cfg.data.path}) or pass --data DIR")
    return cfg


def evaluate_columns(args: argparse.Namespace, model, reference, heldout) -> tuple[list, object]:
    """A column per --steps count of the model, then one of --compare at its defaults; the columns and that model."""
    from tqdm import tqdm

    from ldm.evaluate import evaluate_model
    from ldm.sampling.sampler import load_sampling_model

    bar = tqdm(desc="fidelity", unit="step", file=sys.stderr, delay=0.5)  # delay: no bar when it is skipped

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    def column(model, settings: Settings) -> tuple[str, object]:
        s = model.resolve(settings)
        bar.reset()
        result = evaluate_model(model, reference, heldout, s, args.captions, progress=progress)
        decoder = ", tiny decoder" if s.decoder == "tiny" else ""
        return f"{model.name} ({s.scheduler}, {s.steps} step{'s' * (s.steps > 1)}{decoder})", result

    columns = [column(model, Settings(steps=steps, decoder=decoder))
               for steps in args.steps or [None] for decoder in args.decoder or [None]]
    teacher = load_sampling_model(args.compare, args.device) if args.compare else None
    if teacher is not None:
        columns.append(column(teacher, Settings()))
    bar.close()
    return columns, teacher


def write_card(args: argparse.Namespace, table: str) -> None:
    """Put the table into the model card (<model>/README.md, or --card), starting one if there is none."""
    from ldm.evaluate import update_card
    from ldm.io import write_text_atomic

    model_dir = Path(args.model)
    card = Path(args.card) if args.card else model_dir / "README.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else f"# {model_dir.name}\n"
    write_text_atomic(card, update_card(text, table))
    print(card)


def main() -> None:
    """Evaluate, print the table, and with --write-card put it into the model card."""
    args = parse_args()
    cfg = checked_config(args)
    offer = evaluation_offer(cfg.data)  # what the dataset declares beyond its captions, read before torch loads
    quiet_libraries()
    from ldm.data.dataset import build_dataset
    from ldm.evaluate import Reference, agreement_table, format_comparison, format_table
    from ldm.sampling.sampler import load_sampling_model

    model = load_sampling_model(Path(args.model), args.device)
    train, heldout = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "heldout")
    reference = Reference.from_datasets([train, heldout], offer)
    columns, teacher = evaluate_columns(args, model, reference, heldout)
    if len(columns) == 1:
        table = format_table(columns[0][1].rows, columns[0][1].not_measured)
    else:
        table = format_comparison(columns)
    print(table)
    if teacher is not None and model.is_student and not teacher.is_student:
        print("agreement with the teacher: its deterministic solves take a few minutes on a CPU", file=sys.stderr)
        print(agreement_table(model, teacher, reference, args.steps or [None], args.captions))
    if args.write_card:
        write_card(args, table)


if __name__ == "__main__":
    run(main)
