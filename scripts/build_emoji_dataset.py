"""Render every emoji into an imagefolder: python scripts/build_emoji_dataset.py --out data/emoji64"""

import argparse
import sys
import time
from functools import partial

from tqdm import tqdm

from ldm.data.emoji import DEFAULT_FONT, build_emoji_dataset
from ldm.errors import LdmError


def main() -> None:
    """Parse flags, build the dataset, print a summary."""
    parser = argparse.ArgumentParser(description="Render every fully-qualified emoji into an imagefolder dataset.")
    parser.add_argument("--out", required=True, help="output folder (images/, metadata.jsonl, heldout.txt)")
    parser.add_argument("--font", default=DEFAULT_FONT, help=f"colour emoji font (default: {DEFAULT_FONT})")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
    args = parser.parse_args()

    start = time.perf_counter()
    summary = build_emoji_dataset(args.out, font_path=args.font, size=args.size,
                                  progress=partial(tqdm, unit="emoji", desc="rendering"))
    seconds = time.perf_counter() - start

    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(summary["skipped_by_reason"].items()))
    print(f"wrote {summary['written']} images, skipped {summary['skipped']}"
          f"{f' ({reasons})' if reasons else ''}, held out {summary['heldout']} in {seconds:.1f}s")
    print(f"images:   {summary['images_dir']}")
    print(f"metadata: {summary['metadata']}")
    print(f"heldout:  {summary['heldout_file']}")


if __name__ == "__main__":
    try:
        main()
    except LdmError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
