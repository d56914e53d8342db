"""The Autoencoder tab: an uploaded image through the VAE, its PSNR, anomaly score and latent channels."""

from __future__ import annotations

import gradio as gr

from app.events import wire
from app.handlers.autoencoder import AutoencoderHandlers
from app.handlers.shared import Shared
from app.widgets import PANEL, result_gallery, result_image


def build(shared: Shared) -> None:
    """Lay out the tab and wire its events."""
    h = AutoencoderHandlers(shared)
    with gr.Row():
        upload = gr.Image(label="Image", type="filepath", sources=["upload", "clipboard"], height=PANEL)
        recon = result_image("Reconstruction")
    report = gr.Markdown(label="Report")
    channels = result_gallery("Latent channels", columns=8)
    go = gr.Button("Reconstruct", variant="primary")
    wire(go.click, h.reconstruct, upload, [recon, report, channels], api_name="reconstruct")
    # a new image makes the last one's results stale
    upload.change(lambda: (None, "", []), None, [recon, report, channels], api_visibility="private")
