"""Ctrl-C reaches a child process whose parent ignores it (started with nohup or a shell's &)."""

import signal
import subprocess
import sys

from ldm.processes import take_ctrl_c

# waits for SIGINT as a trainer does: KeyboardInterrupt saves the step and exits 130
CHILD = ("import sys, time\nprint('ready', flush=True)\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
         "    sys.exit(130)")


def _interrupted(preexec_fn, wait_s: float = 30) -> int:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent as a background job: its children inherit
    try:
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, preexec_fn=preexec_fn)
    finally:
        signal.signal(signal.SIGINT, before)
    assert child.stdout.readline() == b"ready\n"
    child.send_signal(signal.SIGINT)
    try:
        return child.wait(wait_s)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def test_a_child_started_with_take_ctrl_c_gets_the_interrupt_its_parent_ignores():
    assert _interrupted(take_ctrl_c) == 130


def test_without_it_the_interrupt_is_lost():
    assert _interrupted(None, wait_s=1.5) == -signal.SIGKILL  # still sleeping: killed


def test_the_teach_worker_takes_stop_whatever_the_server_ignores():
    from app.handlers.teach_jobs import _worker_start

    assert _interrupted(_worker_start) == 130  # Stop is SIGINT: the run saves its step
