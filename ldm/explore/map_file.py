"""An explorer map file: a view's encodings, captions and small thumbnails in one safetensors file, so that a
model folder can ship the map of its training set without the images (explorer/map.safetensors)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file

from ldm.data.images import to_tensor
from ldm.errors import LdmError
from ldm.explore.encodings import model_digests
from ldm.io import one_line
from ldm.media import to_uint8
from ldm.shards import metadata, write_tensors

MAP_FILE = Path("explorer") / "map.safetensors"  # in a pipeline folder: the explorer's map of its training set
MAP_FORMAT = "ldm-explorer-map-1"


def write_map(path: str | Path, images: torch.Tensor, captions: list[str], encoded: dict[str, torch.Tensor], model,
              thumbnail: int = 32) -> None:
    """Write fp16 latents and caption embeddings, reconstruction errors, captions and `thumbnail`-pixel
    thumbnails of images (N, 3, H, W) in [-1, 1], stamped with the model's VAE and text encoder."""
    thumbs = Image.new("RGB", (thumbnail, thumbnail * len(captions)))
    for k, picture in enumerate(to_uint8(images / 2 + 0.5)):
        thumbs.paste(Image.fromarray(picture).resize((thumbnail, thumbnail), Image.BOX), (0, k * thumbnail))
    buf = io.BytesIO()
    # 256 colours: a quarter of a lossless PNG's bytes, and an emoji's few flat colours survive
    thumbs.quantize(256).save(buf, format="PNG", optimize=True)
    png = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    tensors = {"latents": encoded["latents"].half(), "embeddings": encoded["embeddings"].half(),
               "errors": encoded["errors"], "thumbnails_png": png}
    write_tensors(path, tensors, {"format": MAP_FORMAT, "captions": json.dumps(captions), **model_digests(model)})


def read_map(path: str | Path, model) -> tuple[torch.Tensor, list[str], dict[str, torch.Tensor]]:
    """A map file's thumbnails (N, 3, t, t) in [-1, 1], captions and encodings; refused (one line) unless it was
    made with this model's VAE and text encoder."""
    path = Path(path)
    try:
        tensors, meta = load_file(str(path)), metadata(path)  # load_file checks the header first
        captions = json.loads(meta["captions"])
        strip = Image.open(io.BytesIO(tensors["thumbnails_png"].numpy().tobytes())).convert("RGB")
        encoded = {name: tensors[name].float() for name in ("latents", "embeddings", "errors")}
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise LdmError(f"{path} is not an explorer map file ({one_line(exc)})") from None
    if meta.get("format") != MAP_FORMAT or not len(captions) == len(encoded["latents"]) == \
            len(encoded["embeddings"]) or strip.height != len(captions) * strip.width:
        raise LdmError(f"{path} is not an explorer map file of format {MAP_FORMAT}")
    if {key: meta.get(key) for key in ("vae", "text_encoder")} != model_digests(model):
        # its latents would decode to other pictures, its caption embeddings sit in another space
        raise LdmError(f"{path} was made with another VAE or text encoder: rebuild it with "
                       "scripts/build_explorer_map.py")
    side = strip.width  # the thumbnails lie one under the other
    images = to_tensor(strip).reshape(3, len(captions), side, side).transpose(0, 1).contiguous()
    return images, captions, encoded
