"""The Autoencoder tab's handlers, called as plain functions on the tiny pipeline: no server, no Gradio."""

from __future__ import annotations

import pytest
from PIL import Image

from app.handlers.autoencoder import AutoencoderHandlers
from ldm.data.shapes import make_shape
from ldm.errors import LdmError


@pytest.fixture
def handlers(shared):
    return AutoencoderHandlers(shared)


def test_reconstruct_reports_psnr_compression_and_anomaly(handlers, tmp_path):
    make_shape(3, 32)[0].save(tmp_path / "in.png")
    recon, report, channels = handlers.reconstruct(str(tmp_path / "in.png"))
    assert Image.open(recon).size == (32, 32)
    assert "PSNR" in report and "compression** 6.0x" in report and "percentile" in report
    assert len(channels) == 4


def test_reconstruct_refuses_missing_and_broken_uploads(handlers, tmp_path):
    with pytest.raises(LdmError, match="upload an image first"):
        handlers.reconstruct(None)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(LdmError, match="^cannot use notes.png: not an image$"):
        handlers.reconstruct(str(tmp_path / "notes.png"))
    # as Gradio sends an upload: the message names the user's file, not the server's copy
    with pytest.raises(LdmError, match="^cannot use my notes.png: not an image$"):
        handlers.reconstruct({"path": str(tmp_path / "notes.png"), "orig_name": "my notes.png"})
