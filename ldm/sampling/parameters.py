"""Generation parameters as the AUTOMATIC1111 `parameters` PNG text chunk: write, read, parse."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from PIL import Image, PngImagePlugin

from ldm.errors import LdmError

# key: value pairs on the last line; a value is either "quoted JSON" or runs up to the next comma.
_PAIR = re.compile(r'\s*([\w][\w \-/+.()]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def _quote(value) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ',:"\n') else text


def format_parameters(prompt: str, negative_prompt: str, fields: dict) -> str:
    """Prompt on the first line, `Negative prompt: ...` on the next, then `Key: value, ...`."""
    lines = [prompt.replace("\n", " ")]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt.replace(chr(10), ' ')}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields.items() if v is not None))
    return "\n".join(lines)


def parse_parameters(text: str) -> tuple[str, str, dict[str, str]]:
    """Split a `parameters` chunk into (prompt, negative prompt, {key: value string})."""
    lines = text.strip("\n").split("\n")
    if not lines or not _PAIR.match(lines[-1]) or "Steps:" not in lines[-1]:
        raise LdmError("PNG parameters have no 'Steps: ...' line; not written by ldm or AUTOMATIC1111")
    fields = {}
    for key, value in _PAIR.findall(lines[-1]):
        value = value.strip()
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise LdmError(f"PNG parameters: badly quoted value for {key!r}") from None
        fields[key.strip()] = value
    prompt_lines, negative = [], []
    for line in lines[:-1]:
        if line.startswith("Negative prompt:") or negative:
            negative.append(line.removeprefix("Negative prompt:").strip())
        else:
            prompt_lines.append(line)
    return "\n".join(prompt_lines), "\n".join(negative), fields


def png_info(text: str) -> PngImagePlugin.PngInfo:
    """A PngInfo holding `text` as the `parameters` chunk (pass to PIL's save as pnginfo=)."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt("parameters", text)
    return info


def read_png_parameters(path: str | Path) -> str:
    """The `parameters` text chunk of a PNG file, or a one-line error."""
    try:
        with Image.open(path) as image:
            image.load()
            text = image.info.get("parameters")
    except FileNotFoundError:
        raise LdmError(f"PNG not found: {path}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise LdmError(f"cannot read {path}: {exc}") from None
    if not text:
        raise LdmError(f"{path} carries no generation parameters (no 'parameters' text chunk)")
    return text


def file_hash(path: str | Path, length: int = 10) -> str:
    """The first `length` hex digits of a file's sha256 (AUTOMATIC1111's short model hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]
