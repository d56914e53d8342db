"""Export a self-contained pipeline folder for stock diffusers: python scripts/export.py --out DIR"""

import tempfile
from pathlib import Path

from ldm.cli import Parser, quiet_libraries, run
from ldm.folders import check_model_folder
from ldm.sampling.requests import DEFAULT_MODEL


def main() -> None:
    """Parse flags and export."""
    p = Parser(description="Write a folder that diffusers.StableDiffusionPipeline.from_pretrained loads as is.")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    p.add_argument("--checkpoint", help="export a UNet training checkpoint instead (its EMA weights and run's VAE)")
    p.add_argument("--out", required=True, help="new folder to write")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32", help="weight storage type")
    p.add_argument("--lora", help="a LoRA file to fuse into the exported UNet")
    p.add_argument("--lora-scale", type=float, default=1.0, help="strength of the fused LoRA (default 1.0)")
    p.add_argument("--reference-encoder", action="store_true",
                   help="keep a packaged text encoder as a reference instead of a copy (smaller; needs ldm to load)")
    args = p.parse_args()
    if not args.checkpoint:
        check_model_folder(args.model)
    quiet_libraries()
    from ldm.sampling.export import export_pipeline

    if args.checkpoint:
        from ldm.train.unet import pipeline_from_checkpoint

        with tempfile.TemporaryDirectory(prefix="ldm-export-") as tmp:
            print(export_pipeline(pipeline_from_checkpoint(args.checkpoint, Path(tmp) / "model"), args.out,
                                  args.dtype, args.lora, args.lora_scale, args.reference_encoder))
        return
    print(export_pipeline(args.model, args.out, args.dtype, args.lora, args.lora_scale, args.reference_encoder))


if __name__ == "__main__":
    run(main)
