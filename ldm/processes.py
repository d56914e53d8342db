"""Child processes that Ctrl-C (SIGINT) stops cleanly: a trainer saves the step in hand when it gets one.

A process started in the background (`nohup`, a shell's `&`) has SIGINT ignored, and its children inherit that:
Python then installs no KeyboardInterrupt handler, and a Stop sent as SIGINT would be lost until a SIGKILL came.
"""

from __future__ import annotations

import signal


def take_ctrl_c() -> None:
    """In a child before it starts (Popen's preexec_fn): SIGINT back to its default, whatever the parent ignores."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
