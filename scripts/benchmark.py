"""Benchmarks: python scripts/benchmark.py train|sample|schedulers|ui|realtime|live|data|teach [options]; each prints
what one run measured."""

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ sits beside ldm/, not installed

from benchmarks.options import ATTENTION, MODES, REALTIME_MODES, SAMPLE_MODES
from ldm.cli import Parser, quiet_libraries, run
from ldm.config import load_config, vae_factor
from ldm.errors import LdmError
from ldm.folders import check_model_folder, has_tiny_vae
from ldm.sampling.requests import DEFAULT_MODEL, DEFAULT_STUDENT


def parse_args() -> argparse.Namespace:
    """One sub-command per benchmark; every value is checked before torch is imported."""
    parser = Parser(description="Measure ldm against a naive baseline on this machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_sample_parser(sub)
    add_schedulers_parser(sub)
    add_ui_parser(sub)
    add_realtime_parser(sub)
    add_live_parser(sub)
    add_teach_parser(sub)
    add_data_parser(sub)
    args = parser.parse_args()
    check_args(args)
    return args


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """The `train` sub-command: UNet training samples/s and peak memory, ours vs naive."""
    train = sub.add_parser("train", help="UNet training samples/s and peak memory: ours vs encode-every-batch fp32")
    train.add_argument("--config", default="configs/emoji64.yaml", help="model config (default configs/emoji64.yaml)")
    train.add_argument("--steps", type=int, default=5, help="timed steps per mode (default 5)")
    train.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    train.add_argument("--batch-size", type=int, help="default: the config's train_unet.batch_size")
    train.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    train.add_argument("--precision", choices=["auto", "no", "bf16"], help="ours only (default: the config's)")
    train.add_argument("--channels-last", action="store_true", help="ours only: channels_last UNet and latents")
    train.add_argument("--attention", choices=ATTENTION, default="trainer",
                       help="ours only (naive uses sdpa): 'trainer' (what ldm's trainer uses), 'sdpa' (PyTorch's "
                       "fused kernel), 'math' (SDPA's matmul-softmax backend), 'classic' (diffusers AttnProcessor)")
    train.add_argument("--device", help="cpu, cuda, ... for both modes (default: a GPU if there is one)")
    train.add_argument("--only", choices=MODES, help="run one mode in this process and print its result as JSON")


def add_sample_parser(sub: argparse._SubParsersAction) -> None:
    """The `sample` sub-command: seconds an image, ours (and the student) vs stock diffusers."""
    sample = sub.add_parser("sample", help="seconds an image and peak memory: ours (and the few-step student) vs "
                            "stock diffusers defaults")
    sample.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    sample.add_argument("--student", help="its few-step student, timed too (default: the shipped student with the "
                        "shipped model; 'none': skip)")
    sample.add_argument("--num-images", type=int, nargs="+", default=[8, 40],
                        help="images in each timed batch; two counts give the marginal time an image (default 8 40)")
    sample.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    sample.add_argument("--only", choices=SAMPLE_MODES, help="run one mode in this process (needs --export)")
    sample.add_argument("--export", help="exported folder for the stock mode (default: a temporary export)")


def add_schedulers_parser(sub: argparse._SubParsersAction) -> None:
    """The `schedulers` sub-command: prompt fidelity and s/image per scheduler and step count."""
    sweep = sub.add_parser("schedulers", help="prompt fidelity and s/image per scheduler and step count")
    sweep.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    sweep.add_argument("--config", help="config naming the dataset (default: the model's ldm_config.yaml)")
    sweep.add_argument("--captions", type=int, default=96, help="training captions generated per setting")
    sweep.add_argument("--no-stock", action="store_true",
                       help="skip the stock-defaults row (50 steps, guidance 7.5, fp32: the slowest row)")


def add_ui_parser(sub: argparse._SubParsersAction) -> None:
    """The `ui` sub-command: web UI throughput and latency, batching off vs on."""
    ui = sub.add_parser("ui", help="web UI requests/s and p50/p95 under 1, 4, 16 clients: batching off vs on")
    ui.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    ui.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrent clients (default 1 4 16)")
    ui.add_argument("--requests", type=int, default=5, help="one-image requests per client (default 5)")
    ui.add_argument("--steps", type=int, default=14, help="denoising steps per request (default 14)")
    ui.add_argument("--max-batch", type=int, default=16, help="the batched server's --max-batch (default 16)")
    ui.add_argument("--student", default=str(DEFAULT_STUDENT),
                    help="a few-step student the batched server also serves, picked per request (default: the "
                         "shipped student; 'none': skip)")
    ui.add_argument("--flood", type=int, default=0, metavar="CLIENTS",
                    help="instead: /generate's latency idle and while CLIENTS pages drag a live slider (the student's)")
    ui.add_argument("--during-teach", action="store_true",
                    help="instead: /generate's latency idle and while the Train tab's worker teaches a concept")


def add_realtime_parser(sub: argparse._SubParsersAction) -> None:
    """The `realtime` sub-command: frames/s of a seed walk and prompt morph."""
    live = sub.add_parser("realtime", help="frames/s of a 48-frame seed walk and prompt morph: the few-step student, "
                          "its teacher and stock diffusers, with the time split")
    live.add_argument("--student", default=str(DEFAULT_STUDENT),
                      help="few-step student folder (default: the shipped one)")
    live.add_argument("--teacher", default=str(DEFAULT_MODEL), help="its teacher (default: the shipped model)")
    live.add_argument("--frames", type=int, default=48, help="frames of each walk and morph (default 48)")
    live.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    live.add_argument("--no-stock", action="store_true", help="skip stock diffusers (50 steps with CFG: the slowest)")
    live.add_argument("--only", choices=REALTIME_MODES, help="run one mode in this process (stock needs --export)")
    live.add_argument("--export", help="the teacher exported for stock diffusers (default: a temporary export)")


def add_live_parser(sub: argparse._SubParsersAction) -> None:
    """The `live` sub-command: input-to-image milliseconds of the UI's live controls."""
    browser = sub.add_parser("live", help="milliseconds from input to image for the web UI's live controls, "
                             "in headless Chromium")
    browser.add_argument("--model", default=str(DEFAULT_MODEL),
                         help="pipeline folder the app serves (default: the shipped model, live with its student)")
    browser.add_argument("--samples", type=int, default=15, help="timed inputs per control (default 15)")


def add_teach_parser(sub: argparse._SubParsersAction) -> None:
    """The `teach` sub-command: teach the shipped model a held-out emoji and measure it."""
    teach = sub.add_parser("teach", help="teach the shipped model a held-out emoji (and a style): learnt, composes, "
                           "nothing forgotten, style; wall and CPU time, peak RSS")
    teach.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    teach.add_argument("--data", required=True, help="the emoji folder scripts/build_emoji_dataset.py wrote (with its "
                       "held-out split)")
    teach.add_argument("--emoji", default="octopus", help="a held-out emoji's caption (default octopus)")
    teach.add_argument("--name", default="zorbly", help="the new word (default zorbly)")
    teach.add_argument("--class", dest="class_prompt", default="", help="class prompt (default none)")
    teach.add_argument("--modifier", action="append", dest="modifiers", metavar="MODIFIER",
                       help="a modifier the dataset knows, {} for the name (repeatable; default: "
                       "colours, skin tones and 'face')")
    teach.add_argument("--method", choices=["lora", "ti"], default="lora", help="as scripts/teach.py (default lora)")
    teach.add_argument("--steps", type=int, help="most steps (default: the method's config)")
    teach.add_argument("--seeds", type=int, default=8, help="images of the name (default 8)")
    teach.add_argument("--captions", type=int, default=200, help="evaluation captions for fidelity (default 200)")
    teach.add_argument("--style", choices=["sketch", "negative", "none"], default="sketch",
                       help="a filter applied to training emoji, taught as a style (default sketch; none: skip)")
    teach.add_argument("--style-images", type=int, default=20, help="filtered emoji the style is taught from")
    teach.add_argument("--style-steps", type=int, default=500, help="steps of the style run (default 500: twenty "
                       "images need more than the concept's three)")
    teach.add_argument("--work", help="folder for the runs (default: a temporary folder)")
    teach.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="a config override for the teach runs (repeatable)")


def add_data_parser(sub: argparse._SubParsersAction) -> None:
    """The `data` sub-command: latent-cache build rate and training reads' peak memory."""
    data = sub.add_parser("data", help="latent-cache build images/s with 1 and 2 processes; peak memory of training "
                          "reads from 10k to 1M-row caches, sharded vs all in memory")
    data.add_argument("--config", default="configs/emoji64.yaml",
                      help="its VAE architecture, size and caption length (default configs/emoji64.yaml)")
    data.add_argument("--images", type=int, default=1024, help="procedural images the timed build encodes")
    data.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="build processes (default 1 2)")
    data.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                      help="rows of the synthetic caches (default 10000 100000 1000000)")
    data.add_argument("--memory-up-to", type=int, default=100_000,
                      help="largest cache also read all into memory, as before sharding (default 100000)")
    data.add_argument("--steps", type=int, default=200, help="training batches drawn per cache (default 200)")
    data.add_argument("--batch-size", type=int, default=64, help="rows a batch (default 64)")
    data.add_argument("--read-threads", type=int, nargs="+", default=[1, 4],
                      help="reading threads of the trainer's batches timed on each sharded cache (default 1 4)")
    data.add_argument("--no-train", action="store_true", help="skip training samples/s at each process count")
    data.add_argument("--only", help=argparse.SUPPRESS)  # one measurement in this process: rss:MODE:ROWS


def check_args(args: argparse.Namespace) -> None:
    """One-line errors for values argparse cannot judge: counts, the config, model and export folders."""
    for flag, least in (("steps", 1), ("warmup", 0), ("batch_size", 1), ("threads", 1), ("num_images", 1),
                        ("captions", 1), ("requests", 1), ("max_batch", 1), ("frames", 2), ("samples", 3)):
        value = getattr(args, flag, None)
        value = min(value) if isinstance(value, list) else value
        if value is not None and value < least:
            raise LdmError(f"--{flag.replace('_', '-')} must be at least {least}, got {value}")
    if args.command in ("train", "data"):
        load_config(args.config)
        # the name only (torch is not loaded yet); whether the machine has it, the mode's process says
        if args.command == "train" and args.device and not re.fullmatch(r"(cpu|cuda|mps|xpu)(:\d+)?", args.device):
            raise LdmError(f"unknown device {args.device!r} (cpu, cuda, cuda:1, ...)")
        for flag in ("images", "processes", "sizes", "memory_up_to", "read_threads"):
            values = getattr(args, flag, None)
            values = values if isinstance(values, list) else [values]
            if any(v is not None and v < 1 for v in values):
                raise LdmError(f"--{flag.replace('_', '-')} must be at least 1")
        return
    if args.command == "realtime":
        check_model_folder(args.student, "--student")
        check_model_folder(args.teacher, "--teacher")
        if args.export:
            check_model_folder(args.export, "--export")
        if args.only == "stock" and not args.export:
            raise LdmError("--only stock needs --export (the exported teacher stock diffusers loads)")
        return
    if args.command == "ui" and min(args.clients) < 1:
        raise LdmError(f"--clients must be at least 1, got {min(args.clients)}")
    if args.command == "ui" and args.student != "none":
        check_model_folder(args.student, "--student")
    if args.command == "ui" and args.flood and (args.flood < 1 or args.student == "none"):
        raise LdmError("--flood takes a number of clients (at least 1) and a --student to render live frames")
    check_model_folder(args.model)
    if args.command == "sample" and args.export:
        check_model_folder(args.export)
    if args.command == "sample" and args.only and not args.export:
        raise LdmError("--only needs --export (the exported folder the stock mode loads)")
    if args.command == "sample" and (len(args.num_images) > 2 or sorted(set(args.num_images)) != args.num_images):
        raise LdmError("--num-images takes one count, or two increasing counts (the marginal time between them)")
    if args.command == "sample" and args.student not in (None, "none"):
        check_model_folder(args.student, "--student")
    if args.command == "teach":
        check_model_folder(args.model)
        if not (Path(args.data) / "heldout.txt").is_file():
            raise LdmError(f"--data {args.data} has no heldout.txt: build it with scripts/build_emoji_dataset.py")
        if min(args.seeds, args.captions, args.style_images, args.style_steps) < 1:
            raise LdmError("--seeds, --captions, --style-images and --style-steps must be at least 1")
        if args.modifiers is not None and (len(args.modifiers) < 2 or any("{}" not in m for m in args.modifiers)):
            raise LdmError("--modifier needs {} where the name goes, e.g. 'blue {}', and at least two of them")
    if args.command == "schedulers":
        config = Path(args.config) if args.config else Path(args.model) / "ldm_config.yaml"
        if not config.is_file():
            raise LdmError(f"no config {config}: pass --config")
        load_config(config)


def main_sample(args: argparse.Namespace) -> None:
    """Export once, time each mode in its own process, then print the comparison."""
    from benchmarks.child import emit_result, run_child
    from benchmarks.machine import matmul_rates
    from benchmarks.sample import bench_sample, format_sample_report
    from ldm.sampling.export import export_pipeline

    if args.only:
        emit_result(bench_sample(args.only, args.model, args.export, args.num_images, args.threads))
        return
    with tempfile.TemporaryDirectory(prefix="ldm-bench-") as tmp:
        export = args.export or str(export_pipeline(args.model, Path(tmp) / "export"))
        results = []
        student = args.student or (str(DEFAULT_STUDENT) if Path(args.model).resolve() == DEFAULT_MODEL else "none")
        for mode in [m for m in SAMPLE_MODES if not (m == "student" and student == "none")]:
            child = [sys.executable, __file__, "sample", "--only", mode, "--model",
                     student if mode == "student" else args.model, "--export", export,
                     "--num-images", *map(str, args.num_images)] + \
                (["--threads", str(args.threads)] if args.threads else [])
            print(f"running {mode} ...", file=sys.stderr, flush=True)
            results.append(run_child(child))
    rates = matmul_rates(args.threads)
    print(format_sample_report(results, args.model, rates))


def main_realtime(args: argparse.Namespace) -> None:
    """Time each mode in its own process (one exported teacher for stock diffusers), then print the report."""
    from benchmarks.child import emit_result, run_child
    from benchmarks.machine import matmul_rates
    from benchmarks.realtime import bench_realtime, format_realtime_report
    from ldm.sampling.export import export_pipeline

    if args.only:
        student = args.only.startswith("student")
        emit_result(bench_realtime(args.only, args.student if student else args.teacher, args.export, args.frames,
                                   args.threads, cli_walk=student))
        return
    # the student with the full VAE only where it has a tiny one to compare with
    skip = {"stock"} if args.no_stock else set()
    if not has_tiny_vae(Path(args.student)):
        skip.add("student-full")
    modes = [m for m in REALTIME_MODES if m not in skip]
    with tempfile.TemporaryDirectory(prefix="ldm-bench-") as tmp:
        export = args.export or ("stock" in modes and str(export_pipeline(args.teacher, Path(tmp) / "export")))
        results = []
        for mode in modes:
            child = [sys.executable, __file__, "realtime", "--only", mode, "--student", args.student, "--teacher",
                     args.teacher, "--frames", str(args.frames)] + (["--export", export] if export else []) + \
                (["--threads", str(args.threads)] if args.threads else [])
            print(f"running {mode} ...", file=sys.stderr, flush=True)
            results.append(run_child(child))
    print(format_realtime_report(results, matmul_rates(args.threads)))


def main_train(args: argparse.Namespace) -> None:
    """Time each training mode in its own process (peak memory is per mode), then print the comparison."""
    from benchmarks.child import emit_result, run_child
    from benchmarks.machine import matmul_rates
    from benchmarks.train import bench_train, format_report

    common = {"steps": args.steps, "warmup": args.warmup, "batch_size": args.batch_size, "threads": args.threads,
              "device": args.device}
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
    # the share of the matmul peak is this CPU's; a GPU run reports its peak memory instead
    rates = matmul_rates(args.threads) if all(r["device"] == "cpu" for r in results) else None
    print(format_report(results, args.config, rates))


def main_data(args: argparse.Namespace) -> None:
    """Cache builds (one launch per process count), then one child process per cache size and reading mode."""
    from benchmarks.child import emit_result
    from benchmarks.data import bench_build, bench_rss, bench_train_processes, format_data_report, rss_children

    cfg = load_config(args.config)
    side = cfg.data.resolution // vae_factor(cfg)
    shape = (cfg.vae.latent_channels, side, side)
    if args.only:
        _, mode, rows = args.only.split(":")
        emit_result(bench_rss(int(rows), mode, args.steps, args.batch_size, shape, cfg.text.max_length, 384,
                              tuple(args.read_threads)))
        return
    build = []
    for n in args.processes:
        print(f"building a {args.images}-image cache with {n} process(es) ...", file=sys.stderr, flush=True)
        build.append(bench_build(n, args.images, args.config))
    rss = rss_children(sorted(args.sizes), args.steps, args.batch_size, args.memory_up_to, tuple(args.read_threads))
    train = []
    for n in [] if args.no_train else args.processes:
        print(f"training with {n} process(es) ...", file=sys.stderr, flush=True)
        train.append(bench_train_processes(n, args.config))
    print(format_data_report(build, rss, shape, cfg.text.max_length, 384, train))


def main_teach(args: argparse.Namespace) -> None:
    """Teach and measure in a work folder (temporary unless --work), then print the report."""
    from benchmarks.teach import MODIFIERS, StyleRun, bench_teach, format_teach_report

    configs = Path(__file__).resolve().parents[1] / "configs"
    config = str(configs / ("teach_ti.yaml" if args.method == "ti" else "teach_dreambooth.yaml"))
    with tempfile.TemporaryDirectory(prefix="ldm-teach-") as tmp:
        work = Path(args.work or tmp)
        style = None if args.style == "none" else StyleRun(args.style, args.style_images, args.style_steps)
        report = bench_teach(args.model, args.data, config, args.emoji, args.name, args.class_prompt,
                             args.modifiers or list(MODIFIERS), args.steps, args.seeds, args.captions, style, work,
                             args.overrides)
    print(format_teach_report(report))


def main() -> None:
    """Check the arguments, then load the libraries and run the chosen benchmark."""
    args = parse_args()
    quiet_libraries()
    if args.command == "sample":
        main_sample(args)
    elif args.command == "schedulers":
        from benchmarks.schedulers import format_sweep, scheduler_sweep

        print(format_sweep(scheduler_sweep(args.model, args.config, args.captions, stock=not args.no_stock)))
    elif args.command == "realtime":
        main_realtime(args)
    elif args.command == "live":
        from benchmarks.live import bench_live, format_live_report

        print(format_live_report(bench_live(args.model, args.samples)))
    elif args.command == "ui" and args.during_teach:
        from benchmarks.ui import bench_during_teach, format_teach_load_report

        print(format_teach_load_report(bench_during_teach(args.model, args.requests, args.steps), args.model))
    elif args.command == "ui" and args.flood:
        from benchmarks.ui import bench_live_flood, format_flood_report

        report = bench_live_flood(args.model, args.student, args.flood, args.requests, args.steps)
        print(format_flood_report(report, args.model, args.student))
    elif args.command == "ui":
        from benchmarks.ui import bench_ui, format_ui_report

        rows = bench_ui(args.model, tuple(args.clients), args.requests, args.steps, (1, args.max_batch),
                        None if args.student == "none" else args.student)
        print(format_ui_report(rows, args.model))
    elif args.command == "data":
        main_data(args)
    elif args.command == "teach":
        main_teach(args)
    else:
        main_train(args)


if __name__ == "__main__":
    run(main)
