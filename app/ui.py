"""The web UI's layout: a header, one tab per module of app/tabs, and the hand-offs between tabs."""

from __future__ import annotations

import gradio as gr

from app.events import event, one_line_inputs
from app.handlers.handoffs import gallery_image, morph_handoff, picture_handoff, run_seed, train_handoff, walk_handoff
from app.handlers.png_info import PngInfoHandlers
from app.handlers.shared import Shared
from app.tabs import autoencoder, generate, img2img, latent, morph, png_info, train, walk
from app.tabs.generate import GenerateTab, generate_fields
from app.tabs.img2img import Img2ImgTab
from app.tabs.morph import MorphTab
from app.tabs.png_info import PngInfoTab
from app.tabs.train import TrainTab
from app.tabs.walk import WalkTab

# A new run closes the last run's error toasts, so an old error never sits over a later success.
PAGE_JS = ("() => { document.addEventListener('click', (e) => { const b = e.target.closest('button.primary'); "
           "if (b) document.querySelectorAll('.toast-close').forEach((c) => c.click()); }, true); }")


def _to_img2img(path: str, prompt: str | None) -> tuple:
    # the picture into the editor, the prompt too when there is one, and the tab shown
    return path, gr.skip() if prompt is None else prompt, gr.Tabs(selected="img2img")


def build_ui(shared: Shared) -> gr.Blocks:
    """The Blocks app: the tabs, each with its handlers over the server's shared parts, and the hand-offs."""
    m = shared.model
    # delete_cache: Gradio's copies of uploads and outputs older than 15 minutes go every 10 minutes
    with gr.Blocks(title="ldm", delete_cache=(600, 900)) as demo:
        gr.Markdown(f"# ldm · {m.name}\nLatent diffusion at {m.default_size}x{m.default_size} px. Every PNG "
                    "carries its generation parameters; drop it on `scripts/sample.py --from-png` to re-create it.")
        train_tab = None
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                gen = generate.build(shared)
            with gr.Tab("Image to image", id="img2img"):
                edit = img2img.build(shared)
            with gr.Tab("Seed walk", id="walk"):
                walk_tab = walk.build(shared)
            with gr.Tab("Prompt morph", id="morph"):
                morph_tab = morph.build(shared)
            with gr.Tab("Latent space", id="latent"):
                pick_image, pick_send = latent.build(shared)
            with gr.Tab("Autoencoder", id="autoencoder"):
                autoencoder.build(shared)
            with gr.Tab("PNG Info", id="png-info"):
                info = png_info.build(shared)
            if shared.teach is not None:  # --max-teach-steps 0: no tab that could only refuse
                with gr.Tab("Train", id="train"):
                    train_tab = train.build(shared)
        _wire_lora_picker(demo, shared, gen, train_tab)
        _wire_generate_handoffs(gen, walk_tab, morph_tab, edit, tabs)
        _wire_picture_handoffs(walk_tab, morph_tab, pick_image, pick_send, edit, tabs)
        _wire_png_info_handoffs(PngInfoHandlers(shared), info, gen, edit, tabs)
        if train_tab is not None:  # a picture from any tab joins the Train tab's images
            _wire_train_handoffs(gen, edit, info, train_tab, tabs)
    one_line_inputs(demo)
    return demo


def _wire_lora_picker(demo: gr.Blocks, shared: Shared, gen: GenerateTab, train_tab: TrainTab | None) -> None:
    """Generate's LoRA picker refreshed on page load and, with a Train tab, when a run finishes."""
    # a reloaded page shows the server's teach job and the LoRAs taught so far; a finished run adds its LoRA
    triggers = [demo.load]
    if train_tab is not None:
        demo.load(event(train_tab.status), None, train_tab.outputs, api_visibility="private", preprocess=False)
        triggers.append(train_tab.files.change)
    for trigger in triggers:
        trigger(lambda: generate.lora_picker(shared), None, [gen.lora_row, gen.lora], api_visibility="private")


def _wire_generate_handoffs(gen: GenerateTab, walk_tab: WalkTab, morph_tab: MorphTab, edit: Img2ImgTab,
                            tabs: gr.Tabs) -> None:
    """Generate's buttons that carry a run to Seed walk, Prompt morph and Image to image."""
    # hand-offs carry the run: its seeds (or the clicked image's) and, for a morph, a second prompt to edit
    # and the model that made it: a student's walk or morph is rendered by the student
    gen.to_walk.click(lambda p, s, c, g, m: (p, walk_handoff(s, c, g), m, gr.Tabs(selected="walk")),
                      [gen.prompt, gen.seed, gen.chosen_seed, gen.gallery, gen.model],
                      [walk_tab.prompt, walk_tab.seeds, walk_tab.model, tabs], api_visibility="private")
    gen.to_morph.click(lambda p, s, c, g, old, m: (morph_handoff(p, old), run_seed(s, c, g), m,
                                                   gr.Tabs(selected="morph")),
                       [gen.prompt, gen.seed, gen.chosen_seed, gen.gallery, morph_tab.prompts, gen.model],
                       [morph_tab.prompts, morph_tab.seed, morph_tab.model, tabs], api_visibility="private")
    gen.to_img2img.click(event(lambda p, n, s, c, i, g: (gallery_image(i, g), p, n, run_seed(s, c, g),
                                                         gr.Tabs(selected="img2img"))),
                         [gen.prompt, gen.negative, gen.seed, gen.chosen_seed, gen.chosen_image, gen.gallery],
                         [edit.editor, edit.prompt, edit.negative, edit.seed, tabs], api_visibility="private")


def _wire_picture_handoffs(walk_tab: WalkTab, morph_tab: MorphTab, pick_image: gr.Image, pick_send: gr.Button,
                           edit: Img2ImgTab, tabs: gr.Tabs) -> None:
    """The send buttons under a walk's or morph's frame and the explorer's pick, into Image to image."""
    # any shown image -> Image to image: a walk's or morph's frame (with the prompt), the explorer's pick
    for send, image, prompt in ((walk_tab.send, walk_tab.frame, walk_tab.prompt),
                                (morph_tab.send, morph_tab.frame, morph_tab.prompts),
                                (pick_send, pick_image, None)):
        send.click(event(lambda path, text=None: _to_img2img(*picture_handoff(path, text))),
                   [image] if prompt is None else [image, prompt], [edit.editor, edit.prompt, tabs],
                   api_visibility="private")


def _wire_png_info_handoffs(png: PngInfoHandlers, info: PngInfoTab, gen: GenerateTab, edit: Img2ImgTab,
                            tabs: gr.Tabs) -> None:
    """PNG Info's buttons into Generate's controls and into Image to image."""
    # PNG Info: the parameters into Generate's controls, or the picture and its prompt into Image to image
    # the model too, so that a student's PNG is re-created by the student
    info.to_generate.click(event(lambda text: (*generate_fields(png.shared, png.png_fields(text)),
                                               gr.Tabs(selected="generate"))),
                           info.text, [gen.prompt, gen.negative, gen.seed, gen.steps, gen.guidance, gen.scheduler,
                                       gen.width, gen.height, gen.model, gen.decoder, tabs], api_visibility="private")
    info.to_img2img.click(event(lambda path, text: (path, *png.png_fields(text)[:3],
                                                    gr.Tabs(selected="img2img"))),
                          [info.upload, info.text], [edit.editor, edit.prompt, edit.negative, edit.seed, tabs],
                          api_visibility="private")


def _wire_train_handoffs(gen: GenerateTab, edit: Img2ImgTab, info: PngInfoTab, train_tab: TrainTab,
                         tabs: gr.Tabs) -> None:
    """The "to Train" buttons of Generate, Image to image and PNG Info, adding a picture to the Train tab's images."""
    for send, sources, picture in ((gen.to_train, [gen.chosen_image, gen.gallery], gallery_image),
                                   (edit.to_train, [edit.chosen, edit.gallery], gallery_image),
                                   (info.to_train, [info.upload], lambda path: path)):
        send.click(event(lambda *values, picture=picture: (train_handoff(picture(*values[:-1]), values[-1]),
                                                           gr.Tabs(selected="train"))),
                   [*sources, train_tab.images], [train_tab.images, tabs], api_visibility="private")
