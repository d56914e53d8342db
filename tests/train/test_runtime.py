"""The run around a trainer: the Accelerator's precision, accumulation and log folder; logging; progress bars."""

import logging
import sys

import pytest
import torch
from accelerate.state import AcceleratorState
from support import TINY

from ldm.config import load_config
from ldm.precision import resolve_mixed_precision
from ldm.train.runtime import count_params, make_accelerator, progress, setup_logging, start_logs


@pytest.fixture
def fresh_state():
    """Accelerate keeps one precision per process: start and leave each test without one, and restore logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("precision", ["no", "auto"])
def test_accelerator_takes_the_config_and_logs_under_the_run_folder(fresh_state, tmp_path, precision):
    tc = load_config(TINY, ["train_vae.gradient_accumulation_steps=3",
                            f"train_vae.mixed_precision={precision}"]).train_vae
    accelerator = make_accelerator(tc, tmp_path)
    assert not (tmp_path / "logs").exists()  # nothing written until the run's data is accepted
    start_logs(accelerator, "vae")
    assert accelerator.device.type == "cpu" and accelerator.gradient_accumulation_steps == 3
    assert accelerator.mixed_precision == resolve_mixed_precision(precision, torch.device("cpu"))
    assert accelerator.project_dir == str(tmp_path) and accelerator.logging_dir == str(tmp_path / "logs")
    accelerator.log({"loss": 0.5}, step=1)
    accelerator.end_training()
    assert list((tmp_path / "logs" / "vae").glob("events.out.tfevents.*"))  # TensorBoard, under the run's name


def test_logging_is_one_line_per_message_and_libraries_only_warn(fresh_state):
    setup_logging()
    assert logging.getLogger().level == logging.INFO
    assert logging.getLogger().handlers[0].formatter._fmt == "%(message)s"
    for noisy in ("accelerate", "diffusers", "transformers", "torch"):
        assert logging.getLogger(noisy).level == logging.WARNING


def test_progress_bar_counts_from_the_resumed_step_and_redraws_rarely_into_a_log(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    bar = progress(10, 4, "unet", enabled=True)
    assert (bar.total, bar.n, bar.desc, bar.disable) == (10, 4, "unet", False)
    assert bar.mininterval == 60.0
    bar.close()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress(10, 0, "vae", enabled=True)
    assert bar.mininterval == 0.5
    bar.close()
    assert progress(10, 0, "vae", enabled=False).disable  # the other processes draw nothing


def test_parameter_count_in_millions():
    assert count_params(torch.nn.Linear(1000, 1000)) == "1.00M"
    assert count_params(torch.nn.Linear(10, 100)) == "0.00M"
