"""app/jobs.py: each session's Stop flag, and progress that raises once it is set."""

import threading

import pytest

from app.jobs import StopFlags, Stopped, stoppable


def test_a_stop_reaches_only_its_own_sessions_request():
    flags = StopFlags()
    mine, theirs = flags.start("mine"), flags.start("theirs")
    flags.stop("mine")
    assert mine.is_set() and not theirs.is_set()
    flags.stop("nobody")  # a Stop with nothing running is harmless
    assert flags.start("mine") is mine and not mine.is_set()  # the next request starts cleared
    flags.finish("mine")
    flags.stop("mine")
    assert not mine.is_set()  # a finished request is forgotten


def test_stoppable_progress_reports_until_the_flag_is_set_then_raises():
    flag, seen = threading.Event(), []
    report = stoppable(lambda done, total, *rest: seen.append((done, total, *rest)), flag)
    report(1, 4)
    report(2, 4, "encoding")
    flag.set()
    with pytest.raises(Stopped, match="^stopped at step 3 of 4; a stopped request keeps nothing"):
        report(3, 4)
    assert seen == [(1, 4), (2, 4, "encoding")]
    stoppable(None, threading.Event())(1, 2)  # a caller without a bar


def test_a_stop_says_at_which_step_it_ended_the_request_and_that_nothing_was_kept():
    flags = StopFlags()
    assert flags.stop("idle") == "Nothing was running."
    flag = flags.start("s")
    assert flags.stop("s") == "Stopped before its first step: a stopped request keeps nothing, so nothing was written."
    flag = flags.start("s")
    report = stoppable(None, flag, lambda done, total: flags.reached("s", done, total))
    report(3, 28)
    assert flags.stop("s").startswith("Stopped at step 3 of 28: a stopped request keeps nothing")
    with pytest.raises(Stopped, match="^stopped at step 4 of 28"):
        report(4, 28)
    flags.finish("s")
    assert flags.stop("s") == "Nothing was running."
