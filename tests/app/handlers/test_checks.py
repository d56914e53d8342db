"""The server's work budget over the tabs that render, on the tiny pipeline: no server, no Gradio."""

from __future__ import annotations

import pytest

from app.handlers.animate import AnimateHandlers
from app.handlers.generate import GenerateHandlers
from app.handlers.shared import Shared
from ldm.errors import LdmError


@pytest.mark.parametrize("call", [
    # 25,600 image-steps at 32 px
    lambda h: GenerateHandlers(h).generate("x", steps=100, num_images=16, width=128, height=128),
    lambda h: AnimateHandlers(h).interpolate_seeds("x", "1, 2", frames=48, steps=40),  # 1,920
])
def test_requests_over_the_work_budget_are_refused_before_any_work(shared, call):
    with pytest.raises(LdmError, match="too much work for one request: .* the server allows 1600; ask for fewer"):
        call(shared)
    assert not list(shared.out_dir.iterdir())


def test_the_budget_is_the_servers_choice(tiny_model, tmp_path):
    small = Shared(tiny_model, None, tmp_path, work_budget=3)
    GenerateHandlers(small).generate("x", steps=3, num_images=1)  # exactly the budget
    with pytest.raises(LdmError, match="4 image-steps at 32x32, the server allows 3"):
        GenerateHandlers(small).generate("x", steps=2, num_images=2)
