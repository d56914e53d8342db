"""What a run of several processes (one machine or many) needs beyond Accelerate: a lost process told in one line.

When one process of a run dies (killed, out of memory, its machine gone), the others fail on their next
collective: gloo at once ("Connection reset by peer"), NCCL when its watchdog's timeout ends. That is not a
bug in the trainer, and its traceback helps nobody; every checkpoint already written is complete (see
`checkpoints.py`), so the user needs one line saying so.
"""

from __future__ import annotations

import re

# gloo raises plain RuntimeErrors ("[.../gloo/transport/tcp/pair.cc:537] Read error ...: Connection reset by peer")
_GLOO_LOST = re.compile(r"gloo/.*(Connection (reset|closed|refused)|Read error|Timed out|Socket closed)", re.S)
_SOURCE = re.compile(r"^\[[^\]]*\]\s*")  # the C++ file and line in front of the message
LOST = ("a process of this distributed run was lost ({reason}); every checkpoint written so far is complete: "
        "start the run again with --resume latest")


def lost_process(exc: BaseException) -> str | None:
    """The one line to print when exc is a collective failing because another process of the run is gone, else None."""
    import torch.distributed as dist

    if not isinstance(exc, RuntimeError):
        return None
    text = str(exc)
    if not (isinstance(exc, dist.DistError) or _GLOO_LOST.search(text)):
        return None
    reason = _SOURCE.sub("", text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
    reason = reason.split(". ")[0].rstrip(".")
    return LOST.format(reason=reason[:200])
