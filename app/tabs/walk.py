"""The Seed walk tab: one prompt, the noise moving through two or more seeds."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.handlers.animate import AnimateHandlers
from app.handlers.shared import Shared
from app.widgets import MAX_FRAMES, PROMPT_CHARS, animation_tab


@dataclass
class WalkTab:
    """The controls a hand-off from another tab fills in."""

    prompt: gr.Textbox
    seeds: gr.Textbox
    frame: gr.Image  # the frame the scrubber shows, and its send-to button
    send: gr.Button
    model: gr.Radio  # the server's models: a hand-off from Generate carries its choice


def build(shared: Shared) -> WalkTab:
    """Lay out the tab and wire its events."""
    h = AnimateHandlers(shared)

    def controls() -> list:
        return [gr.Textbox(label="Prompt", value="grinning face", max_length=PROMPT_CHARS),
                gr.Textbox(label="Seeds (2 or more)", value="1, 2, 3"),
                gr.Slider(2, MAX_FRAMES, value=16, step=1, label="Frames"),
                gr.Checkbox(label="Loop back to the first seed")]

    (prompt, seeds, _, _), frame, send, model = animation_tab(
        shared, "walk", "Walk", h.interpolate_seeds, "interpolate_seeds", controls, h.walk_frame, (0, 1), (3,))
    return WalkTab(prompt, seeds, frame, send, model)
