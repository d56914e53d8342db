"""Checkpoint files without pickles: a checkpoint round-trips exactly, and an old pickled checkpoint is
refused unless trusted, then converted once."""

import json

import pytest
import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from safetensors.torch import load_file, save_file
from support import TINY, planted_pickle, same_state

from ldm.config import load_config
from ldm.errors import LdmError
from ldm.train.checkpoints import (
    FORMAT,
    STATE_FILE,
    TRUST_FLAG,
    TrainingState,
    checkpoint_format,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)


def _tiny_training(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    scheduler = get_scheduler("cosine", optimizer=optimizer, num_warmup_steps=2, num_training_steps=20)
    return model, optimizer, scheduler


def _steps(model, optimizer, scheduler, count: int):
    for _ in range(count):
        model(torch.randn(5, 6)).square().mean().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


@pytest.fixture
def accelerator():
    return Accelerator(cpu=True)


def _fresh(accelerator, seed: int = 1) -> TrainingState:
    model, optimizer, scheduler = accelerator.prepare(*_tiny_training(seed))
    return TrainingState([model], optimizer, scheduler)


def _trained(accelerator, steps: int = 3) -> TrainingState:
    state = _fresh(accelerator, 0)
    _steps(*state.models, state.optimizer, state.lr_scheduler, steps)
    return state


def _assert_restored(saved: TrainingState, restored: TrainingState):
    assert same_state(saved.models[0].state_dict(), restored.models[0].state_dict())
    assert same_state(saved.optimizer.state_dict(), restored.optimizer.state_dict())
    assert same_state(saved.lr_scheduler.state_dict(), restored.lr_scheduler.state_dict())


def test_checkpoint_round_trip_is_exact_and_holds_no_pickle(accelerator, tmp_path):
    saved = _trained(accelerator)
    folder = save_checkpoint(accelerator, tmp_path, 3, load_config(TINY), 2, saved)
    rng = torch.get_rng_state()
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".safetensors", ".safetensors", ".safetensors",
                                                          ".safetensors", ".yaml"]
    assert checkpoint_format(folder) == FORMAT
    torch.randn(100)  # moves the global RNG on; loading must put it back
    restored = _fresh(accelerator)
    assert not same_state(saved.models[0].state_dict(), restored.models[0].state_dict())
    assert load_checkpoint(accelerator, folder, restored) == 3
    _assert_restored(saved, restored)
    assert torch.equal(torch.get_rng_state(), rng)
    # the next steps are the same too: nothing the optimizer or schedule needs was lost
    torch.manual_seed(7)
    _steps(*saved.models, saved.optimizer, saved.lr_scheduler, 2)
    torch.manual_seed(7)
    _steps(*restored.models, restored.optimizer, restored.lr_scheduler, 2)
    _assert_restored(saved, restored)


def _pickled_checkpoint(accelerator, root, step: int = 3) -> tuple[TrainingState, object]:
    """A checkpoint as ldm wrote it before this format: Accelerate's save_state, pickles included."""
    saved = _trained(accelerator, step)
    folder = root / f"checkpoint-{step}"
    accelerator.save_state(str(folder), safe_serialization=True)
    (folder / STATE_FILE).write_text(json.dumps({"step": step}))
    return saved, folder


def test_pickled_checkpoint_is_refused_without_trust_and_nothing_runs(accelerator, tmp_path):
    _, folder = _pickled_checkpoint(accelerator, tmp_path)
    marker = tmp_path / "executed"
    (folder / "random_states_0.pkl").write_bytes(planted_pickle(marker))
    for resume in ("latest", str(folder)):
        with pytest.raises(LdmError, match=TRUST_FLAG):
            resolve_resume(tmp_path, resume)
    restored = _fresh(accelerator)
    with pytest.raises(LdmError, match=TRUST_FLAG):
        load_checkpoint(accelerator, folder, restored)
    assert not marker.exists()


def test_trusted_pickled_checkpoint_is_converted_once_and_resumes_exactly(accelerator, tmp_path):
    saved, folder = _pickled_checkpoint(accelerator, tmp_path)
    model_before = load_file(folder / "model.safetensors")
    assert {"optimizer.bin", "scheduler.bin", "random_states_0.pkl"} <= {p.name for p in folder.iterdir()}
    assert resolve_resume(tmp_path, "latest", trust_pickle=True) == folder
    restored = _fresh(accelerator)
    assert load_checkpoint(accelerator, folder, restored, trust_pickle=True) == 3
    _assert_restored(saved, restored)
    names = {p.name for p in folder.iterdir()}
    assert not {n for n in names if n.endswith((".bin", ".pkl", ".pt"))}
    assert {"optimizer.safetensors", "lr_scheduler.safetensors", "random_states_0.safetensors"} <= names
    assert checkpoint_format(folder) == FORMAT
    assert resolve_resume(tmp_path, "latest") == folder  # converted: no trust needed any more
    assert same_state(model_before, load_file(folder / "model.safetensors"))


class _Adapted(torch.nn.Module):
    """A frozen base layer with a trainable low-rank adapter beside it, as a LoRA run's UNet has."""

    def __init__(self):
        super().__init__()
        self.base = torch.nn.Linear(6, 6).requires_grad_(False)
        self.down, self.up = torch.nn.Linear(6, 2, bias=False), torch.nn.Linear(2, 6, bias=False)

    def forward(self, x):
        return self.base(x) + self.up(self.down(x))


def _adapted_state(accelerator, seed: int) -> TrainingState:
    """An adapted model whose frozen base is the same for every seed (as a resume rebuilds it), prepared."""
    torch.manual_seed(seed)
    model = _Adapted()
    torch.manual_seed(5)
    model.base.reset_parameters()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, get_scheduler("constant", optimizer=optimizer))
    return TrainingState([model], optimizer, scheduler)


def test_a_partly_frozen_model_saves_what_trains_and_resumes_exactly(accelerator, tmp_path):
    saved = _adapted_state(accelerator, 0)
    _steps(*saved.models, saved.optimizer, saved.lr_scheduler, 3)
    folder = save_checkpoint(accelerator, tmp_path, 3, load_config(TINY), 2, saved)
    assert sorted(load_file(folder / "model.safetensors")) == ["down.weight", "up.weight"]  # not the frozen base
    restored = _adapted_state(accelerator, 1)
    assert load_checkpoint(accelerator, folder, restored) == 3
    _assert_restored(saved, restored)
    torch.manual_seed(7)
    _steps(*saved.models, saved.optimizer, saved.lr_scheduler, 2)
    torch.manual_seed(7)
    _steps(*restored.models, restored.optimizer, restored.lr_scheduler, 2)
    _assert_restored(saved, restored)


def test_a_whole_state_loads_into_a_partly_frozen_model_and_a_mismatch_is_one_line(accelerator, tmp_path):
    saved = _adapted_state(accelerator, 0)
    folder = save_checkpoint(accelerator, tmp_path, 1, load_config(TINY), 2, saved)
    whole = {name: t.contiguous() for name, t in saved.models[0].state_dict().items()}
    save_file(whole, folder / "model.safetensors")  # as checkpoints before trainable-only saving held
    restored = _adapted_state(accelerator, 1)
    load_checkpoint(accelerator, folder, restored)
    _assert_restored(saved, restored)
    save_file({"up.weight": whole["up.weight"]}, folder / "model.safetensors")  # another run's adapters
    with pytest.raises(LdmError, match=r"lacks down.weight, which this run's model does not match"):
        load_checkpoint(accelerator, folder, restored)
    save_file({**whole, "extra.weight": whole["up.weight"].clone()}, folder / "model.safetensors")
    with pytest.raises(LdmError, match=r"holds extra.weight"):
        load_checkpoint(accelerator, folder, restored)
