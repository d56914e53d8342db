"""Teach a tiny, fast autoencoder to copy a model's VAE:
python scripts/train_tiny_vae.py --from weights/emoji64 --output-dir runs/tiny-vae
then copy runs/tiny-vae/vae_tiny into the pipeline folder (a few-step student then decodes with it)."""

from ldm.cli import check_resume, config_from_args, quiet_libraries, run, training_parser
from ldm.folders import vae_folder
from ldm.outputs import run_folder


def main() -> None:
    """Parse flags and train."""
    parser = training_parser("Teach a tiny autoencoder (diffusers AutoencoderTiny) to copy a VAE.",
                             "configs/emoji64.yaml")
    parser.add_argument("--from", dest="source", required=True,
                        help="the VAE to copy: a VAE folder or a pipeline folder (its vae/)")
    args = parser.parse_args()
    vae_dir = vae_folder(args.source, "--from")
    cfg = config_from_args(args, "train_tiny_vae")
    check_resume(args, "tiny_vae")
    with run_folder(args.output_dir):
        quiet_libraries()  # the config is checked: now load torch and diffusers
        from ldm.train.tiny_vae import train_tiny_vae

        train_tiny_vae(cfg, args.output_dir, vae_dir, resume=args.resume, trust_pickle=args.trust_pickle_checkpoint)


if __name__ == "__main__":
    run(main)
