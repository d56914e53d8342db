"""What one tab hands another: a picture and its prompt, a run's seeds, a morph's prompts."""

from __future__ import annotations

from app.handlers.payloads import gallery_items, upload
from ldm.errors import LdmError
from ldm.sampling.limits import BOUNDS


def picture_handoff(path, prompt: str | None = None) -> tuple[str, str | None]:
    """An image shown in another tab (a file, or Gradio's file data) and the first line of its prompt (None
    when there is none), for Image to image."""
    path, _ = upload(path)
    if not path:
        raise LdmError("there is no image to send yet")
    lines = prompt.strip().splitlines() if isinstance(prompt, str) else []
    return path, lines[0] if lines else None


def train_handoff(path, current) -> list[str]:
    """The Train tab's images with one more (a file, or Gradio's file data) at the end, unless it is there."""
    added, _ = upload(path)
    if not added:
        raise LdmError("there is no image to send yet")
    kept = [p for p, _ in (upload(item) for item in (current or []) if item) if p]
    return kept if added in kept else [*kept, added]


def gallery_image(chosen: str | None, gallery) -> str | None:
    """The clicked gallery image's file, else the gallery's first."""
    if chosen:
        return chosen
    for image, _ in gallery_items(gallery):
        return image
    raise LdmError("generate an image first")


def gallery_seeds(gallery) -> list[int]:
    """The seeds in a gallery's captions ('seed 42'), in order."""
    seeds = []
    for _, caption in gallery_items(gallery):
        words = str(caption or "").split()
        if len(words) == 2 and words[0] == "seed" and words[1].isdigit():
            seeds.append(int(words[1]))
    return seeds


def run_seed(seed, chosen: int | None, gallery) -> int:
    """The seed a hand-off starts from: the clicked image's, else the run's first, else the seed box's."""
    if chosen is not None:
        return int(chosen)
    seeds = gallery_seeds(gallery)
    if seeds:
        return seeds[0]
    return int(seed) if isinstance(seed, int | float) and not isinstance(seed, bool) and seed >= 0 else 0


def walk_handoff(seed, chosen: int | None, gallery) -> str:
    """Keyframe seeds for the Seed walk tab: the clicked image's and the next, else every seed of the run."""
    seeds = gallery_seeds(gallery)
    if chosen is None and len(seeds) >= 2:
        return ", ".join(str(s) for s in seeds[:int(BOUNDS["keyframes"].server_high)])
    first = run_seed(seed, chosen, gallery)
    return f"{first}, {first + 1}"


def morph_handoff(prompt: str, morph_prompts: str) -> str:
    """The Morph tab's prompts: this prompt first, then the Morph tab's own last line (or this prompt) to edit."""
    lines = [line.strip() for line in str(morph_prompts or "").splitlines() if line.strip()]
    second = lines[-1] if lines and lines[-1] != prompt.strip() else prompt.strip()
    return f"{prompt.strip()}\n{second}"
