"""ldm/render.py: a sampling run's files appear batch by batch, and Ctrl-C keeps what was finished."""

import pytest

from ldm.outputs import NumberedFolder
from ldm.render import Interrupted, render_animation, render_images
from ldm.sampling.parameters import read_png_parameters
from ldm.sampling.requests import ImageSpec, Settings

SETTINGS = Settings(steps=1)


def test_images_take_the_next_numbers_and_the_run_gets_a_grid(tiny_model, tmp_path):
    (tmp_path / "00041-7.png").write_bytes(b"")  # an earlier run's image
    paths = render_images(tiny_model, [ImageSpec("a red square", s) for s in (5, 6, 7)], SETTINGS,
                          NumberedFolder(tmp_path), batch_size=2)
    assert [p.name for p in paths] == ["00042-5.png", "00043-6.png", "00044-7.png", "grid-0000.png"]
    assert "Seed: 6" in read_png_parameters(paths[1])


def test_ctrl_c_keeps_the_finished_batch_and_says_how_many(tiny_model, tmp_path):
    def interrupt_in_the_second_batch(done, total):
        if done > 1:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as caught:
        render_images(tiny_model, [ImageSpec("x", s) for s in (1, 2, 3)], SETTINGS, NumberedFolder(tmp_path),
                      batch_size=1, progress=interrupt_in_the_second_batch)
    assert [p.name for p in caught.value.kept] == ["00000-1.png"] and caught.value.total == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000-1.png"]  # no grid, nothing half-written


def test_an_animation_writes_frames_grid_gif_and_mp4(tiny_model, tmp_path):
    folder = tmp_path / "00000-walk"
    folder.mkdir()
    paths = render_animation(tiny_model, ["a red square"], [1, 2], 3, SETTINGS, folder, fps=4)
    assert [p.name for p in paths] == ["frame-0000.png", "frame-0001.png", "frame-0002.png", "grid.png",
                                       "animation.gif", "animation.mp4"]


def test_an_animation_interrupted_before_any_frame_leaves_no_folder(tiny_model, tmp_path):
    folder = tmp_path / "00000-morph"
    folder.mkdir()

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="kept 0 of 3 frames"):
        render_animation(tiny_model, ["a", "b"], [1], 3, SETTINGS, folder, progress=interrupt)
    assert not folder.exists()
