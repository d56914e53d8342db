"""Grids, GIFs and MP4s from image tensors: the right sizes, frames and files, nothing half-written."""

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from ldm.errors import LdmError
from ldm.media import grid_tiles, make_grid, save_gif, save_mp4, save_png, to_uint8, write_animation


def _frames(n: int = 5, size: int = 17) -> torch.Tensor:
    return torch.stack([torch.full((3, size, size), k / max(n - 1, 1)) for k in range(n)])


def test_grid_places_each_image_in_rows_of_columns():
    images = _frames(5, 8)
    grid = make_grid(images, cols=3, pad=2)
    assert grid.size == (3 * 10 + 2, 2 * 10 + 2)
    arr = np.asarray(grid)
    assert (arr[2:10, 2:10] == 0).all()  # the first image (black) at the top left
    assert (arr[12:20, 12:20] == to_uint8(images[4:5])[0]).all()  # the fifth: second row, second column
    assert (arr[12:20, 22:30] == 255).all()  # the empty cell stays white


def test_gif_and_mp4_hold_every_frame_upscaled_for_viewing(tmp_path):
    frames = _frames(5, 17)  # odd sides: H.264 needs even ones
    gif = Image.open(save_gif(frames, tmp_path / "a.gif", fps=10))
    assert gif.n_frames == 5 and gif.info["loop"] == 0 and gif.info["duration"] == 100
    assert min(gif.size) >= 256  # 17 px nearest-neighbour upscaled, not shown as a speck
    reader = imageio_ffmpeg.read_frames(str(save_mp4(frames, tmp_path / "a.mp4", fps=10)))
    meta = next(reader)
    assert meta["size"][0] % 2 == 0 and meta["size"][1] % 2 == 0
    assert sum(1 for _ in reader) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "a.mp4"]  # no temporary files left


def test_png_keeps_pixels_and_parameters_and_animation_writes_its_set(tmp_path):
    image = torch.rand(3, 8, 8)
    path = save_png(image, tmp_path / "x.png", "red apple\nSteps: 14, Seed: 1")
    back = Image.open(path)
    assert back.text["parameters"] == "red apple\nSteps: 14, Seed: 1"
    assert (np.asarray(back) == to_uint8(image[None])[0]).all()
    paths = write_animation(tmp_path / "walk", _frames(3, 8), ["a", "b", "c"], fps=4)
    assert [p.name for p in paths] == ["frame-0000.png", "frame-0001.png", "frame-0002.png", "grid.png",
                                       "animation.gif", "animation.mp4"]
    assert Image.open(paths[1]).text["parameters"] == "b"


def test_gif_is_the_file_pil_writes_for_the_upscaled_frames(tmp_path):
    # save_gif quantizes each frame at its own size and upscales after: the same palettes and bytes as
    # handing PIL the upscaled RGB frames, on frames with more colours than a palette holds
    from ldm.media import upscale_for_viewing

    g = torch.Generator().manual_seed(0)
    frames = torch.cat([torch.rand(3, 3, 17, 23, generator=g),
                        torch.nn.functional.interpolate(torch.rand(3, 3, 4, 4, generator=g), size=(17, 23),
                                                        mode="bilinear")])
    images = [Image.fromarray(a) for a in upscale_for_viewing(to_uint8(frames), 256)]
    images[0].save(tmp_path / "pil.gif", format="GIF", save_all=True, append_images=images[1:], duration=100,
                   loop=0, disposal=1)
    ours = save_gif(frames, tmp_path / "ours.gif", fps=10)
    assert ours.read_bytes() == (tmp_path / "pil.gif").read_bytes()


def test_grid_tiles_gives_back_the_images_make_grid_tiled_without_the_blank_cells():
    images = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    tiles = grid_tiles(make_grid(images), 16)  # 3 columns, 2 rows: one blank cell
    assert tiles.shape == (5, 3, 16, 16)
    assert torch.equal(tiles, torch.from_numpy(to_uint8(images)).permute(0, 3, 1, 2).float() / 255)
    assert grid_tiles(make_grid(images[:4], cols=4), 16).shape == (4, 3, 16, 16)
    with pytest.raises(LdmError, match="holds no 64x64 tile"):
        grid_tiles(make_grid(images), 64)
