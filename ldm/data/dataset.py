"""Image-caption datasets for training: a checked image folder or the procedural shapes."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ldm.config import DataConfig
from ldm.data.imagefolder import HELDOUT_NAME, METADATA_NAME, Entry, FolderScan, scan_imagefolder
from ldm.data.images import BadImage, load_image, load_image_bytes, load_image_with_alpha, to_tensor
from ldm.data.records import RecordEntry, RecordScan, read_image_bytes, records_format, scan_records
from ldm.data.shapes import GENERATOR_VERSION, make_shape, shape_caption, shape_params
from ldm.errors import LdmError

log = logging.getLogger("ldm.data")

SPLITS = ("train", "heldout")
# held-out shapes come from an index range that no training set reaches
SHAPES_HELDOUT_OFFSET = 1_000_000_000
FINGERPRINT_VERSION = "1"


def _row_key(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


class ImageCaptionDataset(torch.utils.data.Dataset):
    """Images in [-1, 1] with their captions; subclasses say where pixels come from.

    `captions` holds each image's primary caption; `caption_lists` every caption it may train under."""

    captions: list[str]
    size: int

    @property
    def caption_lists(self) -> list[tuple[str, ...]]:
        """Every caption of each image, its primary caption first."""
        return [(c,) for c in self.captions]

    def __len__(self) -> int:
        return len(self.captions)

    def image(self, i: int) -> Image.Image:
        """Image i as a size x size RGB PIL image."""
        raise NotImplementedError

    def load(self, i: int) -> torch.Tensor:
        """Image i as a float32 (3, size, size) tensor in [-1, 1], without augmentation."""
        return to_tensor(self.image(i))

    def load_with_alpha(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image i as load() gives it, and its opacity as a float32 (1, size, size) tensor in [0, 1]."""
        return self.load(i), torch.ones(1, self.size, self.size)

    def __getitem__(self, i: int) -> dict:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n}")
        i %= n
        return {"pixel_values": self.load(i), "caption": self.captions[i], "index": i}

    def fingerprint(self) -> str:
        """sha256 hex of everything the pixels and captions depend on (for caches)."""
        raise NotImplementedError

    def row_keys(self) -> list[str]:
        """Per image, a sha256 hex of what its pixels and captions depend on, wherever it sits in the dataset (so
        that a cache can keep the rows of images it has already encoded when images are added or moved)."""
        raise NotImplementedError


class EntryDataset(ImageCaptionDataset):
    """Checked entries (each with .rel, .caption and .all_captions()), decoded on demand by `decode`."""

    def __init__(self, entries: Sequence, size: int):
        self.entries = list(entries)
        self.captions = [e.caption for e in self.entries]
        self._caption_lists = [e.all_captions() for e in self.entries]
        self.size = size
        self._warned: set[int] = set()

    @property
    def caption_lists(self) -> list[tuple[str, ...]]:
        """Every caption of each image, its primary caption first."""
        return self._caption_lists

    def decode(self, entry) -> Image.Image:
        """One entry's image at the dataset's size, or BadImage / OSError."""
        raise NotImplementedError

    def image(self, i: int) -> Image.Image:
        """Image i; one that broke since the scan becomes white (with one warning) instead of a crash."""
        entry = self.entries[i]
        try:
            return self.decode(entry)
        except (BadImage, OSError) as exc:
            if i not in self._warned:
                self._warned.add(i)
                log.warning("%s no longer loads (%s); using a white image", entry.rel, exc)
            return Image.new("RGB", (self.size, self.size), (255, 255, 255))


class FolderDataset(EntryDataset):
    """Checked entries of an image folder, decoded on demand."""

    def __init__(self, entries: Sequence[Entry], size: int):
        super().__init__(entries, size)
        self._digests: list[str] | None = None

    def decode(self, entry: Entry) -> Image.Image:
        """The entry's file, decoded and fitted."""
        return load_image(entry.path, self.size)

    def load_with_alpha(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image i on white and its opacity (from the file's transparency; a file that broke is white, opaque)."""
        entry = self.entries[i]
        try:
            rgb, alpha = load_image_with_alpha(entry.path, self.size)
        except BadImage:
            return self.load(i), torch.ones(1, self.size, self.size)
        opacity = torch.from_numpy(np.array(alpha, dtype=np.float32, copy=True))[None] / 255
        return to_tensor(rgb), opacity

    def _file_digests(self) -> list[str]:
        """Each file's size, mtime and content hash, in order (computed once per dataset object)."""
        if self._digests is None:
            def file_digest(path: Path) -> str:
                # content too: copies that keep size and mtime (rsync -t, touch -r) must still count as changes
                try:
                    st = path.stat()
                    h = hashlib.sha256()
                    with open(path, "rb") as f:
                        for block in iter(lambda: f.read(1 << 20), b""):
                            h.update(block)
                    return f"{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()}"
                except OSError as exc:
                    return f"unreadable:{type(exc).__name__}"

            workers = min(32, (os.cpu_count() or 1) + 4, max(1, len(self.entries)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                self._digests = list(pool.map(file_digest, [e.path for e in self.entries]))
        return self._digests

    def row_keys(self) -> list[str]:
        """Per image: its file's content hash and its captions (not its path or mtime: a moved or touched file
        keeps its key)."""
        return [_row_key("imagefolder", str(self.size), digest.rpartition(":")[2], *entry.all_captions())
                for entry, digest in zip(self.entries, self._file_digests(), strict=True)]

    def fingerprint(self) -> str:
        """Hash over source, resolution, order, captions and each file's bytes, size and mtime."""
        digests = self._file_digests()
        h = hashlib.sha256()
        for part in ("imagefolder", FINGERPRINT_VERSION, str(self.size)):
            h.update(part.encode() + b"\0")
        for entry, digest in zip(self.entries, digests):
            for part in (str(entry.path), "\x1f".join(entry.all_captions()), digest):
                h.update(part.encode("utf-8", "surrogateescape") + b"\0")
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"FolderDataset({len(self)} images, size={self.size})"


class RecordDataset(EntryDataset):
    """Checked records of Arrow, Parquet or tar files (ldm.data.records), decoded on demand."""

    def __init__(self, entries: Sequence[RecordEntry], size: int, kind: str):
        super().__init__(entries, size)
        self.kind = kind

    def decode(self, entry: RecordEntry) -> Image.Image:
        """The record's image bytes, read where they lie, decoded and fitted."""
        return load_image_bytes(read_image_bytes(entry.locator), self.size)

    def row_keys(self) -> list[str]:
        """Per image: its bytes' hash and its captions (not where it lies)."""
        return [_row_key("records", str(self.size), e.digest, *e.captions) for e in self.entries]

    def fingerprint(self) -> str:
        """Hash over the format, size, order, names, captions and image bytes."""
        h = hashlib.sha256()
        for part in ("records", FINGERPRINT_VERSION, self.kind, str(self.size)):
            h.update(part.encode() + b"\0")
        for entry, key in zip(self.entries, self.row_keys(), strict=True):
            h.update(entry.rel.encode("utf-8", "surrogateescape") + b"\0" + key.encode() + b"\0")
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"RecordDataset({len(self)} {self.kind} images, size={self.size})"


class ShapesDataset(ImageCaptionDataset):
    """Procedural shapes at the given indices (see ldm.data.shapes)."""

    def __init__(self, indices: Sequence[int], size: int, seed: int = 0):
        self.indices = list(indices)
        self.size = size
        self.seed = seed
        params = (shape_params(j, size, seed) for j in self.indices)
        self.captions = [shape_caption(p.color, p.shape, p.background) for p in params]

    def image(self, i: int) -> Image.Image:
        """Image i, drawn afresh."""
        return make_shape(self.indices[i], self.size, self.seed)[0]

    def fingerprint(self) -> str:
        """Hash over the generator version, indices, size and seed."""
        h = hashlib.sha256()
        for part in ("shapes", FINGERPRINT_VERSION, GENERATOR_VERSION, str(self.size), str(self.seed),
                     ",".join(map(str, self.indices))):
            h.update(part.encode() + b"\0")
        return h.hexdigest()

    def row_keys(self) -> list[str]:
        """Per image: the generator version, size, seed and its index."""
        return [_row_key("shapes", GENERATOR_VERSION, str(self.size), str(self.seed), str(j), c)
                for j, c in zip(self.indices, self.captions, strict=True)]

    def __repr__(self) -> str:
        return f"ShapesDataset({len(self)} images, size={self.size}, seed={self.seed})"


class WithAlpha(torch.utils.data.Dataset):
    """A dataset's images with their opacity, for layout augmentation: {"pixel_values", "alpha", "index"}."""

    def __init__(self, dataset: ImageCaptionDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        pixels, alpha = self.dataset.load_with_alpha(i)
        return {"pixel_values": pixels, "alpha": alpha, "index": i}


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


@functools.lru_cache(maxsize=8)
def _cached_scan(root: str, caption_column: str, size: int, heldout_fraction: float, stamp: tuple) -> FolderScan:
    return scan_imagefolder(root, caption_column, size, heldout_fraction)


def cached_scan(root: str | Path, caption_column: str, size: int, heldout_fraction: float) -> FolderScan:
    """scan_imagefolder, remembered per process so that train and held-out share one decode pass."""
    root = Path(root).expanduser().absolute()
    # cheap change detection: files added or removed at the top, or the metadata / split list edited
    stamp = tuple(_mtime(p) for p in (root, root / METADATA_NAME, root / HELDOUT_NAME))
    return _cached_scan(str(root), caption_column, size, heldout_fraction, stamp)


@functools.lru_cache(maxsize=8)
def _cached_record_scan(root: str, caption_column: str, size: int, heldout_fraction: float, stamp: tuple):
    return scan_records(root, caption_column, size, heldout_fraction)


def cached_record_scan(path: str | Path, caption_column: str, size: int, heldout_fraction: float) -> RecordScan:
    """scan_records, remembered per process (train and held-out share one pass) until a file changes."""
    path = Path(path).expanduser().absolute()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stamp = tuple((str(p), _mtime(p)) for p in files)
    return _cached_record_scan(str(path), caption_column, size, heldout_fraction, stamp)


def clear_scan_cache() -> None:
    """Forget remembered folder scans."""
    _cached_scan.cache_clear()
    _cached_record_scan.cache_clear()


def shapes_heldout_count(shapes_count: int) -> int:
    """Size of the held-out shapes set."""
    return max(8, shapes_count // 20)


def build_dataset(cfg: DataConfig, split: str = "train", seed: int = 0) -> ImageCaptionDataset:
    """The dataset `cfg` describes, for split 'train' or 'heldout'."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if cfg.source == "shapes":
        if split == "train":
            indices = range(cfg.shapes_count)
        else:
            indices = range(SHAPES_HELDOUT_OFFSET, SHAPES_HELDOUT_OFFSET + shapes_heldout_count(cfg.shapes_count))
        return ShapesDataset(indices, cfg.resolution, seed)
    if cfg.source == "files":
        if not cfg.path:
            raise LdmError("config key 'data.path': source 'files' needs a folder or file (or pass --data PATH)")
        if not Path(cfg.path).expanduser().exists():  # before guessing a format from a name that is not there
            raise LdmError(f"data not found: {cfg.path} (data takes an image folder, a datasets save_to_disk "
                           "folder, Parquet files or WebDataset .tar shards)")
        kind = records_format(cfg.path)
        if kind is not None:  # a datasets folder, Parquet or tar shards: read where they lie
            scan = cached_record_scan(cfg.path, cfg.caption_column, cfg.resolution, cfg.heldout_fraction)
            return RecordDataset(scan.train if split == "train" else scan.heldout, cfg.resolution, kind)
        scan = cached_scan(cfg.path, cfg.caption_column, cfg.resolution, cfg.heldout_fraction)
        return FolderDataset(scan.train if split == "train" else scan.heldout, cfg.resolution)
    raise LdmError(f"config key 'data.source': unknown source {cfg.source!r}")
