"""The Generate tab: text to images, with seed, size, scheduler and LoRA controls."""

from __future__ import annotations

import random
from dataclasses import dataclass

import gradio as gr

from app.events import image_api, shown_in, stop_button, wire
from app.handlers.checks import MAX_SEED
from app.handlers.generate import GenerateHandlers
from app.handlers.models import NO_LORA
from app.handlers.shared import Shared
from app.tabs.img2img import picked_image
from app.widgets import (
    GUIDANCE_SLIDER,
    LIVE_EVENT,
    PROMPT_CHARS,
    model_controls,
    model_picker,
    request_control,
    result_gallery,
    result_image,
    run_buttons,
)
from ldm.sampling.limits import BOUNDS
from ldm.sampling.schema import FIELD
from ldm.sampling.xyz import AXES


@dataclass
class GenerateTab:
    """The controls other tabs hand work over from."""

    prompt: gr.Textbox
    seed: gr.Number
    chosen_seed: gr.State
    gallery: gr.Gallery
    to_walk: gr.Button
    to_morph: gr.Button
    to_img2img: gr.Button
    chosen_image: gr.State
    negative: gr.Textbox
    steps: gr.Slider
    guidance: gr.Slider
    scheduler: gr.Dropdown
    width: gr.Slider
    height: gr.Slider
    model: gr.Radio
    decoder: gr.Radio
    lora_row: gr.Row
    lora: gr.Dropdown
    to_train: gr.Button


def seed_of(evt: gr.SelectData) -> int:
    """The seed in a gallery caption like 'seed 42'."""
    try:
        return int(str(evt.value.get("caption", "")).split()[-1])
    except (AttributeError, ValueError, IndexError):
        return 0


def picked(evt: gr.SelectData) -> tuple[int, str | None]:
    """The seed and the file of a clicked gallery image."""
    return seed_of(evt), picked_image(evt)


CONCEPT_REACH = 1.5  # the concept slider's range either way (the shipped student: tears and skin tone by 1.0)


def live_label(shared: Shared) -> str:
    """What the live image is rendered with, in words."""
    live = shared.models.live
    d, steps = live.defaults, shared.models.live_steps
    kind = ", a few-step student" if live.is_student else ""
    return f"{live.name}{kind}: {d.scheduler}, {steps} step{'s' * (steps > 1)}"


def lora_picker(shared: Shared) -> tuple:
    """The LoRA picker's row and choices as the server has them now (a Train run adds its LoRA when done)."""
    return gr.Row(visible=bool(shared.models.loras)), gr.Dropdown(choices=[NO_LORA, *shared.models.loras])


def generate_fields(shared: Shared, fields: tuple) -> tuple:
    """PNG Info's fields (PngInfoHandlers.png_fields) as updates of Generate's controls: the decoder choice shown
    when the PNG's model ships a tiny VAE."""
    *values, name, decoder = fields
    return (*values, name, gr.update(value=decoder, visible=shared.models.by_name[name].defaults.tiny_decoder))


def decoder_control(shared: Shared) -> gr.Radio:
    """The VAE decoder, at the served model's default; shown for a model that ships a tiny VAE (vae_tiny/)."""
    d = shared.model.defaults
    return request_control("decoder", d.decoder, visible=d.tiny_decoder,
                           info="tiny: the model's distilled decoder, several times faster, a little softer")


def variation_controls() -> list:
    """The variation and concept sliders (the live image's own inputs): variation seed and strength, the concept's
    two prompts and its strength."""
    with gr.Accordion("Variation and concept sliders", open=True):
        with gr.Row():
            variation_seed = gr.Number(label=FIELD["variation_seed"].label, value=1, precision=0, minimum=0,
                                       maximum=MAX_SEED)
            variation = request_control("variation_strength", step=0.01, elem_id="variation-strength")
        gr.Markdown("Concept slider: move the prompt along the direction from one prompt to another.")
        with gr.Row():
            concept_from = gr.Textbox(label="From", value="smiling face", max_length=PROMPT_CHARS)
            concept_to = gr.Textbox(label="To", value="crying face", max_length=PROMPT_CHARS)
        # beyond about 1 the prompt leaves what the model knows (colour fields); the API takes up to 3
        concept = gr.Slider(-CONCEPT_REACH, CONCEPT_REACH, value=0, step=0.05, label="Concept strength",
                            elem_id="concept-strength")
    return [variation_seed, variation, concept_from, concept_to, concept]


def xyz_plot(shared: Shared, h: GenerateHandlers, request: list, model: gr.Radio) -> None:
    """The X/Y/Z plot's axes, Plot and Stop buttons and results, wired to plot with the tab's `request` controls
    (prompt, negative prompt, seed, steps, guidance, scheduler, width, height) and model."""
    with gr.Accordion("X/Y/Z plot", open=False):
        gr.Markdown("Every combination of up to three axes, each `name=v1,v2,...` with name one of "
                    + ", ".join(f"`{a}`" for a in AXES if a != "strength")
                    + ". `prompt=red,green` replaces *red* by each value (Prompt S/R).")
        with gr.Row():
            axes = [gr.Textbox(label="X axis", value="steps=4,8,14", elem_id="xyz-x"),
                    gr.Textbox(label="Y axis", value="guidance=1,3,5", elem_id="xyz-y"),
                    gr.Textbox(label="Z axis", value="", elem_id="xyz-z")]
        plot, plot_stop, plot_stopped = run_buttons("Plot", "xyz-button")
        plot_image = result_image("X/Y/Z plot", elem_id="xyz-grid", height=None)
        plot_files = gr.File(label="The plot's PNGs (with parameters)", file_count="multiple")
    plot_job = wire(plot.click, h.xyz_plot, [*request, *axes, model], [plot_image, plot_files], shared.stops,
                    api_name="xyz_plot")
    with plot_stop:
        stop_button(shared.stops, [plot_job], plot_stopped)


def follow_live(h: GenerateHandlers, live_on: gr.Checkbox, live_image: gr.Image, inputs: list) -> None:
    """With the Live switch on, the live image follows `inputs` (live_generate's arguments) as they change; API
    callers get the same as `live_generate`, no switch to set."""
    follow = shown_in(live_image, h.live_generate)

    def when_live(request: gr.Request, on: bool, *values):  # Gradio puts the request where its parameter is
        # every control change arrives here; only with the switch on does it render
        return follow(*values, request=request) if on else gr.skip()

    prompt, seed, guidance, variation_seed, variation, concept_from, concept_to, concept, lora, lora_scale = inputs
    gr.on([live_on.change, prompt.input, seed.change, guidance.change, variation_seed.change, variation.change,
           concept.change, concept_from.submit, concept_to.submit, lora.change, lora_scale.change], when_live,
          [live_on, *inputs], live_image,
          preprocess=False, **LIVE_EVENT)
    gr.api(image_api(h.live_generate), api_name="live_generate")


def seed_controls() -> tuple[gr.Number, gr.Button, gr.Checkbox]:
    """The seed, its Randomise button and the Lock seed switch, in one row."""
    with gr.Row():
        seed = gr.Number(label="Seed", value=0, precision=0, minimum=-1, maximum=MAX_SEED)
        dice = gr.Button("🎲 Randomise", scale=0)
        lock = gr.Checkbox(label="Lock seed", value=True)
    return seed, dice, lock


def sampler_controls(shared: Shared) -> tuple[gr.Slider, gr.Slider, gr.Dropdown, gr.Slider, gr.Slider, gr.Slider]:
    """Steps, guidance, scheduler, width, height and the number of images, at the served model's defaults."""
    m, size, biggest = shared.model, shared.model.default_size, shared.models.largest_side
    with gr.Row():
        steps = request_control("steps", m.defaults.steps, step=1)
        guidance = request_control("guidance_scale", m.default_guidance, GUIDANCE_SLIDER, step=0.5)
    with gr.Row():
        scheduler = request_control("scheduler", m.defaults.scheduler)
        # the one size rule (ldm.sampling.requests.size_step): every slider position is a valid size
        width, height = (gr.Slider(m.size_step, biggest, value=size, step=m.size_step, label=FIELD[side].label)
                         for side in ("width", "height"))
        num_images = gr.Slider(1, int(BOUNDS["images"].server_high), value=4, step=1, label="Images")
    return steps, guidance, scheduler, width, height, num_images


@dataclass
class Results:
    """The results column: the live switch and image, a run's gallery, parameters and files, the send buttons."""

    live_on: gr.Checkbox
    live_image: gr.Image
    gallery: gr.Gallery
    params: gr.Textbox
    files: gr.File
    to_walk: gr.Button
    to_morph: gr.Button
    to_img2img: gr.Button
    to_train: gr.Button


def results_column(shared: Shared) -> Results:
    """Lay out the results column (inside the caller's column)."""
    live_on = gr.Checkbox(label=f"Live: the image follows the controls, no click ({live_label(shared)})",
                          value=False, elem_id="live-switch")
    live_image = result_image("Live", elem_id="live-image")
    gallery = result_gallery("Images", columns=4, elem_id="generate-gallery")
    params = gr.Textbox(label="Parameters", lines=4, interactive=False)
    files = gr.File(label="PNG downloads (with parameters)", file_count="multiple")
    with gr.Row():
        to_walk = gr.Button("Walk from this seed")
        to_morph = gr.Button("Morph from this prompt")
        to_img2img = gr.Button("Send to Image to image")
        to_train = gr.Button("Send to Train", visible=shared.teach is not None)
    return Results(live_on, live_image, gallery, params, files, to_walk, to_morph, to_img2img, to_train)


def build(shared: Shared) -> GenerateTab:
    """Lay out the tab and wire its events."""
    h = GenerateHandlers(shared)
    with gr.Row():
        with gr.Column(scale=2):
            # the full model, or its few-step student for a fast render (each brings its own steps and scheduler)
            model = model_picker(shared, "generate-model")
            prompt = gr.Textbox(label="Prompt", value="grinning face", max_length=PROMPT_CHARS)
            negative = request_control("negative_prompt")
            seed, dice, lock = seed_controls()
            steps, guidance, scheduler, width, height, num_images = sampler_controls(shared)
            decoder = decoder_control(shared)
            with gr.Row(visible=bool(shared.models.loras)) as lora_row:
                lora = gr.Dropdown([NO_LORA, *shared.models.loras], value=NO_LORA, label="LoRA")
                lora_scale = request_control("lora_scale", step=0.05)
            go, stop_slot, stopped = run_buttons("Generate", "generate-button")
            variations = variation_controls()
            xyz_plot(shared, h, [prompt, negative, seed, steps, guidance, scheduler, width, height], model)
        with gr.Column(scale=3):
            out = results_column(shared)
    # the clicked image's seed and file; None: none clicked since the last run
    chosen_seed, chosen_image = gr.State(None), gr.State(None)
    dice.click(lambda: random.randrange(MAX_SEED), None, seed, api_visibility="private")
    new_run = go.click(lambda s, locked: (s if locked else random.randrange(MAX_SEED), None, None), [seed, lock],
                       [seed, chosen_seed, chosen_image], api_visibility="private", preprocess=False)
    job = wire(new_run.then, h.generate,
               [prompt, negative, seed, steps, guidance, scheduler, width, height, num_images, lora, lora_scale,
                model, decoder], [out.gallery, out.params, out.files], shared.stops, api_name="generate",
               concurrency_limit=shared.batcher.max_images)  # waiting requests join one batch (MicroBatcher)
    with stop_slot:
        stop_button(shared.stops, [job], stopped)
    out.gallery.select(picked, None, [chosen_seed, chosen_image], api_visibility="private")
    # input, not change: a PNG's hand-off sets the model and its own steps together, and keeps those
    model.input(lambda name: model_controls(shared, name), model, [steps, scheduler, guidance, decoder],
                api_visibility="private")
    follow_live(h, out.live_on, out.live_image, [prompt, seed, guidance, *variations, lora, lora_scale])
    return GenerateTab(prompt, seed, chosen_seed, out.gallery, out.to_walk, out.to_morph, out.to_img2img, chosen_image,
                       negative, steps, guidance, scheduler, width, height, model, decoder, lora_row, lora,
                       out.to_train)
