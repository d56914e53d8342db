"""Controls and outputs that several tabs share."""

from __future__ import annotations

from collections.abc import Sequence

import gradio as gr

from app.events import image_api, shown_in, stop_button, wire
from ldm.sampling.limits import BOUNDS
from ldm.sampling.requests import ModelDefaults
from ldm.sampling.schema import FIELD, SAME, Field

MAX_STEPS = int(BOUNDS["steps"].server_high)
MAX_FRAMES = int(BOUNDS["frames"].server_high)
PROMPT_CHARS = int(BOUNDS["prompt_chars"].server_high)
PANEL = 256  # px: image panels keep their size before they hold an image
# results (result_image, result_gallery) keep their pixels sharp when shown larger than they are (64 px images in
# 256 px panels), and a single result fills its panel
RESULT_CSS = (".ldm-pixels img{image-rendering:pixelated} "
              ".ldm-fill img{width:100%;height:100%;object-fit:contain}")
GUIDANCE_SLIDER = 15  # the slider's reach; the API accepts up to BOUNDS["guidance"]


def result_image(label: str, **options) -> gr.Image:
    """An image panel for a result: scaled up sharp (nearest), and no "drop an image here" (it is output only)."""
    return gr.Image(label=label, type="filepath", height=options.pop("height", PANEL), interactive=False,
                    elem_classes=["ldm-pixels", "ldm-fill"], **options)


def result_gallery(label: str, **options) -> gr.Gallery:
    """A gallery of results: thumbnails drawn sharp, and output only."""
    return gr.Gallery(label=label, height="auto", interactive=False, elem_classes="ldm-pixels", **options)


def request_control(field: str | Field, value=SAME, high: float | None = None, **options):
    """The control for one request field (ldm.sampling.schema, by name): its label, starting value (the schema's
    unless given), choices (a list of a few: radio buttons) or range (a slider up to `high`, else the server's
    bound)."""
    f = FIELD[field] if isinstance(field, str) else field
    value = f.ui_value if value == SAME else value
    if f.choices:
        kind = gr.Radio if len(f.choices) <= 4 else gr.Dropdown
        return kind(list(f.choices), value=value, label=f.label, **options)
    if f.kind is str:
        return gr.Textbox(label=f.label, value=value, max_length=PROMPT_CHARS, **options)
    return gr.Slider(f.bound.low, f.bound.server_high if high is None else high, value=value, label=f.label,
                     **options)


def sampler_controls(defaults: ModelDefaults) -> tuple:
    """Scheduler, steps and guidance, set to the model's defaults."""
    return (request_control("scheduler", defaults.scheduler),
            request_control("steps", defaults.steps, step=1),
            request_control("guidance_scale", defaults.guidance, GUIDANCE_SLIDER, step=0.5))


def model_info(shared) -> str:
    """Each model's sampler in words, for the Model picker."""
    return "; ".join(f"{name}: {mod.defaults.scheduler}, {mod.defaults.steps} steps"
                     + (" (a few-step student: fast)" if mod.is_student else "")
                     for name, mod in shared.models.by_name.items())


def model_picker(shared, elem_id: str) -> gr.Radio:
    """The server's models by name (the full model, or its few-step student for a fast render), shown when it has
    more than one."""
    return gr.Radio(list(shared.models.by_name), value=shared.model.name, label="Model",
                    visible=len(shared.models.by_name) > 1, info=model_info(shared), elem_id=elem_id)


def model_controls(shared, name: str) -> tuple:
    """Steps, scheduler, guidance and decoder set to a model's defaults when it is picked (the decoder choice shown
    only for a model that ships a tiny VAE)."""
    d = shared.models.by_name.get(name, shared.model).defaults
    return (gr.update(value=d.steps), gr.update(value=d.scheduler), gr.update(value=d.guidance),
            gr.update(value=d.decoder, visible=d.tiny_decoder))


def animation_outputs(tab: str) -> tuple:
    """GIF, MP4, a frame scrubber and the frame it shows (elem_id `<tab>-frame`), and the frames' paths."""
    with gr.Column():
        return (result_image("Animation (GIF)"), gr.Video(label="MP4", height=PANEL, interactive=False),
                gr.Slider(0, 1, value=0, step=1, label="Frame", interactive=False),
                result_image("Frame", elem_id=f"{tab}-frame"), gr.State([]))


def frame_at(frames: list, k: int):
    """The path of frame k, if there is one."""
    return frames[int(k)] if frames and 0 <= int(k) < len(frames) else None


def scrubber(frames: list):
    """The frame slider reset for a new set of frames, and the first frame (shown at once, not on the first move)."""
    return (gr.Slider(minimum=0, maximum=max(len(frames) - 1, 1), value=0, step=1, interactive=len(frames) > 1),
            frame_at(frames, 0))


# How a live control's event runs: only the newest state (a request that arrives while one runs replaces any
# waiting one), no progress overlay, and outside Gradio's queue: one plain HTTP call instead of the queue's join
# and event stream takes ~10 ms off each image (each browser session has at most one in flight).
LIVE_EVENT = {"trigger_mode": "always_last", "show_progress": "hidden", "queue": False, "api_visibility": "private"}


def live(triggers: list, handler, inputs: list, output, api_name: str | None = None) -> None:
    """Run `handler` whenever any trigger fires (a slider dragged, a key typed), as LIVE_EVENT says, a refusal
    shown on the image; API callers get it as `api_name`, through the queue like the other endpoints."""
    if api_name:  # first: the private events below would otherwise take the handler's name for themselves
        gr.api(image_api(handler), api_name=api_name)
    for trigger in triggers:
        trigger(shown_in(output, handler), inputs, output, preprocess=False, **LIVE_EVENT)


def animation_tab(shared, tab: str, label: str, handler, api_name: str, controls, frame_handler,
                  frame_inputs: Sequence[int], frame_after: Sequence[int] = ()) -> list:
    """A seed walk or morph tab: `controls()` lays out the tab's own inputs (the handler's first arguments),
    then come the sampler controls, the run and Stop buttons, and the animation outputs. After a run the
    first frame shows at once; the scrubber shows the frame it points at. A live position slider renders
    any in-between frame with `frame_handler` (the own controls at `frame_inputs`, the position, then those at
    `frame_after`) as it is dragged, and again when a control of `frame_after` changes. Above them all, the Model
    picker (its sampler defaults follow it). Returns the tab's own inputs, the frame shown, its "send to Image to
    image" button and the Model picker."""
    with gr.Row():
        with gr.Column():
            model = model_picker(shared, f"{tab}-model")
            own = controls()
            scheduler, steps, guidance = sampler_controls(shared.model.defaults)
            go, stop_slot, stopped = run_buttons(label)
            position = gr.Slider(0, 1, value=0, step=0.01, label="Position (live: drag to see any frame)",
                                 elem_id=f"{tab}-position")
            live_frame = result_image("Live frame", elem_id=f"{tab}-live")
        gif, mp4, slider, frame, frames = animation_outputs(tab)
    send = gr.Button("Send this frame to Image to image", elem_id=f"{tab}-send")
    job = wire(go.click, handler, [*own, steps, guidance, scheduler, model], [gif, mp4, frames], shared.stops,
               api_name=api_name)
    model.change(lambda name: model_controls(shared, name)[:3], model, [steps, scheduler, guidance],
                 api_visibility="private")
    job.then(scrubber, frames, [slider, frame], api_visibility="private")
    slider.change(frame_at, [frames, slider], frame, api_visibility="private")
    after = [own[i] for i in frame_after]
    live([position.change, *(c.change for c in after)], frame_handler,
         [*(own[i] for i in frame_inputs), position, *after], live_frame, f"{tab}_frame")
    with stop_slot:
        stop_button(shared.stops, [job], stopped)
    return own, frame, send, model


def run_buttons(label: str, elem_id: str | None = None) -> tuple:
    """A primary button; beside it, the slot its Stop button goes in (made once the job it stops exists); under
    them, the note that says what a Stop ended (cleared by the next run)."""
    with gr.Row():
        go = gr.Button(label, variant="primary", elem_id=elem_id)
        slot = gr.Column(scale=0, min_width=80)
    note = gr.Markdown(elem_classes="ldm-stop-note")
    go.click(lambda: "", None, note, queue=False, show_progress="hidden", api_visibility="private")
    return go, slot, note
