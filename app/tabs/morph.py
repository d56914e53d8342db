"""The Prompt morph tab: one seed, the conditioning moving through two or more prompts."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.handlers.animate import AnimateHandlers
from app.handlers.checks import MAX_SEED
from app.handlers.shared import Shared
from app.widgets import MAX_FRAMES, animation_tab, request_control


@dataclass
class MorphTab:
    """The controls a hand-off from another tab fills in."""

    prompts: gr.Textbox
    seed: gr.Number
    frame: gr.Image  # the frame the scrubber shows, and its send-to button
    send: gr.Button
    model: gr.Radio  # the server's models: a hand-off from Generate carries its choice


def build(shared: Shared) -> MorphTab:
    """Lay out the tab and wire its events."""
    h = AnimateHandlers(shared)

    def controls() -> list:
        return [gr.Textbox(label="Prompts, one per line", lines=3, value="grinning face\ncat face"),
                gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=MAX_SEED),
                gr.Slider(2, MAX_FRAMES, value=16, step=1, label="Frames"),
                request_control("morph_mode", info="predictions: blended at every step, gradual (one more UNet row "
                                                    "a frame); slerp, lerp: the prompts' embeddings blended. auto: "
                                                    "predictions for a few-step student, slerp for a full model, "
                                                    "whose blended predictions flicker")]

    (prompts, seed, _, _), frame, send, model = animation_tab(shared, "morph", "Morph", h.morph, "morph", controls,
                                                              h.morph_frame, (0, 1), (3,))
    return MorphTab(prompts, seed, frame, send, model)
