"""Start the web UI: flags, the model and dataset, the output folder, and Gradio's server."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import warnings
from pathlib import Path

from PIL import Image

from app.handlers.teach_jobs import MAX_TEACH_STEPS, TeachJobs
from ldm.cli import Parser, quiet_libraries
from ldm.data.images import MAX_PIXELS
from ldm.errors import LdmError
from ldm.folders import check_model_folder
from ldm.sampling.limits import UPLOAD_MB, WORK_BUDGET
from ldm.sampling.requests import DEFAULT_MODEL, DEFAULT_STUDENT, Settings

MAX_SESSIONS = 64  # sessions whose state Gradio keeps (least recently used dropped first)


def parse_args(argv=None) -> argparse.Namespace:
    """The app's flags."""
    p = Parser(description="ldm web UI: generate, seed walks, prompt morphs, latent space, autoencoder.")
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="pipeline folder (default: the shipped model)")
    p.add_argument("--data", help="image folder for the latent-space explorer (default: the model's training data)")
    p.add_argument("--data-limit", type=int, default=4000, help="images of the dataset to load (default 4000)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--auth", help="USER:PASSWORD required to use the app")
    p.add_argument("--device", help="cpu, cuda, ... (default: a GPU if there is one)")
    p.add_argument("--live-model", help="pipeline folder the live controls render with: a few-step student "
                   "(default: the shipped student with the shipped model, else --model itself; 'none': --model)")
    p.add_argument("--lora", action="append", default=[], help="a LoRA file to offer in the picker (repeatable)")
    p.add_argument("--queue-size", type=int, default=16, help="requests waiting at most; more are refused")
    p.add_argument("--max-live", type=int, default=32,
                   help="clients whose live image (a slider being dragged) may wait at once; more are refused "
                        "(default 32; each waits for one image at most, its newest)")
    p.add_argument("--max-sessions", type=int, default=MAX_SESSIONS,
                   help=f"browser or API sessions whose state is kept (default {MAX_SESSIONS}; the least recently "
                        "used go first: each holds about 0.7 MB)")
    p.add_argument("--max-batch", type=int, default=16,
                   help="images of several users' requests denoised together (default 16; 1: one request at a time)")
    p.add_argument("--max-work", type=float, default=WORK_BUDGET,
                   help=f"largest request in image-steps at the model's training size (default {WORK_BUDGET}: "
                        "16 images x 100 steps, or 4 x 25 at 4x the size)")
    p.add_argument("--teach-dir", default="runs/teach",
                   help="the Train tab's run folders (default runs/teach): kept, so a restarted server resumes them")
    p.add_argument("--max-teach-steps", type=int, default=MAX_TEACH_STEPS,
                   help=f"most steps one Train job may ask for (default {MAX_TEACH_STEPS}; one job at a time); "
                        "0: no Train tab jobs")
    return p.parse_args(argv)


def refuse_decompression_bombs() -> None:
    """Make PIL (which Gradio uses to read uploads) refuse images over ldm's pixel limit outright."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2  # PIL raises above twice this, warns above it
    warnings.simplefilter("error", Image.DecompressionBombWarning)


def live_folder(model: str, live: str | None) -> str | None:
    """The folder the live controls use: --live-model, else the shipped student beside the shipped model."""
    if live is not None:
        return None if live.lower() == "none" else live
    shipped = Path(model).resolve() == DEFAULT_MODEL.resolve() and DEFAULT_STUDENT.is_dir()
    return str(DEFAULT_STUDENT) if shipped else None


def lora_choices(model, paths: list[str]) -> dict[str, str]:
    """The picker's names for --lora files (a run folder's name for diffusers' standard file name)."""
    loras = {}
    for path in paths:
        model.resolve(Settings(lora=path))  # one-line error for a missing or pickle file
        name = Path(path).parent.name if Path(path).name == "pytorch_lora_weights.safetensors" else Path(path).stem
        loras[name] = path
    return loras


def main(argv=None) -> None:
    """Load the model, build the UI and serve it."""
    args = parse_args(argv)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    if auth is not None and len(auth) != 2:  # before the model loads: a typo is answered at once
        raise LdmError("--auth must be USER:PASSWORD")
    if args.max_batch < 1:
        raise LdmError(f"--max-batch must be at least 1, got {args.max_batch}")
    if not args.max_work > 0:
        raise LdmError(f"--max-work must be above 0, got {args.max_work}")
    if args.max_sessions < 1:
        raise LdmError(f"--max-sessions must be at least 1, got {args.max_sessions}")
    if args.max_teach_steps < 0:
        raise LdmError(f"--max-teach-steps must be 0 or more, got {args.max_teach_steps}")
    if args.max_live < 1:
        raise LdmError(f"--max-live must be at least 1, got {args.max_live}")
    for folder in (args.model, live_folder(args.model, args.live_model)):
        if folder:
            check_model_folder(folder)
    signal.signal(signal.SIGTERM, _stop)  # a service manager's stop cleans up like Ctrl-C
    out_dir = Path(tempfile.mkdtemp(prefix="ldm-ui-"))
    # Gradio's copies of uploads and outputs go inside our folder too (set before gradio is imported), so
    # that one removal cleans up all
    os.environ["GRADIO_TEMP_DIR"] = str(out_dir / "gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline tool
    try:
        serve(args, auth, out_dir)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def serve(args: argparse.Namespace, auth: tuple | None, out_dir: Path) -> None:
    """Load the model and the dataset, build the UI and serve it until Ctrl-C or SIGTERM."""
    quiet_libraries()
    refuse_decompression_bombs()
    from app.handlers.shared import Shared
    from app.tabs.latent import MAP_CSS
    from app.ui import PAGE_JS, build_ui
    from app.widgets import RESULT_CSS
    from ldm.explore import DatasetView, explorer_cache_dir
    from ldm.sampling.sampler import load_sampling_model

    model = load_sampling_model(args.model, args.device)
    live = live_folder(args.model, args.live_model)
    live_model = load_sampling_model(live, args.device) if live else None
    view = DatasetView.for_model(model, args.data, args.data_limit, explorer_cache_dir())
    # the Train tab's worker runs scripts/teach.py on the same model folder, niced, one job at a time
    teach = TeachJobs(Path(args.teach_dir), args.model, args.max_teach_steps, downloads=out_dir / "teach") \
        if args.max_teach_steps else None
    shared = Shared(model, view, out_dir / "requests", lora_choices(model, args.lora), args.max_work,
                    args.max_batch, batcher_thread=False, live=live_model, max_live=args.max_live, teach=teach)
    if view is not None:  # encode first thing, so that the first map or anomaly score need not wait for it
        shared.batcher.run(view.prepare, wait=False)
    demo = build_ui(shared)
    # each event runs one request at a time (Generate: up to --max-batch, joined into one batch); a bounded
    # queue refuses the rest cleanly. api_open=False: a direct POST to /gradio_api/run/<name> would run a queued
    # endpoint outside the queue and its limits
    demo.queue(default_concurrency_limit=1, max_size=args.queue_size, api_open=False)
    exposed = args.share or args.host not in ("127.0.0.1", "localhost", "::1")
    if exposed and auth is None:
        print("warning: the app is reachable from other machines and has no --auth; anyone who can reach it "
              "can use this machine's CPU/GPU", file=sys.stderr)
    launch(demo, args, auth, css=MAP_CSS + RESULT_CSS, js=PAGE_JS)
    print(f"ldm web UI: {demo.local_url}" + (f" and {demo.share_url}" if demo.share_url else
                                               "  (--share for a public link)"), flush=True)
    # The model's work runs here, on the main thread, one request (or batch) at a time; Gradio's handler
    # threads hand it over (MicroBatcher.generate and .run). Ctrl-C or SIGTERM ends it.
    try:
        shared.batcher.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if teach is not None:  # a running job saves its step: the next server resumes it
            teach.shutdown()
        demo.close()


def launch(demo, args: argparse.Namespace, auth: tuple | None, **page) -> None:
    """Start Gradio's server for the app's flags, without blocking (the caller serves the model)."""
    # quiet: Gradio's banner suggests `share=True in launch()`; this app's flag is --share.
    # state_session_capacity: Gradio keeps a copy of the page's configuration (about 0.7 MB here) for every
    # session, and every API call without one opens a new session; 10,000 by default, that grew the server
    # by 0.7 MB a request until it held gigabytes
    # max_threads: each waiting live image holds one of Gradio's worker threads (blocked, no CPU); with --max-live
    # of them waiting, queued jobs must still find threads of their own
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                max_file_size=f"{UPLOAD_MB}mb", show_error=True, ssr_mode=False,
                quiet=True, prevent_thread_lock=True, state_session_capacity=args.max_sessions,
                max_threads=40 + args.max_live + args.max_batch, **page)


def _stop(signum, frame):
    raise KeyboardInterrupt
