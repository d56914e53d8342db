"""Layout augmentation: redrawn images keep their content, the background shows only where the image is
transparent, and a batch's draws are seeded."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from support import shapes_folder

from ldm.data.augment import BACKGROUNDS, Layout, augment_batch, content_box, make_background, redraw
from ldm.data.dataset import FolderDataset
from ldm.data.emoji import _checked_glyph, _square, render_emoji_rgba
from ldm.data.imagefolder import scan_imagefolder
from ldm.data.images import to_tensor
from ldm.metrics import image_features, psnr


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = shapes_folder(tmp_path_factory.mktemp("augment") / "shapes", count=24)
    data = FolderDataset(scan_imagefolder(folder, size=32, heldout_fraction=0).train, 32)
    pixels, alpha = zip(*(data.load_with_alpha(i) for i in range(len(data))), strict=True)
    return torch.stack(pixels), torch.stack(alpha)


def _rgba_tensors(image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    on_white = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    return to_tensor(on_white), torch.from_numpy(np.asarray(image.getchannel("A"), dtype=np.float32).copy())[None] / 255


def test_the_full_frame_layout_on_white_is_the_image_itself(shapes):
    pixels, alpha = shapes
    assert alpha.eq(1).all()  # shapes have no transparency: they move as opaque squares
    same = redraw(pixels[0], alpha[0], Layout(1.0), make_background("white", 32, torch.Generator()))
    assert torch.allclose(same, pixels[0], atol=1e-6)
    mirrored = redraw(pixels[0], alpha[0], Layout(1.0, flip=True), torch.ones(3, 32, 32))
    assert torch.allclose(mirrored, pixels[0].flip(-1), atol=1e-6)


def test_shapes_stay_recognisable_wherever_they_are_redrawn(shapes):
    # redraw every shape at half size in a corner on a random background, cut it out, scale it back: the nearest
    # original is still its own image
    pixels, alpha = shapes
    gen = torch.Generator().manual_seed(0)
    back = []
    for i in range(len(pixels)):
        x, y = torch.rand(2, generator=gen).tolist()
        drawn = redraw(pixels[i], alpha[i], Layout(0.5, x, y), make_background("colour", 32, gen))
        top, left = round(y * 16), round(x * 16)
        back.append(F.interpolate(drawn[None, :, top:top + 16, left:left + 16], size=(32, 32), mode="bilinear")[0])
    features = image_features((pixels + 1) / 2)
    nearest = torch.cdist(image_features((torch.stack(back) + 1) / 2), features).argmin(dim=1)
    assert nearest.tolist() == list(range(len(pixels)))


def test_the_background_shows_exactly_where_the_emoji_is_transparent(font):
    pixels, alpha = _rgba_tensors(render_emoji_rgba("🐸", font))
    background = make_background("colour", 64, torch.Generator().manual_seed(3))
    drawn = redraw(pixels, alpha, Layout(0.9), background)
    clear = F.max_pool2d(alpha[None], 5, stride=1, padding=2)[0, 0] == 0  # a pixel's placement may move by one
    solid = -F.max_pool2d(-alpha[None], 5, stride=1, padding=2)[0, 0] == 1
    assert clear.sum() > 500 and solid.sum() > 1000
    assert torch.allclose(drawn[:, clear], background[:, clear], atol=1e-5)
    assert not torch.allclose(drawn[:, solid], background[:, solid], atol=0.1)
    # at its own size and place (no resampling), on black it is the emoji drawn on black
    top, left, bottom, right = content_box(alpha)
    own = Layout(max(bottom - top, right - left) / 64)
    on_black = redraw(pixels, alpha, own, make_background("black", 64, torch.Generator()))
    on_black_square = _square("🐸", font, _checked_glyph("🐸", font), 0.05, "black")
    truth = to_tensor(on_black_square.resize((64, 64), Image.Resampling.LANCZOS))
    assert psnr(on_black[None], truth[None]).item() > 30


def test_content_box_finds_the_visible_pixels():
    alpha = torch.zeros(1, 10, 12)
    assert content_box(alpha) == (0, 0, 10, 12)  # nothing visible: the whole frame
    alpha[0, 2:5, 3:9] = 1
    assert content_box(alpha) == (2, 3, 5, 9)


@pytest.mark.parametrize("kind", list(BACKGROUNDS))
def test_every_background_is_an_image_in_range(kind):
    background = make_background(kind, 32, torch.Generator().manual_seed(1))
    assert background.shape == (3, 32, 32) and background.min() >= -1 and background.max() <= 1
    varies = background.flatten(1).std(dim=1).max() > 0.01
    assert varies == (kind in ("gradient", "photo"))


def test_an_unknown_background_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown background 'plaid'"):
        make_background("plaid", 8, torch.Generator())


def test_augment_batch_is_seeded_and_changes_only_its_share(shapes):
    pixels, alpha = shapes
    assert torch.equal(augment_batch(pixels, alpha, torch.Generator().manual_seed(0), 0.0), pixels)
    first = augment_batch(pixels, alpha, torch.Generator().manual_seed(0), 0.5)
    assert torch.equal(first, augment_batch(pixels, alpha, torch.Generator().manual_seed(0), 0.5))
    changed = (first - pixels).flatten(1).abs().amax(dim=1) > 1e-4
    assert 4 <= int(changed.sum()) <= 20  # about half of 24
    assert (augment_batch(pixels, alpha, torch.Generator().manual_seed(1), 1.0) - pixels).flatten(1).abs().amax(
        dim=1).gt(1e-4).all()
