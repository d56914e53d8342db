"""The frame every training run shares: resume, the step loop, logs, previews, checkpoints, Ctrl-C, the end.

A run (`vae.py`, `unet.py`) builds its models, wraps what a checkpoint holds in a `Run`, and hands
`Run.loop` one function that takes one optimizer step; everything around that step is written here once.
The loop is plain on purpose (nanoGPT's loop, lucidrains' `Trainer.train`): read it top to bottom to see
what happens after each step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from ldm.config import Config, TrainConfig
from ldm.train.checkpoints import TrainingState, checkpoint_root, load_checkpoint, resolve_resume, save_checkpoint
from ldm.train.runtime import CtrlC, progress

log = logging.getLogger("ldm")


@dataclass
class StepResult:
    """What one optimizer step reports: whether the weights changed, the gradient norm, and its metrics."""

    updated: bool
    grad_norm: float
    # called on logging steps only: a metric may reduce across processes or wait for the device
    metrics: Callable[[], dict[str, float]]


@dataclass
class Run:
    """One training run's frame: its Accelerator and config section, and what its checkpoints hold."""

    accelerator: Accelerator
    cfg: Config
    tc: TrainConfig
    kind: str  # 'vae' or 'unet': checkpoints/<kind> and the progress bar's label
    output_dir: Path
    state: TrainingState
    save_extra: Callable[[Path], None] | None = None  # more files in each checkpoint (EMA weights), main process
    load_extra: Callable[[Path], None] | None = None  # reads them back on resume

    def resume(self, resume: str | None, trust_pickle: bool = False) -> int:
        """Restore the checkpoint --resume names ('latest' or a folder) and return its step; 0 to start fresh."""
        ckpt = resolve_resume(checkpoint_root(self.output_dir, self.kind), resume, trust_pickle)
        if ckpt is None:
            if resume:
                log.info("starting fresh")
            return 0
        start = load_checkpoint(self.accelerator, ckpt, self.state, trust_pickle)
        if self.load_extra is not None:
            self.load_extra(ckpt)
        log.info("resumed from step %d (%s)", start, ckpt)
        return start

    def save(self, done: int) -> Path:
        """A checkpoint after `done` steps (the oldest beyond the config's limit pruned)."""
        path = save_checkpoint(self.accelerator, checkpoint_root(self.output_dir, self.kind), done, self.cfg,
                               self.tc.checkpoints_total_limit, self.state, self.save_extra)
        log.info("step %d: checkpoint -> %s", done, path)
        return path

    def loop(self, start: int, step: Callable[[int], StepResult], shown: str = "loss",
             preview: Callable[[int], None] | None = None, preview_every: int = 0, preview_at_end: bool = False
             ) -> None:
        """Steps `start` to max_steps; after each: logs, the main process's preview, checkpoints when due.

        `shown` is the metric the progress bar shows; `preview` runs every `preview_every` steps (0: never) and,
        with `preview_at_end`, after the last. Ctrl-C lets the step in hand finish, saves it as a
        checkpoint (a resume goes on exactly from there) and then raises KeyboardInterrupt; during the last
        step it changes nothing (the run then ends as it would have).
        """
        accelerator, tc = self.accelerator, self.tc
        samples_per_step = tc.batch_size * accelerator.num_processes * tc.gradient_accumulation_steps
        t_last, steps_since = time.perf_counter(), 0
        bar = progress(tc.max_steps, start, self.kind, accelerator.is_local_main_process)
        with CtrlC() as ctrl_c, bar:
            for index in range(start, tc.max_steps):
                result = step(index)
                done, steps_since = index + 1, steps_since + 1
                bar.update(1)
                if result.updated and (done % tc.log_every == 0 or done == tc.max_steps):
                    rate = steps_since * samples_per_step / max(time.perf_counter() - t_last, 1e-9)
                    metrics = result.metrics()
                    accelerator.log({**metrics, "lr": self.state.lr_scheduler.get_last_lr()[0],
                                     "grad_norm": result.grad_norm, "samples_per_s": rate}, step=done)
                    bar.set_postfix({shown: f"{metrics[shown]:.4f}", "sps": f"{rate:.1f}"})
                    t_last, steps_since = time.perf_counter(), 0
                if preview is not None and accelerator.is_main_process and (
                        (preview_every and done % preview_every == 0) or (preview_at_end and done == tc.max_steps)):
                    preview(done)
                saved = done % tc.checkpoint_every == 0 or done == tc.max_steps
                if saved:
                    self.save(done)
                if done < tc.max_steps and self._stop(ctrl_c.pressed):  # the last step: the run ends anyway
                    if not saved:
                        self.save(done)
                    log.warning("interrupted after step %d: --resume latest goes on from there", done)
                    raise KeyboardInterrupt

    def _stop(self, pressed: bool) -> bool:
        # every process stops after the same step, so that they save (a collective) together
        if self.accelerator.num_processes == 1:
            return pressed
        flag = torch.tensor([float(pressed)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def end(self) -> None:
        """Wait for every process and close the logs."""
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()
