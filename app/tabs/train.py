"""The Train tab: drop images of a concept, name it, Start; watch the loss and the previews; Stop; use the result."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from app.events import wire
from app.handlers.shared import Shared
from app.handlers.train import DEFAULT_STEPS, METHODS, TeachStatus, TrainHandlers
from app.widgets import PANEL, result_image

POLL_S = 2.0  # how often an open page asks how the run goes, while one runs


@dataclass
class TrainTab:
    """What other tabs follow: the result files (a new result refreshes Generate's LoRA picker), and the images."""

    files: gr.File
    images: gr.File  # the concept's images: other tabs send theirs here
    status: object  # () -> the outputs: a reloaded page shows the server's job (app/ui.py runs it on load)
    outputs: list


def shown(status: TeachStatus, name: bool = True) -> tuple:
    """A status as the tab's outputs: line, loss plot, preview, map, files, the job's name (unless `name` is False:
    a poll leaves what the user is typing alone), and the poll timer on or off."""
    # no frame until there is a point: the page's plot keeps the axes and margins of the first frame it draws
    # (later frames only replace its data), and an empty frame draws category axes with no room for labels
    losses = pd.DataFrame(status.losses, columns=["step", "loss"]) if status.losses else None
    return (status.line, losses, status.preview, status.map, status.files or None,
            status.name if name and status.name else gr.skip(), gr.Timer(active=status.running))


def build(shared: Shared) -> TrainTab:
    """Lay out the tab and wire its events."""
    h = TrainHandlers(shared)
    with gr.Row():
        with gr.Column(scale=2):
            images = gr.File(label="Images of the concept (1-50)", file_count="multiple", file_types=["image"],
                             elem_id="train-images")
            name = gr.Textbox(label="Name: a new word prompts will use", placeholder="zorbly", max_length=64,
                              elem_id="train-name")
            class_prompt = gr.Textbox(label="Class: what it is (optional; 'face', 'a bird')", max_length=200)
            method = gr.Radio([(label, key) for key, label in METHODS.items()], value="lora", label="Method")
            steps = gr.Number(label="Steps", value=DEFAULT_STEPS, precision=0, minimum=1, elem_id="train-steps")
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        with gr.Column(scale=3):
            line = gr.Markdown(label="Status", elem_id="train-status")
            # labels of one width: a later frame's wider ones would be clipped (the margins are the first frame's)
            # steps as whole numbers: with one point the axis would read "10.000000"
            loss = gr.LinePlot(x="step", y="loss", title="Loss", label="Loss", height=220, y_axis_format=".3f",
                               x_axis_format="d", elem_id="train-loss")
            preview = result_image("Newest preview (fixed seeds: the name alone, then the class)",
                                   elem_id="train-preview", height=PANEL)
            gr.Markdown("**Your images on the latent space map**, among the training set's (hover for pictures)")
            placed = gr.HTML(label="Your images on the latent space map", show_label=True, elem_id="train-map",
                             js_on_load=None)
            files = gr.File(label="Result downloads (LoRA or embedding, and its card)", file_count="multiple",
                            interactive=False, elem_id="train-files")
    timer = gr.Timer(POLL_S, active=False)
    outputs = [line, loss, preview, placed, files, name, timer]

    def begin(images, name, class_prompt, method, steps):
        return shown(h.start(images, name, class_prompt, method, steps))[:-1]

    def status():
        return shown(h.status())

    def poll(seen: int | None):
        # the map (a few hundred KB with its thumbnails) goes to the page only when it changed
        status = h.status()
        out, drawn = list(shown(status, name=False)), hash(status.map)
        if drawn == seen:
            out[outputs.index(placed)] = gr.skip()
        return *out, drawn

    # the API's answer leaves the timer out (it is no value a caller can use); a private step sets it after
    for started in (wire(start.click, begin, [images, name, class_prompt, method, steps], outputs[:-1],
                         api_name="train_start", concurrency_id="train"),
                    wire(stop.click, lambda: shown(h.stop())[:-1], None, outputs[:-1], api_name="train_stop",
                         concurrency_id="train")):
        started.then(lambda: gr.Timer(active=h.jobs.running()), None, timer, api_visibility="private",
                     show_progress="hidden")
    map_seen = gr.State(None)  # the hash of the map this page shows
    wire(timer.tick, poll, map_seen, [*outputs, map_seen], api_visibility="private", concurrency_limit=None,
         show_progress="hidden")
    return TrainTab(files, images, status, outputs)
