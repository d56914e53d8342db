"""app/events.py: handlers become Gradio event functions with the same API names, one-line errors and a bar."""

from __future__ import annotations

import inspect

import gradio as gr
import pytest

from app.events import event
from ldm.errors import LdmError


def handler(prompt: str, steps: int = 2, progress=None):
    """A stand-in handler: reports progress, refuses steps 0."""
    if steps == 0:
        raise LdmError("steps must be a whole number between 1 and 100, got 0")
    if progress is not None:
        progress(1, steps)
    return f"{prompt}:{steps}"


def test_the_signature_keeps_the_api_names_and_asks_gradio_for_progress():
    params = inspect.signature(event(handler)).parameters
    assert list(params) == ["prompt", "steps", "progress"]
    assert isinstance(params["progress"].default, gr.Progress)
    assert inspect.signature(event(lambda a, b=1: a)).parameters["b"].default == 1


def test_a_user_mistake_becomes_a_one_line_gradio_error_without_traceback():
    with pytest.raises(gr.Error) as caught:
        event(handler)("x", 0)
    assert caught.value.message == "steps must be a whole number between 1 and 100, got 0"
    assert caught.value.print_exception is False


def test_gradio_progress_becomes_a_plain_done_total_callable():
    seen = []

    class Tracker(gr.Progress):
        def __call__(self, progress, desc=None, total=None, unit="steps", _tqdm=None):
            seen.append((progress, unit))

    assert event(handler)("x", 4, Tracker()) == "x:4"
    assert seen == [((1, 4), "steps")]
    assert event(handler)("x", progress=None) == "x:2"  # a caller without a bar


def test_gradio_gets_a_request_slot_and_a_stop_ends_the_sessions_request():
    from gradio import helpers

    from app.jobs import StopFlags

    stops = StopFlags()
    wrapped = event(handler, stops)
    inputs, progress_index, _, _ = helpers.special_args(wrapped, ["x", 3], request=None)
    assert progress_index == 2 and len(inputs) == 4  # Gradio fills progress and the request itself

    class Request:
        session_hash = "s1"

    def stopped_at_first_step(done, total):
        stops.stop("s1")  # the session's Stop button, pressed while the request runs

    with pytest.raises(gr.Error) as caught:
        event(lambda prompt, progress=None: [progress(k, 3) for k in range(3)], stops)(
            "x", stopped_at_first_step, Request())
    assert caught.value.message.startswith("stopped at step 1 of 3; a stopped request keeps nothing")
    assert event(handler, stops)("x", 3, None, Request()) == "x:3"  # the session's next request runs


def test_progress_reported_from_the_models_thread_reaches_the_event():
    # Gradio finds the event in context variables; the steps are counted on the model's thread (MicroBatcher), where
    # they were unset, so every report was dropped and the page showed only a timer
    import threading

    from gradio.context import LocalContext

    seen = []

    class Tracker(gr.Progress):
        def __call__(self, progress, desc=None, total=None, unit="steps", _tqdm=None):
            seen.append((progress, LocalContext.event_id.get(None)))

    def on_another_thread(prompt: str, progress=None):
        thread = threading.Thread(target=progress, args=(2, 5))
        thread.start()
        thread.join()
        return prompt

    LocalContext.event_id.set("event-1")
    assert event(on_another_thread)("x", Tracker()) == "x"
    assert seen == [((2, 5), "event-1")]
