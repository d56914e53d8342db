"""Write a model's explorer map, which the Latent space tab opens without the images:
python scripts/build_explorer_map.py --data data/emoji64"""

import sys
from pathlib import Path

from ldm.cli import Parser, quiet_libraries, run
from ldm.errors import LdmError
from ldm.folders import check_model_folder
from ldm.sampling.requests import DEFAULT_MODEL


def main() -> None:
    """Parse flags, encode the images, write the map file and print its path and size."""
    p = Parser(description="Encode a fixed random subset of a model's training images (latents, caption embeddings, "
               "reconstruction errors, small thumbnails) into one safetensors file inside the model folder.")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    p.add_argument("--data", help="image folder (default: the one the model's config names, when it is here)")
    p.add_argument("--points", type=int, default=1000, help="images on the map (default 1000; the tab draws 1500 "
                   "at most)")
    p.add_argument("--seed", type=int, default=0, help="which random subset (default 0)")
    p.add_argument("--out", help="file to write (default: MODEL/explorer/map.safetensors, where the app looks)")
    p.add_argument("--device", help="cpu, cuda, ... (default: a GPU if there is one)")
    args = p.parse_args()
    if args.points < 3:
        raise LdmError(f"--points must be at least 3, got {args.points}")
    check_model_folder(args.model)
    quiet_libraries()
    from tqdm import tqdm

    from ldm.explore import MAP_FILE, build_map
    from ldm.sampling.sampler import load_sampling_model

    out = Path(args.out or Path(args.model) / MAP_FILE)
    model = load_sampling_model(args.model, args.device)
    bar = tqdm(unit="batch", desc="encoding", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    view = build_map(model, out, args.data, args.points, args.seed, progress)
    bar.close()
    print(f"{out}: {len(view)} images, {out.stat().st_size / 2**20:.2f} MiB")


if __name__ == "__main__":
    run(main)
