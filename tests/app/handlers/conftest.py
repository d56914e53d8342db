"""What every tab's handlers are built over in these tests: the tiny model and a dataset of ten shapes."""

from __future__ import annotations

import pytest
import torch

from app.handlers.shared import Shared
from ldm.data.images import to_tensor
from ldm.data.shapes import make_shape
from ldm.explore import DatasetView


@pytest.fixture
def shared(tiny_model, tmp_path):
    shapes = [make_shape(i, 32) for i in range(10)]
    view = DatasetView(torch.stack([to_tensor(image) for image, _ in shapes]), [caption for _, caption in shapes],
                       tiny_model)
    return Shared(tiny_model, view, tmp_path)
