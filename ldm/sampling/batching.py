"""Several callers' generate requests served together: one thread runs the waiting requests that share
their model and settings as one UNet batch, so a server's throughput grows with its load; other model work
(MicroBatcher.run) takes its turn on the same thread, and so does live work (MicroBatcher.run_live: one
waiting call per client, the newest; a bounded number of clients; while both kinds wait, live work gets a
set share of the thread's time, so a flood of slider moves cannot starve a queued request, nor a queue of
requests the sliders).

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

import torch

from ldm.errors import LdmError
from ldm.sampling.requests import ImageSpec, Progress, Settings

MAX_AHEAD_S = 2.0  # the most (weighted) time either kind of work may be owed by the other


class _Task:
    """Work handed to the serving thread, and its outcome once done."""

    live = False  # live work (MicroBatcher.run_live), timed against its share

    def __init__(self):
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None

    def finish(self, result: object = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()

    def fail(self, exc: BaseException) -> None:
        """Finish with `exc`; Ctrl-C or SIGTERM on the serving thread reaches the caller as a one-line error."""
        self.finish(error=exc if isinstance(exc, Exception) else LdmError("the server is stopping"))

    def outcome(self):
        """Wait for the result; raise what the work raised."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


class _Job(_Task):
    """Images to generate; jobs for the same model with equal (resolved) settings can share one call."""

    def __init__(self, model, specs: list[ImageSpec], settings: Settings, progress: Progress | None):
        super().__init__()
        self.model, self.specs, self.settings, self.progress = model, specs, settings, progress

    def joins(self, other: _Job) -> bool:
        """Whether the two can run as one batch."""
        return other.model is self.model and other.settings == self.settings


class _Call(_Task):
    """Any other model work."""

    def __init__(self, fn: Callable[[], object], live: bool = False):
        super().__init__()
        self.fn, self.live = fn, live


class _EveryoneLeft(Exception):
    """Every caller of a group stopped: the call ends at this step."""


class MicroBatcher:
    """Serves SamplingModel.generate requests from many threads, joining waiting ones for the same model with
    equal settings (a server may hold several models, e.g. a teacher and its few-step student)."""

    def __init__(self, model, max_images: int = 16, linger_s: float = 0.05, own_thread: bool = True,
                 max_live: int = 32, live_share: float = 1 / 3, clock: Callable[[], float] = time.monotonic):
        self.model = model  # the default one
        self.max_images = max_images  # images in one call (one UNet batch)
        self.max_live = max_live  # clients whose live call may wait at once; more are refused
        # How long the oldest request waits for others to join it. Under load, clients answered by one
        # batch send their next requests within milliseconds of each other; without a pause the first of
        # them would run alone and the rest wait for it.
        self.linger_s = linger_s
        self.calls = 0  # generate calls made, for tests and benchmarks
        self._pending: list[_Task] = []
        self._live: dict[str, _Call] = {}  # each client's waiting live call, oldest client first
        # While live and queued work both wait, live work gets live_share of the thread's time: a queued request
        # then waits about half its own time for live work (1/3 of the time), and 32 dragged sliders still move.
        # _ahead: how far live work is ahead of its share (seconds, weighted), counting only work picked while both
        # kinds waited, and kept within MAX_AHEAD_S either way so that neither kind saves up a long turn.
        self.live_share, self._clock = live_share, clock
        self._ahead = 0.0
        self._contended = False  # whether the work being served was picked while both kinds waited
        self._wake = threading.Condition()
        if own_thread:  # else the caller runs serve_forever(), e.g. on the main thread (see app/server.py)
            threading.Thread(target=self.serve_forever, name="ldm-micro-batcher", daemon=True).start()

    def generate(self, specs: Sequence[ImageSpec], settings: Settings = Settings(),
                 progress: Progress | None = None, model=None) -> torch.Tensor:
        """model.generate(specs, settings) (default: the batcher's model), run in a group with other waiting
        requests."""
        model = model or self.model
        return self._enqueue(_Job(model, list(specs), model.resolve(settings), progress)).outcome()

    def run(self, fn: Callable, *args, wait: bool = True, **kwargs):
        """fn(*args, **kwargs) on the serving thread in its turn, and its result (wait=False: at once, None).

        Other model work (walks, decoding, encoding a dataset) goes through here too, so that all of it runs
        on one thread: with two threads' OpenMP pools on a few cores, each ran at about half speed.
        """
        call = self._enqueue(_Call(functools.partial(fn, *args, **kwargs)))
        return call.outcome() if wait else None

    def run_live(self, client: str, fn: Callable, *args, **kwargs):
        """fn(*args, **kwargs) on the serving thread as live work (an image following a slider), and its result.

        A client's newer call replaces its call still waiting, and every caller waiting on it gets the newest
        result (a page sends its latest state; older states are never drawn). At most max_live clients wait;
        while other work waits too, live calls get live_share of the thread's time, so queued requests keep
        their pace whatever the live load.
        """
        work = functools.partial(fn, *args, **kwargs)
        with self._wake:
            call = self._live.get(client)
            if call is not None:
                call.fn = work  # not started yet: a call leaves the dict before it runs
            elif len(self._live) >= self.max_live:
                raise LdmError(f"the server is busy: {self.max_live} live requests are waiting; try again shortly")
            else:
                call = self._live[client] = _Call(work, live=True)
                self._wake.notify()
        return call.outcome()

    def _enqueue(self, job: _Task) -> _Task:
        with self._wake:
            self._pending.append(job)
            self._wake.notify()
        return job

    def _next_group(self) -> list[_Task]:
        # the oldest live call or the oldest request, each kind by its share of the time (_count); with a request,
        # every later one with its settings that still fits (first come, first served)
        with self._wake:
            while not self._pending and not self._live:
                self._wake.wait()
            self._contended = bool(self._live and self._pending)
            if self._live and (not self._pending or self._ahead <= 0):
                return [self._live.pop(next(iter(self._live)))]
            if isinstance(self._pending[0], _Call):
                return [self._pending.pop(0)]
            deadline = time.monotonic() + self.linger_s
            while len(self._pending) < self.max_images and (left := deadline - time.monotonic()) > 0:
                self._wake.wait(left)
            first = self._pending.pop(0)
            group, count = [first], len(first.specs)
            for job in list(self._pending):
                if isinstance(job, _Job) and first.joins(job) and count + len(job.specs) <= self.max_images:
                    self._pending.remove(job)
                    group.append(job)
                    count += len(job.specs)
            return group

    def _count(self, live: bool, seconds: float) -> None:
        # live time moves live work ahead by its weight in the share, queued time moves it back
        if self._contended:
            weighted = seconds * (1 - self.live_share) if live else -seconds * self.live_share
            self._ahead = min(MAX_AHEAD_S, max(-MAX_AHEAD_S, self._ahead + weighted))

    def serve_forever(self) -> None:
        """Serve requests as they come, in this thread, until interrupted."""
        try:
            while True:
                group = self._next_group()
                live, start = group[0].live, self._clock()
                if isinstance(group[0], _Call):
                    self._call(group[0])
                else:
                    self._serve(group)
                self._count(live, self._clock() - start)
                with self._wake:
                    idle = not self._pending and not self._live
                if idle:
                    release_free_memory()
        finally:  # Ctrl-C or SIGTERM: nobody waits forever for an answer
            with self._wake:
                waiting, self._pending = [*self._pending, *self._live.values()], []
                self._live = {}
            for job in waiting:
                job.fail(KeyboardInterrupt())

    @staticmethod
    def _call(call: _Call) -> None:
        try:
            result = call.fn()
        except BaseException as exc:
            call.fail(exc)
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
            images = group[0].model.generate(specs, group[0].settings, batch_size=max(len(specs), 1),
                                             progress=progress)
        except _EveryoneLeft:
            return
        except BaseException as exc:
            for job in live:
                job.fail(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for job in group:
            if job in live:
                job.finish(images[start:start + len(job.specs)])
            start += len(job.specs)


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_MALLOC_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Hand memory that a large batch freed back to the system (glibc keeps it otherwise), so a server's
    RSS returns to its resting level once a burst of requests is over."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
