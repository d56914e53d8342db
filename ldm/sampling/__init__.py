"""Sampling from a pipeline folder: requests and their checks (requests.py, no torch), schedulers, noise,
interpolation, walks and morphs, PNG parameters text, and the sampler itself (sampler.py, which composes
embeddings.py, loras.py, denoise.py and vae.py); export for stock diffusers (export.py).

Nothing is imported here, so that scripts can check a request before torch loads.
"""
