"""Nested training state (optimizer, LR schedule, RNG) as one safetensors file: tensors as tensors, the rest as JSON.

`torch.save` pickles such state, and unpickling a file can run any code in it. Here the tensors go into
the safetensors payload and everything around them (dicts with int keys, tuples, numbers, strings) into a
JSON skeleton in the file's metadata, so loading executes nothing.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

SKELETON_KEY = "ldm_state"


def _split(value, tensors: dict[str, torch.Tensor]):
    """JSON skeleton of value; its tensors (and numpy arrays) go into `tensors` under numbered keys."""
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().cpu().contiguous()
        return {"tensor": key}
    if isinstance(value, np.ndarray):
        key = str(len(tensors))
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value).astype(np.int64 if value.dtype.kind in "ui"
                                                                          else value.dtype))
        return {"ndarray": key, "dtype": value.dtype.str}
    if isinstance(value, dict):
        return {"dict": [[_split(k, tensors), _split(v, tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"tuple": [_split(v, tensors) for v in value]}
    if isinstance(value, list):
        return {"list": [_split(v, tensors) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint")


def _join(node, tensors: dict[str, torch.Tensor]):
    """Inverse of _split."""
    if not isinstance(node, dict):
        return node
    if "tensor" in node:
        return tensors[node["tensor"]]
    if "ndarray" in node:
        return tensors[node["ndarray"]].numpy().astype(np.dtype(node["dtype"]))
    if "dict" in node:
        return {_join(k, tensors): _join(v, tensors) for k, v in node["dict"]}
    if "tuple" in node:
        return tuple(_join(v, tensors) for v in node["tuple"])
    return [_join(v, tensors) for v in node["list"]]


def save_state(value, path: str | Path) -> None:
    """Write a nested state (dicts, lists, tuples, scalars, tensors, numpy arrays) to one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(value, tensors)
    save_file(tensors, str(path), metadata={SKELETON_KEY: json.dumps(skeleton)})


def load_state(path: str | Path):
    """Read what save_state wrote; nothing in the file is executed."""
    with safe_open(str(path), "pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
        metadata = f.metadata() or {}
    if SKELETON_KEY not in metadata:
        raise ValueError(f"{path} holds no ldm training state")
    return _join(json.loads(metadata[SKELETON_KEY]), tensors)


def rng_states() -> dict:
    """This process's global random states (Python, NumPy, torch CPU and CUDA), as Accelerate saves them."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what rng_states() captured (a CUDA state only where this machine has CUDA)."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
