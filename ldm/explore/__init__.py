"""Latent-space exploration: 2-D maps, principal directions, VAE reconstruction and anomaly scores.

The parts, one job each: `view.py` (DatasetView, which composes the rest, and build_map), `encodings.py`
(computed once, followed by other threads, cached on disk), `latents.py` (encode, decode, caption features,
principal directions, reconstruction and its report), `projections.py` (PCA, t-SNE, UMAP maps), `drawing.py`
(the SVG map, thumbnails, colours) and `map_file.py` (a model folder's shipped map). The names below are the
tab's API.
"""

from ldm.explore.drawing import (
    MAP_PAD,
    MAP_SIZE,
    MapMarks,
    channel_images,
    map_position,
    scatter_svg,
    subject_colour,
    thumbnail_uri,
)
from ldm.explore.encodings import ERROR_IMAGES, explorer_cache_dir
from ldm.explore.latents import (
    PrincipalDirections,
    Reconstruction,
    anomaly_percentile,
    decode_latents,
    encode_latents,
    prompt_features,
    reconstruct,
    reconstruction_report,
)
from ldm.explore.map_file import MAP_FILE, MAP_FORMAT
from ldm.explore.projections import PROJECTIONS, MapProjection, available_projections, fit_map, project_2d
from ldm.explore.view import SPACES, DatasetView, build_map

__all__ = [
    "ERROR_IMAGES", "MAP_FILE", "MAP_FORMAT", "MAP_PAD", "MAP_SIZE", "PROJECTIONS", "SPACES", "DatasetView",
    "MapMarks", "MapProjection", "PrincipalDirections", "Reconstruction", "anomaly_percentile", "available_projections",
    "build_map", "channel_images", "decode_latents", "encode_latents", "explorer_cache_dir", "fit_map",
    "map_position", "project_2d", "prompt_features", "reconstruct", "reconstruction_report", "scatter_svg",
    "subject_colour", "thumbnail_uri",
]
