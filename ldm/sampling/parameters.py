"""Generation parameters as the AUTOMATIC1111 `parameters` PNG text chunk: write, read, parse."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ldm.errors import LdmError
from ldm.sampling.schedulers import SCHEDULERS

INPAINT_AREA_LABELS = {"whole": "Whole picture", "masked": "Only masked"}  # AUTOMATIC1111's words

if TYPE_CHECKING:  # requests.py imports this module (to parse PNG text back into a request)
    from ldm.sampling.requests import ImageSpec, Settings

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


def image_parameters(spec: ImageSpec, s: Settings, model: ModelStamp, lora_hash: str | None = None,
                     init_hash: str | None = None, mask_hash: str | None = None) -> str:
    """The AUTOMATIC1111-style `parameters` text that re-creates one image (s: resolved settings; init_hash
    and mask_hash: image to image's start and inpainting's mask, which --from-png checks the files against)."""
    fields = {
        "Steps": s.steps,
        "Sampler": SCHEDULERS[s.scheduler].label,
        "CFG scale": s.guidance_scale,
        "Seed": spec.seed,
        "Size": f"{s.width}x{s.height}",
        "Model hash": model.hash,
        "Model": model.name,
    }
    if spec.variation_seed is not None and spec.variation_strength > 0:
        fields["Variation seed"] = spec.variation_seed
        fields["Variation seed strength"] = spec.variation_strength
    if s.eta:
        fields["Eta"] = s.eta
    if s.strength is not None:
        fields["Denoising strength"] = s.strength
        fields["Init image hash"] = init_hash
    if mask_hash is not None:
        fields["Mask blur"] = s.mask_blur
        fields["Masked content"] = s.masked_content
        fields["Inpaint area"] = INPAINT_AREA_LABELS[s.inpaint_area]
        if s.inpaint_area == "masked":
            fields["Masked area padding"] = s.inpaint_padding
        fields["Mask hash"] = mask_hash
    if s.lora is not None:
        fields["LoRA"] = f"{Path(s.lora).name}:{s.lora_scale}"
        fields["LoRA hash"] = lora_hash
    if spec.morph_to is not None and spec.morph_t > 0:
        fields.update({"Morph to": spec.morph_to, "Morph t": spec.morph_t, "Morph mode": spec.morph_mode})
    if spec.mix:
        fields["Prompt mix"] = json.dumps([[prompt, weight] for prompt, weight in spec.mix], ensure_ascii=False)
    fields["Precision"] = model.precision
    return format_parameters(spec.prompt, s.negative_prompt, fields)
