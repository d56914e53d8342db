"""The Image to image tab: start from a picture, repaint all of it or only where strokes are painted."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.events import event, stop_button, wire
from app.handlers.checks import MAX_SEED
from app.handlers.handoffs import gallery_image
from app.handlers.img2img import Img2ImgHandlers
from app.handlers.shared import Shared
from app.widgets import PANEL, PROMPT_CHARS, request_control, result_gallery, run_buttons, sampler_controls
from ldm.sampling.limits import BOUNDS


@dataclass
class Img2ImgTab:
    """The controls a hand-off from another tab fills in."""

    editor: gr.ImageEditor
    prompt: gr.Textbox
    negative: gr.Textbox
    seed: gr.Number
    gallery: gr.Gallery
    chosen: gr.State  # the clicked result's file
    to_train: gr.Button


def build(shared: Shared) -> Img2ImgTab:
    """Lay out the tab and wire its events."""
    h = Img2ImgHandlers(shared)
    with gr.Row():
        with gr.Column(scale=2):
            # strokes (white brush) over the picture are the inpainting mask; no strokes: the whole picture
            # the editor's label is a small badge that cuts long text: the instructions go above it
            gr.Markdown("Paint over what to repaint with the white brush; with nothing painted, all of it changes.")
            editor = gr.ImageEditor(label="Picture",
                                    type="filepath", sources=["upload", "clipboard"], format="png", height=PANEL * 1.5,
                                    brush=gr.Brush(colors=["#ffffff"], default_size=12, color_mode="fixed"),
                                    layers=False, transforms=(), elem_id="img2img-editor")
            prompt = gr.Textbox(label="Prompt", value="green apple", max_length=PROMPT_CHARS)
            negative = request_control("negative_prompt")
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=-1, maximum=MAX_SEED)
                strength = request_control("strength", step=0.01)
                num_images = gr.Slider(1, int(BOUNDS["images"].server_high), value=2, step=1, label="Images")
            with gr.Row():
                scheduler, steps, guidance = sampler_controls(shared.model.defaults)
            with gr.Accordion("Inpainting (where strokes are painted)", open=False):
                with gr.Row():
                    blur = request_control("mask_blur", high=32, step=1)
                    content = request_control("masked_content")
                    area = request_control("inpaint_area")
                    padding = request_control("inpaint_padding", high=64, step=1)
            go, stop_slot, stopped = run_buttons("Generate", "img2img-button")
        with gr.Column(scale=3):
            gallery = result_gallery("Images", columns=4, elem_id="img2img-gallery")
            params = gr.Textbox(label="Parameters", lines=4, interactive=False)
            files = gr.File(label="PNG downloads (with parameters)", file_count="multiple")
            with gr.Row():
                again = gr.Button("Use this image as the picture")  # the clicked result (else the first) edited further
                to_train = gr.Button("Send to Train", visible=shared.teach is not None)
    # the clicked result's file; None: none clicked since the last run (a hand-off then takes the new first)
    chosen = gr.State(None)
    new_run = go.click(lambda: None, None, chosen, api_visibility="private", preprocess=False)
    job = wire(new_run.then, h.image_to_image,
               [editor, prompt, negative, seed, steps, guidance, scheduler, strength, num_images, blur, content, area,
                padding], [gallery, params, files], shared.stops, api_name="image_to_image")
    with stop_slot:
        stop_button(shared.stops, [job], stopped)
    gallery.select(picked_image, None, chosen, api_visibility="private")
    again.click(event(lambda c, g: gallery_image(c, g)), [chosen, gallery], editor, api_visibility="private")
    return Img2ImgTab(editor, prompt, negative, seed, gallery, chosen, to_train)


def picked_image(evt: gr.SelectData) -> str | None:
    """The file of a clicked gallery image."""
    try:
        return evt.value["image"]["path"]
    except (TypeError, KeyError):
        return None
