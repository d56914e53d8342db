"""ldm: a small, hackable latent diffusion image generator."""

__version__ = "0.1.0"
