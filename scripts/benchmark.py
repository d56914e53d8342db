"""Benchmarks: python scripts/benchmark.py train [--config configs/emoji64.yaml] [--steps 3] [--batch-size 64]"""

import argparse
import sys

from ldm.bench import ATTENTION, MODES, bench_train, emit_result, format_report, run_child
from ldm.cli import run


def parse_args() -> argparse.Namespace:
    """Subcommands: `train` now; room for `sample` later."""
    parser = argparse.ArgumentParser(description="Measure ldm against a naive baseline on this machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="UNet training samples/s and peak memory: ours vs encode-every-batch fp32")
    train.add_argument("--config", default="configs/emoji64.yaml", help="model config (default configs/emoji64.yaml)")
    train.add_argument("--steps", type=int, default=5, help="timed steps per mode (default 5)")
    train.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    train.add_argument("--batch-size", type=int, help="default: the config's train_unet.batch_size")
    train.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    train.add_argument("--precision", choices=["no", "bf16"], help="ours only (default: the config's)")
    train.add_argument("--channels-last", action="store_true", help="ours only: channels_last UNet and latents")
    train.add_argument("--attention", choices=ATTENTION, default="trainer",
                       help="ours only (naive uses sdpa): 'trainer' (what ldm's trainer uses), 'sdpa' (PyTorch's "
                       "fused kernel), 'math' (SDPA's matmul-softmax backend), 'classic' (diffusers AttnProcessor)")
    train.add_argument("--only", choices=MODES, help="run one mode in this process and print its result as JSON")
    return parser.parse_args()


def main() -> None:
    """Run each mode in its own process so that peak memory is per mode, then print the comparison."""
    args = parse_args()
    common = {"steps": args.steps, "warmup": args.warmup, "batch_size": args.batch_size, "threads": args.threads}
    if args.only:
        ours = args.only == "ours"
        emit_result(bench_train(args.config, args.only, **common, precision=args.precision if ours else None,
                                channels_last=args.channels_last and ours,
                                attention=args.attention if ours else "sdpa"))
        return
    results = []
    for mode in MODES:
        child = [sys.executable, __file__, "train", "--only", mode] + sys.argv[2:]
        print(f"running {mode} ...", file=sys.stderr, flush=True)
        results.append(run_child(child))
    print(format_report(results, args.config))


if __name__ == "__main__":
    run(main)
