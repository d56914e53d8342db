"""Teaching the trained tiny model a shape it never saw (a plus sign; it knows circles, squares and triangles),
through scripts/teach.py: the name's images then land nearest the new shape."""

import json

import pytest
import torch
from PIL import Image, ImageDraw
from support import TINY, run_script

from ldm.config import load_config
from ldm.data.dataset import build_dataset
from ldm.data.images import load_image, to_tensor
from ldm.metrics import image_features, nearest
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.sampler import load_sampling_model

RED = (220, 30, 30)  # a colour the tiny model knows, on the background it knows best
PLUSES = ((16, 16, 9), (14, 17, 11), (18, 15, 8))  # (centre x, centre y, half length) of each image's plus


def _plus_images(folder):
    folder.mkdir(parents=True)
    paths = []
    for k, (cx, cy, r) in enumerate(PLUSES):
        image = Image.new("RGB", (32 * 4, 32 * 4), "white")
        draw = ImageDraw.Draw(image)
        w = r * 4 // 3
        draw.rectangle([(cx - r) * 4, (cy) * 4 - w, (cx + r) * 4, cy * 4 + w], fill=RED)
        draw.rectangle([cx * 4 - w, (cy - r) * 4, cx * 4 + w, (cy + r) * 4], fill=RED)
        paths.append(folder / f"plus-{k}.png")
        image.resize((32, 32), Image.Resampling.BOX).save(paths[-1])
    return paths


@pytest.mark.slow  # a few hundred steps on the trained tiny run
@pytest.mark.parametrize("method", ["lora"])
def test_a_new_shape_is_learnt(method, tiny_run, tmp_path):
    paths = _plus_images(tmp_path / "plus")
    out = tmp_path / "zorbly"
    run_script("scripts/teach.py", *map(str, paths), "--name", "zorbly", "--class", "a red square", "--out", str(out),
               "--model", str(tiny_run), "--method", method, "--steps", "300",
               "--set", "train_unet.learning_rate=5e-3", "--set", "finetune.lora_rank=16",
               "--set", "finetune.lora_alpha=16", "--set", "train_unet.sample_every=100",
               "--set", "train_unet.mixed_precision=no")
    card = json.loads((out / "teach.json").read_text())
    assert card["name_likeness_after"] < card["name_likeness_before"], card

    # where "zorbly" lands among the tiny model's own shapes and the three pluses
    cfg = load_config(TINY)
    shapes = build_dataset(cfg.data, "train")
    known = torch.stack([shapes.load(i) for i in range(len(shapes))]) / 2 + 0.5
    pluses = torch.stack([to_tensor(load_image(p, 32)) for p in paths]) / 2 + 0.5
    reference = image_features(torch.cat([known, pluses]))
    model = load_sampling_model(tiny_run, "cpu", "fp32")
    specs = [ImageSpec("zorbly", seed) for seed in range(8)]
    settings = Settings(steps=20)

    def landed(lora) -> int:
        images = model.generate(specs, Settings(steps=settings.steps, lora=lora))
        return int((nearest(image_features(images), reference, 1)[:, 0] >= len(known)).sum())

    before, after = landed(None), landed(str(out / "pytorch_lora_weights.safetensors"))
    assert before == 0 and after >= 5, (before, after)
