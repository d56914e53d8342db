"""Safetensors files read a few rows at a time: positioned reads (pread) of just those rows' bytes, and small
index arrays through memory maps advised for random access, so that what a process holds does not grow with the
file, however large.

safetensors' own `safe_open` reads a tensor (or a slice of one) by copying it, one call per slice; training
gathers random rows. A plain memory map of the data would make every touched page (and the kernel's readahead
around it: megabytes for a 26 KB row) part of the process's resident memory. The file format is simple and
specified (an 8-byte little-endian header length, a JSON header of names, dtypes, shapes and byte ranges, then
the data), so rows are read at offsets from the header; files are still written by safetensors itself.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from ldm.io import atomic_file

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "U8": np.uint8, "I8": np.int8, "BOOL": np.bool_}


def read_header(path: str | Path) -> tuple[dict, int]:
    """A safetensors file's JSON header and the byte offset where its data begins."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return header, 8 + length


def metadata(path: str | Path) -> dict[str, str]:
    """A safetensors file's string metadata (its header's __metadata__), reading the header only."""
    return read_header(path)[0].get("__metadata__", {}) or {}


def _specs(header: dict, start: int) -> dict[str, tuple[np.dtype, tuple[int, ...], int]]:
    """Each tensor of a parsed header: its dtype, shape and absolute byte offset in the file."""
    return {name: (np.dtype(_DTYPES[spec["dtype"]]), tuple(spec["shape"]), start + spec["data_offsets"][0])
            for name, spec in header.items() if name != "__metadata__"}


def map_arrays(path: str | Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """A safetensors file's metadata, and each of its tensors as a read-only numpy view of one memory map advised
    for random access (no readahead): for index arrays, a few bytes a row."""
    header, start = read_header(path)
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mapped, "madvise"):
        mapped.madvise(mmap.MADV_RANDOM)
    arrays = {}
    for name, (dtype, shape, offset) in _specs(header, start).items():
        count = int(np.prod(shape))
        arrays[name] = np.frombuffer(mapped, dtype, count, offset).reshape(shape) if count else np.empty(shape, dtype)
    return header.get("__metadata__", {}) or {}, arrays


class ShardFile:
    """Rows of the tensors of one safetensors file, read on demand with positioned reads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._specs = _specs(*read_header(self.path))
        self._fd: int | None = None

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape, from the header alone."""
        return self._specs[name][1]

    def rows(self, name: str, positions) -> np.ndarray:
        """The given rows (first-axis positions) of a tensor, read straight into a new array."""
        dtype, shape, offset = self._specs[name]
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        out = np.empty((len(positions), *shape[1:]), dtype)
        row_bytes = out[0:1].nbytes if len(positions) else 0
        if row_bytes:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            flat = out.reshape(len(positions), -1).view(np.uint8)
            for i, p in enumerate(positions.tolist()):
                if os.preadv(self._fd, [flat[i]], offset + p * row_bytes) != row_bytes:
                    raise OSError(f"{self.path}: short read of {name} row {p}")
        return out

    def close(self) -> None:
        """Release the file descriptor (reads reopen it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.close()


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Write a safetensors file atomically: a reader sees the whole file or none."""
    with atomic_file(Path(path)) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
