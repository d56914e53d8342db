"""Training state as one safetensors file: nested state round-trips exactly, random states resume their streams,
and a file that is not ldm state is refused without running anything."""

import random

import numpy as np
import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from support import planted_pickle, same_state

from ldm.train.state_files import load_state, rng_states, save_state, set_rng_states


def test_state_file_round_trips_nested_state(tmp_path):
    state = {
        0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4, 2, dtype=torch.bfloat16)},
        "groups": [{"betas": (0.9, 0.999), "params": [0, 1], "lr": float("nan"), "name": None, "fused": True}],
        "python": (3, tuple(range(625)), None),
        "numpy": np.random.RandomState(5).get_state(),
        "empty": {},
    }
    save_state(state, tmp_path / "s.safetensors")
    back = load_state(tmp_path / "s.safetensors")
    assert same_state(state, back)
    assert not same_state(state, {**back, "python": (3, tuple(range(625)), 0.5)})  # the comparison can fail


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_saved_random_states_replay_the_same_draws(tmp_path):
    save_state(rng_states(), tmp_path / "rng.safetensors")
    first = _draws()
    assert _draws() != first
    set_rng_states(load_state(tmp_path / "rng.safetensors"))
    assert _draws() == first


def test_what_json_cannot_hold_is_refused_when_saving(tmp_path):
    with pytest.raises(TypeError, match="cannot store a set"):
        save_state({"ids": {1, 2}}, tmp_path / "s.safetensors")


def test_files_that_are_not_ldm_state_are_refused_and_nothing_runs(tmp_path):
    plain = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))  # model weights: valid safetensors, no skeleton
    with pytest.raises(ValueError, match="holds no ldm training state"):
        load_state(plain)
    good = tmp_path / "state.safetensors"
    save_state({"step": torch.tensor(3)}, good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-3])
    with pytest.raises(SafetensorError):
        load_state(truncated)
    pickled = tmp_path / "pickled.safetensors"
    pickled.write_bytes(planted_pickle(tmp_path / "ran"))
    with pytest.raises(SafetensorError):
        load_state(pickled)
    assert not (tmp_path / "ran").exists()
