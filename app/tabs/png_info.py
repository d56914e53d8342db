"""The PNG Info tab: drop a PNG, read the parameters it carries, and send them on."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.events import wire
from app.handlers.png_info import PngInfoHandlers
from app.handlers.shared import Shared
from app.widgets import PANEL


@dataclass
class PngInfoTab:
    """The dropped PNG, its parameters' text, and the send-to buttons."""

    upload: gr.Image
    text: gr.Textbox
    to_generate: gr.Button
    to_img2img: gr.Button
    to_train: gr.Button


def build(shared: Shared) -> PngInfoTab:
    """Lay out the tab and wire its events."""
    h = PngInfoHandlers(shared)
    with gr.Row():
        upload = gr.Image(label="PNG", type="filepath", sources=["upload", "clipboard"], height=PANEL,
                          format="png", elem_id="png-info-upload")
        with gr.Column():
            text = gr.Textbox(label="Parameters", lines=5, interactive=False, elem_id="png-info-text")
            table = gr.Dataframe(headers=["field", "value"], label="Fields", interactive=False, wrap=True)
            with gr.Row():
                to_generate = gr.Button("Send to Generate")
                to_img2img = gr.Button("Send to Image to image")
                to_train = gr.Button("Send to Train", visible=shared.teach is not None)
    wire(upload.upload, h.png_info, upload, [text, table], api_name="png_info")
    upload.clear(lambda: ("", None), None, [text, table], api_visibility="private")
    return PngInfoTab(upload, text, to_generate, to_img2img, to_train)
