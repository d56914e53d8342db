"""One benchmark mode per process, so each mode's peak RSS is its own: the child prints its result as one
marked JSON line, the parent picks it out of whatever else the libraries print."""

from __future__ import annotations

import json
import subprocess

from ldm.errors import LdmError

RESULT_PREFIX = "LDM_BENCH_RESULT "  # marks the child's result line among library chatter


def emit_result(result: dict) -> None:
    """Print a child's result as one marked JSON line for the parent to pick out."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(command: list[str], timeout: float | None = None) -> dict:
    """Run one benchmark mode in its own process and return its result."""
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1].removeprefix("error: ")
    raise LdmError(f"benchmark child ({' '.join(command[2:])}) failed with exit code {proc.returncode}: {tail}")
