"""Export a self-contained pipeline folder for stock diffusers: python scripts/export.py --out DIR"""

from ldm.cli import Parser, run
from ldm.pipeline import DEFAULT_MODEL, export_pipeline


def main() -> None:
    """Parse flags and export."""
    p = Parser(description="Write a folder that diffusers.StableDiffusionPipeline.from_pretrained loads as is.")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    p.add_argument("--out", required=True, help="new folder to write")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32", help="weight storage type")
    args = p.parse_args()
    print(export_pipeline(args.model, args.out, args.dtype))


if __name__ == "__main__":
    run(main)
