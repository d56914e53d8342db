"""Stopping a running request: each browser session has a flag that its Stop button sets and its handler's
progress reports check between denoising steps, so the only worker is free again within one step.

Gradio's own cancellation only stops waiting for the result; the thread doing the work runs to the end.
"""

from __future__ import annotations

import threading

from ldm.errors import LdmError
from ldm.sampling.requests import Progress


class Stopped(LdmError):
    """The user pressed Stop: the request ends between two denoising steps."""


class StopFlags:
    """One stop flag per session (Gradio's session hash)."""

    def __init__(self):
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        """A new request of `session` begins: its flag, cleared (a Stop pressed earlier does not stop it)."""
        with self._lock:
            flag = self._flags.setdefault(session, threading.Event())
        flag.clear()
        return flag

    def stop(self, session: str) -> None:
        """Stop the request `session` is running, if any."""
        with self._lock:
            flag = self._flags.get(session)
        if flag is not None:
            flag.set()

    def finish(self, session: str) -> None:
        """`session`'s request is over: forget its flag (sessions come and go)."""
        with self._lock:
            self._flags.pop(session, None)


def stoppable(progress: Progress | None, flag: threading.Event) -> Progress:
    """`progress` that raises Stopped once `flag` is set: the handlers report progress after every step."""

    def report(done: int, total: int, *args) -> None:
        if flag.is_set():
            raise Stopped(f"stopped at step {done} of {total}; a stopped request keeps nothing, so nothing was written")
        if progress is not None:
            progress(done, total, *args)

    return report
