"""Shared fixtures: one tiny trained run reused by several tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import TINY, run_script

# Fixtures whose every user is in the slow tier (pytest -m slow): the trained run takes minutes on 2 cores, the
# served app starts a real server. A test that pulls one of them is marked slow here, wherever it is written.
SLOW_FIXTURES = {"tiny_run", "app_url"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marks
def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """configs/tiny.yaml trained end to end (VAE then UNet) through the real scripts."""
    out = tmp_path_factory.mktemp("tiny_run")
    run_script("scripts/train_vae.py", "--config", str(TINY), "--output-dir", str(out))
    run_script("scripts/train_unet.py", "--config", str(TINY), "--output-dir", str(out))
    return out


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> Path:
    """A randomly initialised tiny pipeline folder (no training), for sampling tests."""
    from support import make_random_pipeline

    return make_random_pipeline(tmp_path_factory.mktemp("tiny_pipeline") / "tiny")


@pytest.fixture(scope="session")
def tiny_student(tmp_path_factory):
    """A randomly initialised tiny few-step student (guidance embedding, LCMScheduler, 2 steps), loaded."""
    from support import make_random_pipeline

    from ldm.sampling.sampler import load_sampling_model

    return load_sampling_model(make_random_pipeline(tmp_path_factory.mktemp("tiny_student") / "student", seed=1,
                                                    student=True), "cpu", "bf16")


@pytest.fixture(scope="session")
def tiny_model(tiny_pipeline):
    """The tiny pipeline loaded for sampling on the CPU at bf16 (the precision that is batch-exact)."""
    from ldm.sampling.sampler import load_sampling_model

    return load_sampling_model(tiny_pipeline, "cpu", "bf16")
