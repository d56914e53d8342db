"""The Autoencoder tab's handlers: an uploaded image through the VAE, its report and latent channels."""

from __future__ import annotations

from app.handlers.payloads import upload
from app.handlers.shared import TabHandlers
from ldm.data.images import BadImage, load_image, to_tensor
from ldm.errors import LdmError
from ldm.explore import anomaly_percentile, channel_images, reconstruct, reconstruction_report
from ldm.media import save_png
from ldm.sampling.requests import Progress


class AutoencoderHandlers(TabHandlers):
    """What the Autoencoder tab's controls do."""

    def reconstruct(self, image: str | dict | None, progress: Progress | None = None):
        """VAE round trip of an uploaded image: (reconstruction, report, latent channels)."""
        shared = self.shared
        path, name = upload(image)
        if not path:
            raise LdmError("upload an image first")
        try:
            pil = load_image(path, shared.model.default_size)
        except BadImage as exc:  # its reason never names the server's copy of the file
            raise LdmError(f"cannot use {name}: {exc}") from None
        r = shared.batcher.run(reconstruct, shared.model.vae, to_tensor(pil) / 2 + 0.5)
        folder = shared.folders.new("reconstruct")
        recon_path = str(save_png(r.reconstruction, folder / "reconstruction.png"))
        anomaly = None
        if shared.view is not None:
            shared.wait_for_view(progress)
            anomaly = anomaly_percentile(r.error, shared.view.errors)
        channels = []
        for k, img in enumerate(channel_images(r.latent)):
            path = folder / f"channel-{k}.png"
            img.save(path)
            channels.append((str(path), f"channel {k}"))
        return recon_path, reconstruction_report(r, anomaly), channels
