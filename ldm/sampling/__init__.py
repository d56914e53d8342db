"""Sampling from a pipeline folder: a request described once (schema.py), requests and their checks (requests.py;
both without torch), schedulers, noise, interpolation, walks and morphs, PNG parameters text, and the sampler
itself (sampler.py, which composes embeddings.py, loras.py, denoise.py and vae.py); export for stock diffusers
(export.py).

Nothing is imported here, so that scripts can check a request before torch loads.
"""
