"""Several callers' generate requests served together: one thread runs the waiting requests that share
their settings as one UNet batch, so a server's throughput grows with its load; other model work
(MicroBatcher.run) takes its turn on the same thread.

Pixels do not change: an image depends only on its ImageSpec and the settings, never on the batch it
ran in (SamplingModel.generate). A caller whose progress callback raises (a Stop) leaves its group at
that step; the others go on.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ldm.errors import LdmError
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


@dataclass(eq=False)
class _Call:
    fn: Callable[[], object]
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None

    def finish(self, result: object = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


class _EveryoneLeft(Exception):
    """Every caller of a group stopped: the call ends at this step."""


class MicroBatcher:
    """Serves SamplingModel.generate requests from many threads, joining waiting ones with equal settings."""

    def __init__(self, model, max_images: int = 16, linger_s: float = 0.05, own_thread: bool = True):
        self.model = model
        self.max_images = max_images  # images in one call (one UNet batch)
        # How long the oldest request waits for others to join it. Under load, clients answered by one
        # batch send their next requests within milliseconds of each other; without a pause the first of
        # them would run alone and the rest wait for it.
        self.linger_s = linger_s
        self.calls = 0  # generate calls made, for tests and benchmarks
        self._pending: list[_Job] = []
        self._wake = threading.Condition()
        if own_thread:  # else the caller runs serve_forever(), e.g. on the main thread (see app/server.py)
            threading.Thread(target=self.serve_forever, name="ldm-micro-batcher", daemon=True).start()

    def generate(self, specs: Sequence[ImageSpec], settings: Settings = Settings(),
                 progress: Progress | None = None) -> torch.Tensor:
        """SamplingModel.generate(specs, settings), run in a group with other waiting requests."""
        job = self._enqueue(_Job(list(specs), self.model.resolve(settings), progress))
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.images

    def run(self, fn: Callable, *args, wait: bool = True, **kwargs):
        """fn(*args, **kwargs) on the serving thread in its turn, and its result (wait=False: at once, None).

        Other model work (walks, decoding, encoding a dataset) goes through here too, so that all of it runs
        on one thread: with two threads' OpenMP pools on a few cores, each ran at about half speed.
        """
        call = self._enqueue(_Call(functools.partial(fn, *args, **kwargs)))
        if not wait:
            return None
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def _enqueue(self, job):
        with self._wake:
            self._pending.append(job)
            self._wake.notify()
        return job

    def _next_group(self) -> list[_Job]:
        # the oldest request, and every later one with its settings that still fits (first come, first served)
        with self._wake:
            while not self._pending:
                self._wake.wait()
            if isinstance(self._pending[0], _Call):
                return [self._pending.pop(0)]
            deadline = time.monotonic() + self.linger_s
            while len(self._pending) < self.max_images and (left := deadline - time.monotonic()) > 0:
                self._wake.wait(left)
            first = self._pending.pop(0)
            group, count = [first], len(first.specs)
            for job in list(self._pending):
                if isinstance(job, _Job) and job.settings == first.settings and \
                        count + len(job.specs) <= self.max_images:
                    self._pending.remove(job)
                    group.append(job)
                    count += len(job.specs)
            return group

    def serve_forever(self) -> None:
        """Serve requests as they come, in this thread, until interrupted."""
        try:
            while True:
                group = self._next_group()
                if isinstance(group[0], _Call):
                    self._call(group[0])
                else:
                    self._serve(group)
                with self._wake:
                    idle = not self._pending
                if idle:
                    release_free_memory()
        finally:  # Ctrl-C or SIGTERM: nobody waits forever for an answer
            with self._wake:
                waiting, self._pending = self._pending, []
            for job in waiting:
                job.finish(error=LdmError("the server is stopping"))


    @staticmethod
    def _call(call: _Call) -> None:
        try:
            result = call.fn()
        except BaseException as exc:
            call.finish(error=exc if isinstance(exc, Exception) else LdmError("the server is stopping"))
            if not isinstance(exc, Exception):
                raise
            return
        call.finish(result)

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
        except BaseException as exc:
            for job in live:
                job.finish(error=exc if isinstance(exc, Exception) else LdmError("the server is stopping"))
            if not isinstance(exc, Exception):
                raise
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
