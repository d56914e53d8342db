"""The Generate tab: text to images, with seed, size, scheduler and LoRA controls."""

from __future__ import annotations

import random
from dataclasses import dataclass

import gradio as gr

from app.events import stop_button, wire
from app.handlers import MAX_SEED, NO_LORA, Handlers
from app.widgets import GUIDANCE_SLIDER, MAX_STEPS, PROMPT_CHARS, run_buttons
from ldm.sampling.limits import BOUNDS
from ldm.sampling.requests import DEFAULT_SCHEDULER, DEFAULT_STEPS
from ldm.sampling.schedulers import SCHEDULERS


@dataclass
class GenerateTab:
    """The controls other tabs hand work over from."""

    prompt: gr.Textbox
    seed: gr.Number
    chosen_seed: gr.State
    gallery: gr.Gallery
    to_walk: gr.Button
    to_morph: gr.Button


def seed_of(evt: gr.SelectData) -> int:
    """The seed in a gallery caption like 'seed 42'."""
    try:
        return int(str(evt.value.get("caption", "")).split()[-1])
    except (AttributeError, ValueError, IndexError):
        return 0


def build(h: Handlers) -> GenerateTab:
    """Lay out the tab and wire its events."""
    m = h.model
    size, biggest = m.default_size, h.largest_side
    with gr.Row():
        with gr.Column(scale=2):
            prompt = gr.Textbox(label="Prompt", value="grinning face", max_length=PROMPT_CHARS)
            negative = gr.Textbox(label="Negative prompt", value="", max_length=PROMPT_CHARS)
            with gr.Row():
                seed = gr.Number(label="Seed", value=0, precision=0, minimum=-1, maximum=MAX_SEED)
                dice = gr.Button("🎲 Randomise", scale=0)
                lock = gr.Checkbox(label="Lock seed", value=True)
            with gr.Row():
                steps = gr.Slider(1, MAX_STEPS, value=DEFAULT_STEPS, step=1, label="Steps")
                guidance = gr.Slider(0, GUIDANCE_SLIDER, value=m.default_guidance, step=0.5, label="Guidance")
            with gr.Row():
                scheduler = gr.Dropdown(list(SCHEDULERS), value=DEFAULT_SCHEDULER, label="Scheduler")
                # the one size rule (ldm.sampling.requests.size_step): every slider position is a valid size
                width = gr.Slider(m.size_step, biggest, value=size, step=m.size_step, label="Width")
                height = gr.Slider(m.size_step, biggest, value=size, step=m.size_step, label="Height")
                num_images = gr.Slider(1, int(BOUNDS["images"].server_high), value=4, step=1, label="Images")
            with gr.Row(visible=bool(h.loras)):
                lora = gr.Dropdown([NO_LORA, *h.loras], value=NO_LORA, label="LoRA")
                lora_scale = gr.Slider(-2, 2, value=1.0, step=0.05, label="LoRA scale")
            go, stop_slot = run_buttons("Generate", "generate-button")
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Images", columns=4, height="auto", elem_id="generate-gallery")
            params = gr.Textbox(label="Parameters", lines=4, interactive=False)
            files = gr.File(label="PNG downloads (with parameters)", file_count="multiple")
            with gr.Row():
                to_walk = gr.Button("Walk from this seed")
                to_morph = gr.Button("Morph from this prompt")
    chosen_seed = gr.State(None)  # the clicked image's seed; None: none clicked since the last run

    dice.click(lambda: random.randrange(MAX_SEED), None, seed, api_visibility="private")
    new_run = go.click(lambda s, locked: (s if locked else random.randrange(MAX_SEED), None), [seed, lock],
                       [seed, chosen_seed], api_visibility="private", preprocess=False)
    job = wire(new_run.then, h.generate,
               [prompt, negative, seed, steps, guidance, scheduler, width, height, num_images, lora, lora_scale],
               [gallery, params, files], h.stops, api_name="generate",
               concurrency_limit=h.batcher.max_images)  # waiting requests join one batch (MicroBatcher)
    with stop_slot:
        stop_button(h.stops, [job])
    gallery.select(seed_of, None, chosen_seed, api_visibility="private")
    return GenerateTab(prompt, seed, chosen_seed, gallery, to_walk, to_morph)
