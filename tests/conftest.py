"""Shared fixtures: one tiny trained run reused by several tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import TINY, run_script


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """configs/tiny.yaml trained end to end (VAE then UNet) through the real scripts."""
    out = tmp_path_factory.mktemp("tiny_run")
    run_script("scripts/train_vae.py", "--config", str(TINY), "--output-dir", str(out))
    run_script("scripts/train_unet.py", "--config", str(TINY), "--output-dir", str(out))
    return out
