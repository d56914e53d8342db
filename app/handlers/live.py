"""One image at a time as a control moves: rendered by the live model (a few-step student where there is one)."""

from __future__ import annotations

from collections.abc import Callable

from app.handlers.checks import server
from app.handlers.shared import Shared
from ldm.media import save_png
from ldm.sampling.requests import ImageSpec, Settings

LOCAL = "local"  # the client a library caller's live calls count as (the web UI passes each session's own)


def live_image(shared: Shared, spec: ImageSpec | Callable[[], ImageSpec], guidance: float | None = None,
               client: str = LOCAL, lora: str | None = None, lora_scale: float = 1.0) -> str:
    """One image from the live model (a student: a few steps, no CFG pass; at most LIVE_STEPS), as a PNG.

    spec: the image, or what works it out on the model's thread; client: who asks (its newer call replaces
    its waiting one, see MicroBatcher.run_live)."""
    model = shared.models.live
    if guidance is not None:
        guidance = server("guidance", guidance)
    s = model.resolve(Settings(guidance_scale=guidance, steps=shared.models.live_steps, lora=lora,
                               lora_scale=lora_scale))

    def render() -> str:
        image_spec = spec() if callable(spec) else spec
        image = model.generate([image_spec], s)[0]
        return str(save_png(image, shared.folders.new("live") / f"live-{image_spec.seed}.png",
                            model.parameters_text(image_spec, s)))

    return shared.batcher.run_live(client, render)
