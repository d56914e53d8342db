"""The hand-offs between tabs, called as plain functions on the tiny pipeline: no server, no Gradio."""

from __future__ import annotations

import pytest

from app.handlers.handoffs import morph_handoff, picture_handoff, run_seed, train_handoff, walk_handoff
from ldm.errors import LdmError


def test_walk_handoff_carries_the_runs_seeds_or_the_clicked_one():
    run = [("a.png", "seed 11"), ("b.png", "seed 12"), ("c.png", "seed 13")]
    assert walk_handoff(0, None, run) == "11, 12, 13"  # nothing clicked: the whole run
    assert walk_handoff(0, 12, run) == "12, 13"  # a clicked image and the next seed
    assert walk_handoff(5, None, [{"image": "a.png", "caption": "seed 7"}]) == "7, 8"  # one image (dict form)
    assert walk_handoff(5, None, []) == "5, 6"  # no run yet: the seed box
    assert walk_handoff(-1, None, None) == "0, 1"


def test_morph_handoff_leaves_two_prompts_and_the_runs_seed():
    assert morph_handoff("grinning face", "grinning face\ncat face") == "grinning face\ncat face"
    assert morph_handoff("red apple", "") == "red apple\nred apple"  # always two lines: the morph runs as is
    assert morph_handoff("cat face", "dog\ncat face") == "cat face\ncat face"
    assert run_seed(3, None, [("a.png", "seed 40"), ("b.png", "seed 41")]) == 40
    assert run_seed(3, 41, [("a.png", "seed 40")]) == 41


def test_any_shown_picture_goes_to_image_to_image_with_its_prompts_first_line():
    assert picture_handoff({"path": "/f/frame-0002.png"}, "grinning face\ncat face") == ("/f/frame-0002.png",
                                                                                        "grinning face")
    assert picture_handoff("/f/pick.png") == ("/f/pick.png", None)
    with pytest.raises(LdmError, match="no image to send yet"):
        picture_handoff(None, "x")


def test_a_picture_sent_to_train_joins_its_images_once():
    assert train_handoff("/r/seed-1.png", None) == ["/r/seed-1.png"]
    dropped = [{"path": "/g/abc/mine.png", "orig_name": "mine.png"}, "/r/seed-1.png"]
    assert train_handoff({"path": "/r/seed-2.png"}, dropped) == ["/g/abc/mine.png", "/r/seed-1.png", "/r/seed-2.png"]
    assert train_handoff("/r/seed-1.png", dropped) == ["/g/abc/mine.png", "/r/seed-1.png"]  # there already
    with pytest.raises(LdmError, match="no image to send yet"):
        train_handoff(None, dropped)
