"""Stopping a running request: each browser session has a flag that its Stop button sets and its handler's
progress reports check between denoising steps, so the only worker is free again within one step.

Gradio's own cancellation only stops waiting for the result; the thread doing the work runs to the end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ldm.errors import LdmError
from ldm.sampling.requests import Progress

KEPT = "a stopped request keeps nothing, so nothing was written"


class Stopped(LdmError):
    """The user pressed Stop: the request ends between two denoising steps."""


class StopFlags:
    """One stop flag per session (Gradio's session hash), and how far its request has got."""

    def __init__(self):
        self._flags: dict[str, threading.Event] = {}
        self._steps: dict[str, tuple[int, int]] = {}  # each running request's last reported (done, total)
        self._lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        """A new request of `session` begins: its flag, cleared (a Stop pressed earlier does not stop it)."""
        with self._lock:
            flag = self._flags.setdefault(session, threading.Event())
            self._steps[session] = (0, 0)
        flag.clear()
        return flag

    def reached(self, session: str, done: int, total: int) -> None:
        """`session`'s request has done `done` of `total` steps."""
        with self._lock:
            if session in self._steps:
                self._steps[session] = (done, total)

    def stop(self, session: str) -> str:
        """Stop the request `session` is running, if any; what was stopped, in words for the user."""
        with self._lock:
            flag, steps = self._flags.get(session), self._steps.get(session)
        if flag is None:
            return "Nothing was running."
        flag.set()
        where = f" at step {steps[0]} of {steps[1]}" if steps and steps[1] else " before its first step"
        return f"Stopped{where}: {KEPT}."

    def finish(self, session: str) -> None:
        """`session`'s request is over: forget its flag (sessions come and go)."""
        with self._lock:
            self._flags.pop(session, None)
            self._steps.pop(session, None)


def stoppable(progress: Progress | None, flag: threading.Event,
              reached: Callable[[int, int], None] | None = None) -> Progress:
    """`progress` that raises Stopped once `flag` is set: the handlers report progress after every step.
    reached(done, total) hears of every step (StopFlags.reached, for what a Stop says)."""

    def report(done: int, total: int, *args) -> None:
        if flag.is_set():
            raise Stopped(f"stopped at step {done} of {total}; {KEPT}")
        if reached is not None:
            reached(done, total)
        if progress is not None:
            progress(done, total, *args)

    return report
