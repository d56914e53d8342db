"""ldm/sampling/limits.py: one table of ranges; whole numbers stay whole, servers add ceilings and a budget."""

import math

import pytest

from ldm.errors import LdmError
from ldm.sampling.limits import BOUNDS, WORK_BUDGET, check, check_work


@pytest.mark.parametrize("name, value, expected", [
    ("steps", 14, 14), ("steps", 14.0, 14), ("guidance", 3, 3.0), ("fps", 0.5, 0.5), ("seed", 2**40, 2**40),
])
def test_values_in_range_come_back_as_their_kind(name, value, expected):
    out = check(name, value)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize("name, value, message", [
    ("steps", 0, "steps must be at least 1, got 0"),
    ("steps", 2.5, "steps must be at least 1, got 2.5"),
    ("steps", True, "got True"),
    ("steps", "14", "got '14'"),
    ("steps", None, "got None"),
    ("guidance", -1, "guidance scale must be >= 0, got -1"),
    ("guidance", math.nan, "got nan"),
    ("guidance", math.inf, "got inf"),
    ("fps", 0, "fps must be above 0, got 0"),
    ("seed", 2**63, "seed must be in [0, 9223372036854775807]"),
])
def test_local_checks_hold_lower_bounds_and_refuse_what_is_not_a_number(name, value, message):
    with pytest.raises(LdmError) as caught:
        check(name, value)
    assert str(caught.value).startswith(message) or message in str(caught.value)


def test_a_server_adds_its_ceilings():
    assert check("steps", 1000) == 1000  # locally: the user's own machine
    with pytest.raises(LdmError, match="^steps must be a whole number between 1 and 100, got 1000$"):
        check("steps", 1000, server=True)
    with pytest.raises(LdmError, match="^guidance scale must be a number between 0 and 30, got 31$"):
        check("guidance", 31, server=True)
    assert check("seed", BOUNDS["seed"].server_high, server=True) == 2**32 - 1


def test_the_work_budget_counts_images_steps_and_area():
    assert check_work(16, 100, 64, 64, 64) == WORK_BUDGET  # the most a request may be at the training size
    assert check_work(4, 25, 256, 256, 64) == WORK_BUDGET  # the same work at 4x the size
    with pytest.raises(LdmError, match="2 frames x 3 steps at 16x16 is 24 image-steps at 8x8, the server allows 20"):
        check_work(2, 3, 16, 16, 8, budget=20, what="frames")
