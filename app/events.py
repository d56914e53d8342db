"""Handlers as Gradio event functions: a user's mistake becomes a one-line message, progress a Gradio bar."""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
from pathlib import Path

import gradio as gr
import torch
from gradio import FileData
from gradio.exceptions import InvalidPathError
from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from app.jobs import StopFlags, stoppable
from ldm.errors import LdmError


def fail(message: str):
    """Show `message` to the user as an error toast (no traceback in the log)."""
    raise gr.Error(message, print_exception=False)


def client_of(request) -> str:
    """Who a request comes from, for live work's one-waiting-call-each: its session, else its address."""
    session = getattr(request, "session_hash", None)
    host = getattr(getattr(request, "client", None), "host", None)
    return session or f"host:{host}"


def event(handler, stops: StopFlags | None = None):
    """Wrap a handler of app.handlers for Gradio, keeping its signature (Gradio names API parameters from it).

    With `stops`, a handler that reports progress ends between two steps once its session's Stop is pressed.
    A handler with a `client` parameter is told who calls (client_of); callers cannot set it.
    """
    signature = inspect.signature(handler)
    wants_progress = "progress" in signature.parameters
    wants_client = "client" in signature.parameters
    params = [p for p in signature.parameters.values() if p.name != "client"]
    if wants_progress:  # Gradio injects its tracker where a parameter defaults to gr.Progress()
        params = [p.replace(default=gr.Progress()) if p.name == "progress" else p for p in params]
    if (wants_progress and stops is not None) or wants_client:
        # and the session's request where a positional parameter is typed gr.Request
        params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                        annotation=gr.Request))
    signature = signature.replace(parameters=params)

    @functools.wraps(handler)
    def run(*args, **kwargs):
        # The model's work runs on one thread (MicroBatcher); a handler thread's own torch ops are small
        # (images to PNG). Another thread's OpenMP pool of full size would halve the model thread's speed
        # on a few cores; one thread here has no pool. (torch sets this per thread under OpenMP.)
        torch.set_num_threads(1)
        arguments = signature.bind_partial(*args, **kwargs).arguments
        request = arguments.pop("request", None)
        tracker = arguments.get("progress")
        if isinstance(tracker, gr.Progress):
            # Gradio finds the event a report belongs to in context variables, which the model's thread (where the
            # steps are counted) lacks: without this context every report was dropped and only a timer showed
            context = contextvars.copy_context()
            arguments["progress"] = lambda done, total, desc=None: context.run(
                tracker, (done, total), desc=desc, unit="steps")
        session = getattr(request, "session_hash", None)
        if stops is not None and session is not None:
            arguments["progress"] = stoppable(arguments.get("progress"), stops.start(session),
                                              functools.partial(stops.reached, session))
        if wants_client:
            arguments["client"] = client_of(request)
        try:
            return handler(**arguments) if wants_progress or wants_client else handler(*args, **kwargs)
        except LdmError as exc:
            fail(str(exc))
        finally:
            if stops is not None and session is not None:
                stops.finish(session)

    run.__signature__ = signature
    # Gradio reads the type hints apart from the signature (typing.get_type_hints): give the wrapper its own
    hints = {k: v for k, v in getattr(handler, "__annotations__", {}).items() if k != "client"}
    run.__annotations__ = {**hints, **({"request": gr.Request} if "request" in signature.parameters else {})}
    return run


def shown_in(output: gr.Image, handler):
    """event(handler) for a live image on the page: a refusal becomes the image's label and the stale image goes
    (the page shows no message for an event outside the queue, so a refused slider move looked like no move)."""
    run, label = event(handler), output.label

    @functools.wraps(run)
    def show(*args, **kwargs):
        try:
            return gr.update(value=run(*args, **kwargs), label=label)
        except gr.Error as exc:
            return gr.update(value=None, label=f"{label}: {exc.message}")

    show.__signature__ = run.__signature__
    return show


def image_api(handler):
    """event(handler) for API callers: the PNG it writes as a file they can fetch (Gradio serves it from its cache;
    a path of the app's own folder is refused with 403)."""
    run = event(handler)

    @functools.wraps(run)
    def answer(*args, **kwargs) -> dict:
        path = run(*args, **kwargs)
        return FileData(path=path, orig_name=Path(path).name, mime_type="image/png").model_dump()

    answer.__signature__ = run.__signature__.replace(return_annotation=dict)
    answer.__annotations__ = {**run.__annotations__, "return": dict}
    return answer


def stop_button(stops: StopFlags, jobs: list, note: gr.Markdown) -> gr.Button:
    """A Stop button: it ends its session's running request between two steps, drops any queued one, and says in
    `note` what it stopped (Gradio's cancel hides the stopped request's own message)."""
    button = gr.Button("Stop", variant="stop", scale=0)

    def stop(request: gr.Request) -> str:
        return stops.stop(request.session_hash)

    # queue=False: the only worker is busy with the very request this stops
    button.click(stop, None, note, queue=False, cancels=jobs, api_visibility="private")
    return button


def wire(trigger, handler, inputs, outputs, stops: StopFlags | None = None, **options):
    """Run `handler` on `trigger` (e.g. button.click) with the values as sent, not converted by Gradio.

    Gradio's conversions fail with long messages that name server paths (an upload that is no image) or
    quietly change values (steps 2.5 -> 2, NaN -> a crash); the handlers check raw values themselves and
    answer in one line. Uploads are still moved into Gradio's cache and checked to be there first.
    """
    return trigger(event(handler, stops), inputs, outputs, preprocess=False, **options)


def _sent_files(value) -> list[str]:
    # the user's names of the files in an input (Gradio's file data, also nested: an editor's background and layers)
    if isinstance(value, dict):
        if "path" in value or "orig_name" in value:
            return [Path(str(value.get("orig_name") or value.get("path") or "file")).name]
        return [name for v in value.values() for name in _sent_files(v)]
    if isinstance(value, list | tuple):
        return [name for v in value for name in _sent_files(v)]
    return []


_COUNTS = re.compile(r"didn't receive enough input values \(needed: (?P<needed>\d+), got: (?P<got>\d+)\)")


def input_error(exc: BaseException, inputs: list) -> str:
    """One line for an input Gradio itself refused, naming the user's file, never the server's copy of it."""
    cause = exc.__cause__ or exc
    counts = _COUNTS.search(str(cause))
    if counts:  # an API caller sent too few values (Gradio's own text is a paragraph of both lists)
        return f"this endpoint takes {counts['needed']} values, {counts['got']} were sent"
    if isinstance(cause, Image.DecompressionBombError | Image.DecompressionBombWarning):
        reason = "decompression bomb (too many pixels to open)"
    elif isinstance(cause, UnidentifiedImageError):
        reason = "not an image"
    elif isinstance(cause, InvalidPathError) or "cannot be accessed" in str(cause):
        reason = "not a file this server was sent (upload it again)"
    elif isinstance(cause, ValidationError):
        reason = "not a value this control takes"
    else:
        reason = f"unreadable ({type(cause).__name__})"
    files = _sent_files(inputs)
    return f"cannot use {files[0]}: {reason}" if files else f"an input is {reason}"


def one_line_inputs(demo: gr.Blocks) -> None:
    """Make the checks Gradio runs before any handler (file in its cache, value of the component's type, the
    picture decoded for a component that wants one) answer in one line, for every component of the app:
    Gradio's own text names the server's copy of an upload, and it logs a traceback."""
    checked = demo.preprocess_data

    async def preprocess_data(block_fn, inputs, state, explicit_call=False):
        try:
            return await checked(block_fn, inputs, state, explicit_call)
        except gr.Error as exc:
            if not exc.print_exception:  # already one line of ours
                raise
            raise gr.Error(input_error(exc, inputs), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 (every input Gradio refuses is a user's input)
            raise gr.Error(input_error(exc, inputs), print_exception=False) from None

    demo.preprocess_data = preprocess_data
