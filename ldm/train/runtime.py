"""The run around a trainer: the Accelerator (device, precision, accumulation, TensorBoard), logging, progress,
Ctrl-C."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration
from tqdm.auto import tqdm

from ldm.config import TrainConfig
from ldm.precision import resolve_mixed_precision

log = logging.getLogger("ldm")


def setup_logging(accelerator: Accelerator | None = None) -> None:
    """One readable line per message on the main process; quiet on the others."""
    main = accelerator is None or accelerator.is_main_process
    logging.basicConfig(format="%(message)s", level=logging.INFO if main else logging.WARNING, force=True)
    for noisy in ("accelerate", "diffusers", "transformers", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def make_accelerator(tc: TrainConfig, output_dir: Path) -> Accelerator:
    """An Accelerator with mixed precision (auto resolved for this device), accumulation and TensorBoard logs
    under output_dir/logs once start_logs is called."""
    project = ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs"))
    try:
        import tensorboard  # noqa: F401

        log_with = "tensorboard"
    except ImportError:
        log_with = None
    # Without an accelerator, say so: Accelerate then runs several launched processes as gloo
    # multi-CPU instead of falling back to independent single-process runs.
    device = torch.device("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available()
                          else "cpu")
    accelerator = Accelerator(
        cpu=device.type == "cpu",
        mixed_precision=resolve_mixed_precision(tc.mixed_precision, device),
        gradient_accumulation_steps=tc.gradient_accumulation_steps,
        log_with=log_with,
        project_config=project,
    )
    setup_logging(accelerator)
    return accelerator


def start_logs(accelerator: Accelerator, name: str) -> None:
    """Open the TensorBoard log output_dir/logs/<name>: once the data is accepted, so that a refused run
    leaves no folder behind."""
    if accelerator.log_with and accelerator.is_main_process:
        accelerator.init_trackers(name)


def count_params(model: torch.nn.Module) -> str:
    """Parameter count in millions, for log lines."""
    return f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M"


def progress(total: int, initial: int, desc: str, enabled: bool) -> tqdm:
    """A tqdm bar; redrawn rarely when output goes to a log file rather than a terminal."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 60.0)


class CtrlC:
    """Ctrl-C (SIGINT) noted in `pressed` instead of raised while the block runs, so that a trainer can finish
    and save the step in hand; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.pressed = False
        self._previous = None

    def _note(self, signum, frame) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        log.warning("Ctrl-C: stopping after this step and saving it (Ctrl-C again stops at once, unsaved)")

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():  # only the main thread gets signals
            self._previous = signal.signal(signal.SIGINT, self._note)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def ignore_ctrl_c(worker_id: int = 0) -> None:
    """A DataLoader worker's init: leave Ctrl-C to the main process, which finishes its step first (a worker
    that died with it would fail the step's next batch)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
