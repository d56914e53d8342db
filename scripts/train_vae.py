"""Train the VAE: python scripts/train_vae.py --config configs/tiny.yaml --output-dir runs/tiny"""

from ldm.cli import check_resume, config_from_args, quiet_libraries, run, training_parser
from ldm.folders import vae_folder
from ldm.outputs import run_folder


def main() -> None:
    """Parse flags and train."""
    parser = training_parser("Train the KL autoencoder (VAE).", "configs/emoji64.yaml")
    parser.add_argument("--init-from", help="continue from this VAE (or pipeline) folder; with "
                        "train_vae.train_encoder=false only its decoder trains, so its latents stay valid")
    args = parser.parse_args()
    if args.init_from:
        vae_folder(args.init_from)
        args.overrides.append(f"train_vae.init_from={args.init_from}")
    cfg = config_from_args(args, "train_vae")
    check_resume(args, "vae")
    with run_folder(args.output_dir):
        quiet_libraries()  # the config is checked: now load torch and diffusers
        from ldm.train.vae import train_vae

        train_vae(cfg, args.output_dir, resume=args.resume, trust_pickle=args.trust_pickle_checkpoint)


if __name__ == "__main__":
    run(main)
