"""Train the latent UNet: python scripts/train_unet.py --config configs/tiny.yaml --output-dir runs/tiny"""

from pathlib import Path

from ldm.cli import check_resume, config_from_args, quiet_libraries, run, training_parser
from ldm.errors import LdmError
from ldm.folders import check_model_folder, find_vae, read_json, refuse_student_teacher
from ldm.outputs import run_folder


def main() -> None:
    """Parse flags and train."""
    parser = training_parser("Train the text-conditioned latent UNet.", "configs/emoji64.yaml")
    parser.add_argument("--vae", help="trained VAE folder (default <output-dir>/vae or the config's vae_path)")
    parser.add_argument("--init-from", help="fine-tune (or, with configs/distill_lcm.yaml, distil a few-step student "
                        "from) this pipeline folder (ours or Stable Diffusion) instead of training a fresh UNet; "
                        "keeps its VAE, text encoder and tokenizer")
    args = parser.parse_args()
    cfg = config_from_args(args, "train_unet")
    if args.init_from:
        check_model_folder(args.init_from, "--init-from")
        cfg.finetune.init_from = args.init_from
    if not cfg.finetune.init_from:
        if cfg.finetune.method != "full":
            raise LdmError(f"finetune.method {cfg.finetune.method} starts from a pipeline folder: pass --init-from")
        find_vae(cfg, Path(args.output_dir), args.vae)
    elif cfg.finetune.method == "lcm":
        refuse_student_teacher(read_json(Path(cfg.finetune.init_from) / "unet" / "config.json"), cfg.finetune.init_from)
    check_resume(args, "unet")
    with run_folder(args.output_dir):
        quiet_libraries()  # the config is checked: now load torch and diffusers
        from ldm.train.unet import train_unet

        train_unet(cfg, args.output_dir, resume=args.resume, vae_path=args.vae,
                   trust_pickle=args.trust_pickle_checkpoint)


if __name__ == "__main__":
    run(main)
