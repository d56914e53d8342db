"""Several callers' generate requests served together: one worker thread runs the waiting requests that
share their settings as one UNet batch, so a server's throughput grows with its load.

Pixels do not change: an image depends only on its ImageSpec and the settings, never on the batch it
ran in (SamplingModel.generate). A caller whose progress callback raises (a Stop) leaves its group at
that step; the others go on.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ldm.sampling.requests import ImageSpec, Progress, Settings


@dataclass(eq=False)  # jobs are told apart by identity
class _Job:
    specs: list[ImageSpec]
    settings: Settings  # resolved: equal settings can share a call
    progress: Progress | None
    done: threading.Event = field(default_factory=threading.Event)
    images: torch.Tensor | None = None
    error: BaseException | None = None

    def finish(self, images: torch.Tensor | None = None, error: BaseException | None = None) -> None:
        self.images, self.error = images, error
        self.done.set()


class _EveryoneLeft(Exception):
    """Every caller of a group stopped: the call ends at this step."""


class MicroBatcher:
    """Serves SamplingModel.generate requests from many threads, joining waiting ones with equal settings."""

    def __init__(self, model, max_images: int = 16, linger_s: float = 0.05):
        self.model = model
        self.max_images = max_images  # images in one call (one UNet batch)
        # How long the oldest request waits for others to join it. Under load, clients answered by one
        # batch send their next requests within milliseconds of each other; without a pause the first of
        # them would run alone and the rest wait for it.
        self.linger_s = linger_s
        self.calls = 0  # generate calls made, for tests and benchmarks
        self._pending: list[_Job] = []
        self._wake = threading.Condition()
        threading.Thread(target=self._serve_forever, name="ldm-micro-batcher", daemon=True).start()

    def generate(self, specs: Sequence[ImageSpec], settings: Settings = Settings(),
                 progress: Progress | None = None) -> torch.Tensor:
        """SamplingModel.generate(specs, settings), run in a group with other waiting requests."""
        job = _Job(list(specs), self.model.resolve(settings), progress)
        with self._wake:
            self._pending.append(job)
            self._wake.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.images

    def _next_group(self) -> list[_Job]:
        # the oldest request, and every later one with its settings that still fits (first come, first served)
        with self._wake:
            while not self._pending:
                self._wake.wait()
            deadline = time.monotonic() + self.linger_s
            while len(self._pending) < self.max_images and (left := deadline - time.monotonic()) > 0:
                self._wake.wait(left)
            first = self._pending.pop(0)
            group, count = [first], len(first.specs)
            for job in list(self._pending):
                if job.settings == first.settings and count + len(job.specs) <= self.max_images:
                    self._pending.remove(job)
                    group.append(job)
                    count += len(job.specs)
            return group

    def _serve_forever(self) -> None:
        while True:
            self._serve(self._next_group())
            with self._wake:
                idle = not self._pending
            if idle:
                release_free_memory()


    def _serve(self, group: list[_Job]) -> None:
        specs = [spec for job in group for spec in job.specs]
        live = list(group)

        def progress(done: int, total: int) -> None:
            # each caller sees the call's progress in its own images' steps
            for job in list(live):
                own = len(job.specs) * job.settings.steps
                try:
                    if job.progress is not None:
                        job.progress(round(done / total * own), own)
                except Exception as exc:  # a Stop: this caller leaves, the others go on
                    live.remove(job)
                    job.finish(error=exc)
            if not live:
                raise _EveryoneLeft

        self.calls += 1
        try:
            images = self.model.generate(specs, group[0].settings, batch_size=max(len(specs), 1), progress=progress)
        except _EveryoneLeft:
            return
        except Exception as exc:
            for job in live:
                job.finish(error=exc)
            return
        start = 0
        for job in group:
            if job in live:
                job.finish(images[start:start + len(job.specs)])
            start += len(job.specs)


def release_free_memory() -> None:
    """Hand memory that a large batch freed back to the system (glibc keeps it otherwise), so a server's
    RSS returns to its resting level once a burst of requests is over."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
