"""Safetensors files read through memory maps: a shard's tensors as numpy views of the file, so that gathering a
few rows reads those rows' pages and nothing else, whatever the file's size.

safetensors' own `safe_open` reads a tensor (or a slice of one) by copying it; training gathers random rows,
which through slices costs one call per row and tensor. The file format is simple and specified (an 8-byte
little-endian header length, a JSON header of names, dtypes, shapes and byte ranges, then the data), so the
views are made from the header with `numpy.memmap`; files are still written by safetensors itself.
"""

from __future__ import annotations

import json
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


class MappedFile:
    """The tensors of one safetensors file as read-only numpy memory maps, opened on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        header, start = read_header(self.path)
        self.metadata: dict[str, str] = header.pop("__metadata__", {}) or {}
        self._specs = {name: (spec["dtype"], tuple(spec["shape"]), start + spec["data_offsets"][0])
                       for name, spec in header.items()}
        self._maps: dict[str, np.ndarray] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._maps:
            dtype, shape, offset = self._specs[name]
            if 0 in shape:  # numpy cannot map zero bytes
                self._maps[name] = np.empty(shape, _DTYPES[dtype])
            else:
                self._maps[name] = np.memmap(self.path, dtype=_DTYPES[dtype], mode="r", offset=offset, shape=shape)
        return self._maps[name]

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape, from the header alone."""
        return self._specs[name][1]


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Write a safetensors file atomically: a reader sees the whole file or none."""
    with atomic_file(Path(path)) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def rows(array: np.ndarray, positions: np.ndarray) -> torch.Tensor:
    """The given rows of a mapped array as a tensor (a copy of those rows only)."""
    return torch.from_numpy(np.ascontiguousarray(array[positions]))
