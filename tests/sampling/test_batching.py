"""MicroBatcher: waiting requests with equal settings share one generate call, with the same pixels."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from ldm.errors import LdmError
from ldm.sampling.batching import MicroBatcher
from ldm.sampling.requests import ImageSpec, Settings

SETTINGS = Settings(steps=2)


class HeldModel:
    """The tiny model, held at its first call until released, so that requests pile up meanwhile."""

    def __init__(self, model):
        self.model, self.release, self.calls = model, threading.Event(), []

    def resolve(self, settings):
        return self.model.resolve(settings)

    def generate(self, specs, settings, batch_size=8, progress=None):
        self.calls.append([sp.seed for sp in specs])
        self.release.wait(60)
        return self.model.generate(specs, settings, batch_size, progress)


def _submit(batcher, results, key, specs, settings=SETTINGS, progress=None, model=None):
    def run():
        try:
            results[key] = batcher.generate(specs, settings, progress, model=model)
        except Exception as exc:  # noqa: BLE001 (the test looks at what each caller got)
            results[key] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_for(condition, timeout=30.0):
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError("timed out")


def test_waiting_requests_with_equal_settings_share_one_call_and_keep_their_pixels(tiny_model):
    held = HeldModel(tiny_model)
    batcher = MicroBatcher(held, max_images=4)
    results = {}
    threads = [_submit(batcher, results, "first", [ImageSpec("a red square", 1)])]
    _wait_for(lambda: len(held.calls) == 1)  # the first request runs alone; the next three wait
    threads += [_submit(batcher, results, "pair", [ImageSpec("a blue circle", 2), ImageSpec("x", 3)]),
                _submit(batcher, results, "other", [ImageSpec("x", 4)], Settings(steps=3)),
                _submit(batcher, results, "single", [ImageSpec("a red square", 5)])]
    _wait_for(lambda: len(batcher._pending) == 3)
    held.release.set()
    for thread in threads:
        thread.join(120)
    assert held.calls == [[1], [2, 3, 5], [4]]  # equal settings joined; other settings waited their turn
    assert batcher.calls == 3
    for key, specs, settings in (("pair", [ImageSpec("a blue circle", 2), ImageSpec("x", 3)], SETTINGS),
                                 ("single", [ImageSpec("a red square", 5)], SETTINGS),
                                 ("other", [ImageSpec("x", 4)], Settings(steps=3))):
        assert torch.equal(results[key], tiny_model.generate(specs, settings)), key  # the batch changes nothing


def test_a_caller_that_stops_leaves_its_group_and_the_others_finish(tiny_model):
    held = HeldModel(tiny_model)
    batcher = MicroBatcher(held)
    results, seen = {}, []

    def stops_at_once(done, total):
        raise LdmError("stopped")

    threads = [_submit(batcher, results, "first", [ImageSpec("x", 1)])]
    _wait_for(lambda: len(held.calls) == 1)
    threads += [_submit(batcher, results, "stopper", [ImageSpec("x", 2)], progress=stops_at_once),
                _submit(batcher, results, "stays", [ImageSpec("x", 3)], progress=lambda d, t: seen.append((d, t)))]
    _wait_for(lambda: len(batcher._pending) == 2)
    held.release.set()
    for thread in threads:
        thread.join(120)
    assert isinstance(results["stopper"], LdmError) and str(results["stopper"]) == "stopped"
    assert results["stays"].shape == (1, 3, 32, 32) and seen == [(1, 2), (2, 2)]  # its own steps


def test_errors_reach_every_caller_of_the_group(tiny_model):
    batcher = MicroBatcher(tiny_model)
    with pytest.raises(LdmError, match="seed"):
        batcher.generate([ImageSpec("x", -1)], SETTINGS)
    assert batcher.generate([ImageSpec("x", 1)], SETTINGS).shape == (1, 3, 32, 32)  # the worker lives on


def test_a_server_interrupted_mid_batch_answers_every_waiting_caller(tiny_model):
    class Interrupted:
        resolve = staticmethod(tiny_model.resolve)

        def generate(self, specs, settings, batch_size=8, progress=None):
            raise KeyboardInterrupt  # Ctrl-C or SIGTERM on the thread that serves (app/server.py: the main one)

    batcher = MicroBatcher(Interrupted(), max_images=2, own_thread=False)
    results = {}
    threads = [_submit(batcher, results, k, [ImageSpec("x", k)]) for k in range(3)]
    _wait_for(lambda: len(batcher._pending) == 3)
    with pytest.raises(KeyboardInterrupt):
        batcher.serve_forever()
    for thread in threads:
        thread.join(30)
    assert all(isinstance(r, LdmError) and str(r) == "the server is stopping" for r in results.values())
    assert len(results) == 3  # the two in the batch and the one still waiting


def test_other_model_work_runs_on_the_serving_thread_in_its_turn(tiny_model):
    batcher = MicroBatcher(tiny_model)
    thread = batcher.run(lambda: threading.current_thread().name)
    assert thread == "ldm-micro-batcher" != threading.current_thread().name
    order = []
    batcher.run(order.append, "first", wait=False)
    assert batcher.run(lambda: order.append("second") or list(order)) == ["first", "second"]
    with pytest.raises(LdmError, match="refused"):
        batcher.run(lambda: (_ for _ in ()).throw(LdmError("refused")))
    assert batcher.generate([ImageSpec("x", 1)], SETTINGS).shape == (1, 3, 32, 32)  # still serving


def test_requests_for_another_model_join_only_their_own(tiny_model, tiny_student):
    # a server holding a teacher and its student: equal settings are not enough to share a batch
    teacher, student = HeldModel(tiny_model), HeldModel(tiny_student)
    batcher = MicroBatcher(teacher, max_images=4)
    results = {}
    threads = [_submit(batcher, results, "first", [ImageSpec("x", 1)])]
    _wait_for(lambda: len(teacher.calls) == 1)
    student.release.set()
    threads += [_submit(batcher, results, "fast", [ImageSpec("x", 2)], model=student),
                _submit(batcher, results, "full", [ImageSpec("x", 3)]),
                _submit(batcher, results, "fast2", [ImageSpec("x", 4)], model=student)]
    _wait_for(lambda: len(batcher._pending) == 3)
    teacher.release.set()
    for thread in threads:
        thread.join(120)
    assert teacher.calls == [[1], [3]] and student.calls == [[2, 4]]
    alone = tiny_student.generate([ImageSpec("x", 4)], tiny_student.resolve(SETTINGS))
    assert torch.equal(results["fast2"], alone)  # the student's own pixels, with its own defaults


def _start_live(batcher, results, key, client, work):
    def run():
        try:
            results.setdefault(key, batcher.run_live(client, work))
        except LdmError as exc:
            results[key] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_live_work_keeps_each_clients_newest_call_and_gets_its_share_of_the_time(tiny_model):
    now, order = [0.0], []  # a clock that each piece of work moves: live images 1 s each, queued jobs 6 s

    def work(value, seconds):
        def run():
            now[0] += seconds
            order.append(value)
            return value
        return run

    batcher = MicroBatcher(tiny_model, own_thread=False, max_live=4, live_share=0.25, clock=lambda: now[0])
    results, threads = {}, []
    for k, value in enumerate(("a1", "a2", "a3")):  # one client dragging a slider: only its newest state runs
        threads.append(_start_live(batcher, results, f"a-caller{k}", "client-a", work(value, 1)))
        _wait_for(lambda: "client-a" in batcher._live)
    for client in "bde":
        threads.append(_start_live(batcher, results, client, f"client-{client}", work(f"{client}1", 1)))
        _wait_for(lambda client=client: f"client-{client}" in batcher._live)
    threads.append(_start_live(batcher, results, "c", "client-c", work("c1", 1)))  # over the cap: refused at once
    threads[-1].join(30)
    assert isinstance(results["c"], LdmError) and "busy: 4 live requests are waiting" in str(results["c"])
    for value in ("q1", "q2"):  # queued work (a walk, a decode) waiting beside the live calls
        batcher.run(work(value, 6), wait=False)
    _wait_for(lambda: len(batcher._pending) == 2)
    threading.Thread(target=batcher.serve_forever, daemon=True).start()
    for thread in threads:
        thread.join(30)
    _wait_for(lambda: len(order) == 6)
    # live work takes a quarter of the time while both kinds wait: after a 6 s job, 2 s of live images, then the next
    # job; a1 and a2 never ran
    assert order == ["a3", "q1", "b1", "d1", "q2", "e1"]
    assert [results[f"a-caller{k}"] for k in range(3)] == ["a3"] * 3 and results["b"] == "b1"


def test_a_flood_of_live_calls_leaves_a_queued_request_its_turn(tiny_model):
    # 32 clients keep one live call waiting each: a queued generate request still runs after at most one of them
    batcher = MicroBatcher(tiny_model, max_live=64)
    started, stop = [], threading.Event()

    def flood(client):
        while not stop.is_set():
            batcher.run_live(client, lambda: started.append("live") or time.sleep(0.002))

    # the request's arrival and its turn, marked in the same list as the live calls (the serving thread's order),
    # so that how fast this thread runs on a busy machine does not count
    enqueue, serve = batcher._enqueue, batcher._serve
    batcher._enqueue = lambda job: started.append("arrives") or enqueue(job)
    batcher._serve = lambda group: started.append("its turn") or serve(group)
    for k in range(32):
        threading.Thread(target=flood, args=(f"client-{k}",), daemon=True).start()
    _wait_for(lambda: len(started) > 64)
    batcher.generate([ImageSpec("x", 1)], SETTINGS)
    stop.set()
    between = started[started.index("arrives") + 1:started.index("its turn")]
    # the live call running when it arrived, and at most one more before the request's own turn
    assert len(between) <= 2 and set(between) <= {"live"}


def test_neither_kind_saves_up_a_long_turn(tiny_model):
    # time spent while only one kind waited is not counted, and what one kind is owed stays within MAX_AHEAD_S
    from ldm.sampling.batching import MAX_AHEAD_S

    batcher = MicroBatcher(tiny_model, own_thread=False, live_share=0.25)
    batcher._contended = False
    batcher._count(True, 100.0)  # a minute of live images with nothing queued
    assert batcher._ahead == 0
    batcher._contended = True
    batcher._count(False, 100.0)  # a long queued job while sliders waited
    assert batcher._ahead == -MAX_AHEAD_S
