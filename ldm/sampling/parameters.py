"""Generation parameters as the AUTOMATIC1111 `parameters` PNG text chunk: write, read, parse.

Which keys an image's text carries, in what order, when, and how each is spelled, is ldm.sampling.schema's
FIELDS; this module only applies it both ways.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ldm.errors import LdmError
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.schedulers import SCHEDULERS, scheduler_from_label
from ldm.sampling.schema import FIELDS, REQUIRED, SAME, SETTINGS, SPEC, STAMP, Field, part

# The longest `parameters` text read back. AUTOMATIC1111's own prompts stop at a few thousand characters;
# beyond this it is not a picture's settings, and a server must not spend its time reading it.
MAX_PARAMETERS_CHARS = 65536
_KEY = re.compile(r"[\w][\w \-/+.()]*")
# a quoted value: its alternatives cannot match the same text, so a failed match costs one pass, not a square
_QUOTED = re.compile(r'"(?:\\.|[^\\"])*"')


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


def parse_fields(line: str) -> dict[str, str]:
    """The `Key: value, ...` pairs of a settings line, in one pass (a value is "quoted JSON" or runs up to the
    next comma; text that is no pair is skipped, as AUTOMATIC1111 skips it)."""
    fields, at = {}, 0
    while (colon := line.find(":", at)) >= 0:
        key = line[max(at, line.rfind(",", at, colon) + 1):colon].strip()  # text before a comma: no pair
        start = colon + 1
        while start < len(line) and line[start] == " ":
            start += 1
        opens_quote = line.startswith('"', start)
        quoted = _QUOTED.match(line, start) if opens_quote else None
        end = quoted.end() if quoted else start
        comma = line.find(",", end)
        comma = len(line) if comma < 0 else comma
        if _KEY.fullmatch(key):
            if opens_quote:
                try:
                    fields[key] = json.loads(quoted.group() if quoted else line[start:comma])
                except json.JSONDecodeError:
                    raise LdmError(f"PNG parameters: badly quoted value for {key[:40]!r}") from None
            else:
                fields[key] = line[start:comma].strip()
        at = comma + 1
    return fields


def parse_parameters(text: str) -> tuple[str, str, dict[str, str]]:
    """Split a `parameters` chunk into (prompt, negative prompt, {key: value string})."""
    if len(text) > MAX_PARAMETERS_CHARS:
        raise LdmError(f"PNG parameters are {len(text):,} characters long; ldm reads at most "
                       f"{MAX_PARAMETERS_CHARS:,} (AUTOMATIC1111 never writes that much)")
    lines = text.strip("\n").split("\n")
    fields = parse_fields(lines[-1])
    if "Steps" not in fields:
        raise LdmError("PNG parameters have no 'Steps: ...' line; not written by ldm or AUTOMATIC1111")
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
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise LdmError(f"cannot read {path}: decompression bomb (too many pixels to open)") from None
    except UnidentifiedImageError:
        raise LdmError(f"cannot read {path}: not an image") from None
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


def unet_hash(folder: str | Path | None) -> str:
    """Short sha256 of a pipeline folder's UNet weights ('unsaved' for a model not loaded from a folder)."""
    files = sorted((Path(folder) / "unet").glob("*.safetensors")) if folder else []
    return file_hash(files[0]) if files else "unsaved"


@dataclass(frozen=True)
class ModelStamp:
    """What an image's parameters say about the model that made it."""

    name: str
    hash: str
    precision: str


# When the text carries a field (Field.png_when), over all the request's values by name.
WRITTEN_WHEN: dict[str, Callable[[dict, str], bool]] = {
    "always": lambda r, name: True,
    "set": lambda r, name: r[name] is not None,
    "nonzero": lambda r, name: bool(r[name]),
    "variation": lambda r, name: r["variation_seed"] is not None and r["variation_strength"] > 0,
    "image_to_image": lambda r, name: r["strength"] is not None,
    "inpainting": lambda r, name: r["mask_hash"] is not None,
    "masked_area": lambda r, name: r["mask_hash"] is not None and r["inpaint_area"] == "masked",
    "lora": lambda r, name: r["lora"] is not None,
    "morph": lambda r, name: r["morph_to"] is not None and r["morph_t"] > 0,
    "tiny": lambda r, name: r["decoder"] == "tiny",
}


def _size(text: str) -> dict:
    try:
        width, height = (int(v) for v in text.split("x")) if text else (None, None)
    except ValueError:
        raise LdmError(f"PNG parameters: size {text!r} is not WIDTHxHEIGHT") from None
    return {"width": width, "height": height}


def _lora(text: str) -> dict:
    lora, _, scale = text.rpartition(":")
    try:
        return {"lora": lora or None, "lora_scale": float(scale) if lora else 1.0}
    except ValueError:
        raise LdmError(f"PNG parameters: LoRA {text!r} is not NAME:SCALE") from None


def parse_mix(text: str | None) -> tuple[tuple[str, float], ...]:
    """The `Prompt mix` field back into (prompt, weight) pairs."""
    if not text:
        return ()
    try:
        return tuple((str(p), float(w)) for p, w in json.loads(text))
    except (ValueError, TypeError):
        raise LdmError(f"PNG parameters: Prompt mix {text!r} is not a list of [prompt, weight]") from None


# Field.codec: (the text for a field, given all the request's values; the values a text gives back).
CODECS: dict[str, tuple[Callable[[dict, str], str], Callable[[str, str], dict]]] = {
    "scheduler": (lambda r, name: SCHEDULERS[r[name]].label, lambda text, name: {name: scheduler_from_label(text)}),
    "size": (lambda r, name: f"{r['width']}x{r['height']}", lambda text, name: _size(text)),
    "lora": (lambda r, name: f"{Path(r['lora']).name}:{r['lora_scale']}", lambda text, name: _lora(text)),
    "json": (lambda r, name: json.dumps([list(term) for term in r[name]], ensure_ascii=False),
             lambda text, name: {name: parse_mix(text)}),
}


def _written(f: Field, r: dict):
    if f.codec:
        return CODECS[f.codec][0](r, f.name)
    value = r[f.name]
    return f.labels[f.choices.index(value)] if f.labels else value


def _read(f: Field, text: str) -> dict:
    if f.codec:
        return CODECS[f.codec][1](text, f.name)
    if f.labels:  # a word ldm does not know reads as the default, as AUTOMATIC1111's does
        return {f.name: dict(zip(f.labels, f.choices, strict=True)).get(text, f.default)}
    if f.kind in (int, float):
        try:
            return {f.name: f.kind(text)}
        except ValueError:
            raise LdmError(f"PNG parameters: {f.png} {text!r} is not a number") from None
    return {f.name: text}


def request_text(values: dict, fields: tuple[Field, ...] = FIELDS) -> str:
    """The `parameters` text of a request given as {field name: value} (every field of `fields`; None: unset)."""
    written = {f.png: _written(f, values) for f in fields
               if f.png is not None and WRITTEN_WHEN[f.png_when](values, f.name)}
    return format_parameters(values["prompt"], values["negative_prompt"], written)


def request_values(text: str, fields: tuple[Field, ...] = FIELDS) -> tuple[dict, dict[str, str]]:
    """A `parameters` text back into ({field name: value} for every field but the stamps, the raw fields)."""
    prompt, negative, raw = parse_parameters(text)
    values = {"prompt": prompt, "negative_prompt": negative}
    for f in fields:
        if f.png is None or f.part == STAMP:
            continue
        if f.png in raw:
            values.update(_read(f, raw[f.png]))
        elif f.png_absent is REQUIRED or (f.png_absent == SAME and f.default is REQUIRED):
            raise LdmError(f"PNG parameters lack {f.png!r}")
        elif f.png_absent == SAME:
            values.update(_read(f, "") if f.codec else {f.name: f.default})
        else:  # AUTOMATIC1111's own default (CFG scale 7, Euler a)
            values.update(_read(f, str(f.png_absent)))
    return values, raw


def image_parameters(spec: ImageSpec, s: Settings, model: ModelStamp, lora_hash: str | None = None,
                     init_hash: str | None = None, mask_hash: str | None = None) -> str:
    """The AUTOMATIC1111-style `parameters` text that re-creates one image (s: resolved settings; init_hash
    and mask_hash: image to image's start and inpainting's mask, which --from-png checks the files against)."""
    stamps = {"model_hash": model.hash, "model": model.name, "init_hash": init_hash, "mask_hash": mask_hash,
              "lora_hash": lora_hash, "precision": model.precision}
    return request_text({**vars(s), **vars(spec), **stamps})


def spec_from_parameters(text: str) -> tuple[ImageSpec, Settings, dict[str, str]]:
    """Parse a `parameters` chunk back into what re-creates the image (and the raw fields)."""
    values, raw = request_values(text)
    return (ImageSpec(**{f.name: values[f.name] for f in part(SPEC)}),
            Settings(**{f.name: values[f.name] for f in part(SETTINGS)}), raw)
