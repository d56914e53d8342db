"""Handlers as Gradio event functions: a user's mistake becomes a one-line message, progress a Gradio bar."""

from __future__ import annotations

import functools
import inspect

import gradio as gr
import torch

from app.jobs import StopFlags, stoppable
from ldm.errors import LdmError


def fail(message: str):
    """Show `message` to the user as an error toast (no traceback in the log)."""
    raise gr.Error(message, print_exception=False)


def event(handler, stops: StopFlags | None = None):
    """Wrap a handler of app.handlers for Gradio, keeping its signature (Gradio names API parameters from it).

    With `stops`, a handler that reports progress ends between two steps once its session's Stop is pressed.
    """
    signature = inspect.signature(handler)
    wants_progress = "progress" in signature.parameters
    if wants_progress:  # Gradio injects its tracker where a parameter defaults to gr.Progress()
        params = [p.replace(default=gr.Progress()) if p.name == "progress" else p
                  for p in signature.parameters.values()]
        if stops is not None:  # and the session's request where a positional parameter is typed gr.Request
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
            arguments["progress"] = lambda done, total, desc=None: tracker((done, total), desc=desc, unit="steps")
        session = getattr(request, "session_hash", None)
        if stops is not None and session is not None:
            arguments["progress"] = stoppable(arguments.get("progress"), stops.start(session))
        try:
            return handler(**arguments) if wants_progress else handler(*args, **kwargs)
        except LdmError as exc:
            fail(str(exc))
        finally:
            if stops is not None and session is not None:
                stops.finish(session)

    run.__signature__ = signature
    # Gradio reads the type hints apart from the signature (typing.get_type_hints): give the wrapper its own
    run.__annotations__ = {**getattr(handler, "__annotations__", {}), **({"request": gr.Request} if stops else {})}
    return run


def stop_button(stops: StopFlags, jobs: list) -> gr.Button:
    """A Stop button: it ends its session's running request between two steps and drops any queued one."""
    button = gr.Button("Stop", variant="stop", scale=0)

    def stop(request: gr.Request) -> None:
        stops.stop(request.session_hash)

    # queue=False: the only worker is busy with the very request this stops
    button.click(stop, None, None, queue=False, cancels=jobs, api_visibility="private")
    return button


def wire(trigger, handler, inputs, outputs, stops: StopFlags | None = None, **options):
    """Run `handler` on `trigger` (e.g. button.click) with the values as sent, not converted by Gradio.

    Gradio's conversions fail with long messages that name server paths (an upload that is no image) or
    quietly change values (steps 2.5 -> 2, NaN -> a crash); the handlers check raw values themselves and
    answer in one line. Uploads are still moved into Gradio's cache and checked to be there first.
    """
    return trigger(event(handler, stops), inputs, outputs, preprocess=False, **options)
