"""Train the VAE: python scripts/train_vae.py --config configs/tiny.yaml --output-dir runs/tiny"""

from ldm.cli import config_from_args, run, training_parser
from ldm.train.vae import train_vae


def main() -> None:
    """Parse flags and train."""
    args = training_parser("Train the KL autoencoder (VAE).", "configs/emoji64.yaml").parse_args()
    cfg = config_from_args(args, "train_vae")
    train_vae(cfg, args.output_dir, resume=args.resume)


if __name__ == "__main__":
    run(main)
