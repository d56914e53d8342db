"""Measure a model's quality on its dataset: python scripts/evaluate.py [--model weights/emoji64]"""

import sys
from pathlib import Path

from ldm.cli import Parser, quiet_libraries, run
from ldm.config import load_config
from ldm.errors import LdmError
from ldm.folders import check_model_folder
from ldm.generation import DEFAULT_MODEL, Settings


def main() -> None:
    """Evaluate, print the table, and write it into the model card."""
    p = Parser(description="Fidelity, generalisation, diversity and smoothness of a model, beside baselines.")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    p.add_argument("--config", help="config naming the dataset (default: the model's ldm_config.yaml)")
    p.add_argument("--data", help="dataset folder (default: the config's data.path)")
    p.add_argument("--captions", type=int, default=200, help="training captions in the fidelity sample")
    p.add_argument("--card", help="model card to write the table into (default: <model>/README.md)")
    p.add_argument("--no-card", action="store_true", help="print only")
    p.add_argument("--device", help="cpu, cuda, ... (default: a GPU if there is one)")
    args = p.parse_args()
    model_dir = Path(args.model)
    config = Path(args.config) if args.config else model_dir / "ldm_config.yaml"
    if not config.is_file():
        raise LdmError(f"no config {config}: pass --config")
    cfg = load_config(config, [f"data.path={args.data}", "data.source=imagefolder"] if args.data else [])
    check_model_folder(model_dir)
    quiet_libraries()
    from tqdm import tqdm

    from ldm.data.dataset import build_dataset
    from ldm.evaluate import Reference, evaluate_model, format_table, update_card
    from ldm.media import write_text_atomic
    from ldm.pipeline import load_sampling_model

    model = load_sampling_model(model_dir, args.device)
    train, heldout = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "heldout")
    reference = Reference.from_datasets([train, heldout])
    bar = tqdm(desc="fidelity", unit="step", file=sys.stderr)

    def progress(done, total):
        bar.total = total
        bar.update(done - bar.n)

    table = format_table(evaluate_model(model, reference, heldout, Settings(), args.captions, progress=progress))
    bar.close()
    print(table)
    if not args.no_card:
        card = Path(args.card) if args.card else model_dir / "README.md"
        text = card.read_text(encoding="utf-8") if card.is_file() else f"# {model_dir.name}\n"
        write_text_atomic(card, update_card(text, table))
        print(card)


if __name__ == "__main__":
    run(main)
