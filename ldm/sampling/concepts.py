"""A taught concept's files on a loaded pipeline: its LoRA file and its textual-inversion embedding
(`learned_embeds.safetensors`, `{token: (n, width)}` as diffusers writes and `load_textual_inversion` reads), named
as files or by the folder scripts/teach.py wrote.
"""

from __future__ import annotations

from pathlib import Path

from ldm.errors import LdmError
from ldm.folders import refuse_pickle
from ldm.io import one_line

LORA_FILE = "pytorch_lora_weights.safetensors"  # as ldm.train.finetune writes it
EMBEDDING_FILE = "learned_embeds.safetensors"  # as ldm.train.textual_inversion writes it
PREVIEW_SEEDS = 4  # a teach run's preview images of the name alone, then 2 of the class prompt


def preview_prompts(name: str, class_prompt: str = "") -> list[str]:
    """The prompts of a teach run's preview grid, tile by tile (seeds seed, seed + 1, ...)."""
    return [name] * PREVIEW_SEEDS + ([class_prompt] * 2 if class_prompt else [])


def concept_file(path: str, wanted: str, what: str) -> str:
    """A file as given, or the `wanted` file inside a folder (a teach run's); one line when neither is there."""
    p = Path(path).expanduser()
    if p.is_dir():
        if not (p / wanted).is_file():
            raise LdmError(f"{path} holds no {what} ({wanted})")
        return str(p / wanted)
    if not p.is_file():
        raise LdmError(f"{what} not found: {path}")
    return str(p)


def read_embedding(path: str | Path) -> tuple[str, object]:
    """(token, vectors (n, width)) of a textual-inversion file, refused in one line unless it holds one token."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    refuse_pickle(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise LdmError(f"cannot read embedding {path}: {one_line(exc)}") from None
    if len(tensors) != 1:
        raise LdmError(f"embedding {path} holds {len(tensors)} tensors; a textual-inversion file holds one token's")
    (token, vectors), = tensors.items()
    return token, vectors.reshape(-1, vectors.shape[-1]) if vectors.ndim else vectors


def load_embedding(pipe, path: str | Path) -> str:
    """Add a textual-inversion file's token to a pipeline's tokenizer and text encoder; returns the token."""
    token, vectors = read_embedding(path)
    width = pipe.text_encoder.get_input_embeddings().weight.shape[-1]
    if vectors.ndim != 2 or vectors.shape[-1] != width:
        raise LdmError(f"embedding {path} has vectors of width {vectors.shape[-1] if vectors.ndim else 0}; this "
                       f"model's text encoder takes {width}")
    if token in pipe.tokenizer.get_added_vocab():
        return token  # loaded already
    if len(pipe.tokenizer.tokenize(token)) == 1 and token in pipe.tokenizer.get_vocab():
        raise LdmError(f"embedding {path} is for {token!r}, a word this model's text encoder already knows")
    try:
        pipe.load_textual_inversion({token: vectors}, token=token)
    except (ValueError, RuntimeError) as exc:
        raise LdmError(f"cannot load embedding {path}: {one_line(exc)}") from None
    return token
