"""Atomic, resumable training checkpoints: safetensors and JSON only, so resuming never unpickles anything.

A checkpoint folder holds each prepared model (`model.safetensors`, `model_1.safetensors`, ... as
Accelerate names them), `optimizer.safetensors`, `lr_scheduler.safetensors`, `scaler.safetensors` (fp16
only), `random_states_<rank>.safetensors` and, written last, `ldm_state.json` with the step and format.
Accelerate's own `save_state` pickles the optimizer, scheduler and RNG states; checkpoints written that
way (ldm releases before this format) are refused unless the user trusts them, and are then converted
once. A model sharded by FSDP (torch's `fully_shard`, or FSDP1) is gathered to its full state through
`torch.distributed.checkpoint.state_dict`, so its checkpoint is the same safetensors files as any other run's
(its optimizer state keyed by parameter name, as that API gives it) and resumes under any number of processes.
Under DeepSpeed, whose state only DeepSpeed can gather, Accelerate's format is still written, and resuming it
needs the same explicit trust.

A model that trains in part (LoRA adapters on a frozen UNet, a new token's vector in a frozen text encoder) saves
only the parameters that train: the frozen rest is the pipeline folder the run starts from, which a resume builds
again, and a teach run's checkpoint shrinks from the whole UNet and encoder (about 180 MiB for the shipped model)
to the adapters or the vector. (FSDP runs save whole models: they train whole ones.)
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ldm.config import Config, dump_config
from ldm.errors import LdmError
from ldm.io import replace_folder, write_text_atomic

log = logging.getLogger("ldm")

_NAME = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "ldm_state.json"  # written last inside the temporary folder, before the rename
FORMAT = "safetensors-1"
PICKLED_FORMAT = "accelerate"  # Accelerate's save_state: pickled optimizer, scheduler and RNG states
BY_NAME = "names"  # ldm_state.json's optimizer_keys for FSDP runs: optimizer state keyed by parameter name
TRUST_FLAG = "--trust-pickle-checkpoint"


@dataclass
class TrainingState:
    """What a checkpoint saves and restores: the prepared models, optimizer and LR scheduler."""

    models: list = field(default_factory=list)
    optimizer: object = None
    lr_scheduler: object = None


def checkpoint_root(output_dir: str | Path, kind: str) -> Path:
    """Where a run keeps the checkpoints of one trainer ('vae' or 'unet')."""
    return Path(output_dir) / "checkpoints" / kind


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under root, oldest first (temporary folders of interrupted saves are ignored)."""
    root = Path(root)
    found = []
    if root.is_dir():
        for child in root.iterdir():
            m = _NAME.match(child.name)
            if m and child.is_dir() and (child / STATE_FILE).is_file():
                found.append((int(m.group(1)), child))
    return sorted(found)


def _read_state(path: Path) -> dict:
    try:
        state = json.loads((path / STATE_FILE).read_text())
        int(state["step"])
        return state
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LdmError(f"checkpoint {path}: unreadable {STATE_FILE} ({exc})") from None


def checkpoint_format(path: Path) -> str:
    """The checkpoint's storage format: FORMAT, or PICKLED_FORMAT for Accelerate's save_state (older ldm)."""
    return _read_state(path).get("format", PICKLED_FORMAT)


def resolve_resume(root: str | Path, resume: str | None, trust_pickle: bool = False, quiet: bool = False
                   ) -> Path | None:
    """Map --resume (None, 'latest' or a path) to a checkpoint folder, or None to start fresh.

    Reads no weights (scripts call it before loading torch); a pickled checkpoint is refused unless
    trust_pickle is set.
    """
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(root)
        if not found:
            if not quiet:
                log.info("--resume latest: no checkpoint in %s, starting fresh", root)
            return None
        path = found[-1][1]
    else:
        path = Path(resume).expanduser()
        if not path.is_dir():
            raise LdmError(f"--resume: checkpoint not found: {resume}")
        if not (path / STATE_FILE).is_file():
            raise LdmError(f"--resume: {resume} is not a complete ldm checkpoint (no {STATE_FILE})")
    if checkpoint_format(path) == PICKLED_FORMAT and not trust_pickle:
        raise LdmError(f"--resume: {path} stores its optimizer and RNG states as pickles, which can run code when "
                       f"loaded; if you trust where it came from, add {TRUST_FLAG} to convert it to safetensors once")
    return path


def save_checkpoint(accelerator, root: str | Path, step: int, cfg: Config, limit: int, state: TrainingState,
                    extra_save=None) -> Path:
    """Save full training state as root/checkpoint-<step>, atomically; then prune the oldest beyond limit.

    extra_save(folder) runs on the main process to add files (e.g. EMA weights) before the rename.
    """
    root = Path(root)
    final = root / f"checkpoint-{step}"
    tmp = root / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    content = {"step": step, "format": FORMAT}
    if _engine_sharded(accelerator):
        log.warning("%s: DeepSpeed state is saved in Accelerate's pickle format", final)
        accelerator.save_state(str(tmp), safe_serialization=True)
        content["format"] = PICKLED_FORMAT
    else:
        fsdp = _fsdp(state.models)
        _write_state(accelerator, tmp, state, fsdp)
        if fsdp:
            content["optimizer_keys"] = BY_NAME
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if extra_save is not None:
            extra_save(tmp)
        (tmp / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        _write_state_file(tmp, content)
        replace_folder(tmp, final)  # a re-save of the same step (e.g. the last one) replaces it whole
        # Only now that the new checkpoint is complete may old ones go.
        for _, old in list_checkpoints(root)[:-limit] if limit > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-checkpoint-*"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path, state: TrainingState, trust_pickle: bool = False) -> int:
    """Restore training state from a checkpoint folder (converting a trusted pickled one first); return its step."""
    saved = _read_state(path)
    if saved.get("format", PICKLED_FORMAT) == PICKLED_FORMAT:
        if not trust_pickle:  # resolve_resume refuses first; this guards direct library calls
            raise LdmError(f"{path} holds pickles; pass {TRUST_FLAG} to load it")
        if _engine_sharded(accelerator):
            accelerator.load_state(str(path))
            return int(saved["step"])
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            convert_pickled_checkpoint(path)
        accelerator.wait_for_everyone()
    by_name = saved.get("optimizer_keys") == BY_NAME
    if by_name != _fsdp(state.models):
        saved_by, run = ("an FSDP", "one that is not") if by_name else ("a non-FSDP", "an FSDP one")
        raise LdmError(f"{path} was saved by {saved_by} run and cannot resume {run}: resume it with the "
                       "accelerate config that saved it")
    _read_state_files(accelerator, path, state, by_name)
    return int(saved["step"])


def _engine_sharded(accelerator) -> bool:
    """Runs whose state only their engine (DeepSpeed, Megatron) can gather: saved in Accelerate's format."""
    return accelerator.distributed_type.name in ("DEEPSPEED", "MEGATRON_LM")


def _fsdp(models: list) -> bool:
    """Whether a model is sharded by FSDP (FSDP2's fully_shard or FSDP1's wrapper), however it got so."""
    import torch.distributed

    if not torch.distributed.is_available():  # builds without distributed support have no FSDP either
        return False
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

    return any(isinstance(sub, (FSDPModule, FullyShardedDataParallel)) for m in models for sub in m.modules())


def _model_file(index: int) -> str:
    return "model.safetensors" if index == 0 else f"model_{index}.safetensors"


def _write_state_file(folder: Path, content: dict) -> None:
    """Write ldm_state.json durably and atomically (the checkpoint counts as complete once it exists)."""
    write_text_atomic(folder / STATE_FILE, json.dumps(content), durable=True)


def _full_state(**kwargs):
    """torch.distributed.checkpoint's options for an FSDP model's whole state, gathered in CPU memory."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kwargs)


def _optimized(state: TrainingState):
    """The models as one module (whose parameter names key an FSDP optimizer state) and the bare torch optimizer."""
    import torch

    modules = state.models[0] if len(state.models) == 1 else torch.nn.ModuleList(state.models)
    return modules, getattr(state.optimizer, "optimizer", state.optimizer)


def _trainable_names(model) -> set[str] | None:
    """The state names of a model's parameters that train, or None when all of them do (it is saved whole)."""
    params = dict(model.named_parameters(remove_duplicate=False))  # tied weights under each of their names
    trains = {name for name, p in params.items() if p.requires_grad}
    return None if len(trains) == len(params) else trains


def trained_part(tensors: dict, model) -> dict:
    """What a checkpoint keeps of a model's state dict: all of it, or only what trains when part of it is frozen."""
    trains = _trainable_names(model)
    if trains is None:
        return tensors
    kept = {name: t for name, t in tensors.items() if name in trains}
    # a state dict named otherwise than the parameters (a wrapper's prefix) is kept whole rather than lost
    return kept if len(kept) == len(trains) else tensors


def load_trained_part(model, tensors: dict, path: Path) -> None:
    """Load what trained_part kept (or a whole state, as older checkpoints hold) into the run's rebuilt model."""
    trains = _trainable_names(model)
    if trains is None:
        model.load_state_dict(tensors)
        return
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    lacking = sorted(trains.intersection(missing))
    if lacking or unexpected:
        what = f"lacks {lacking[0]}" if lacking else f"holds {unexpected[0]}"
        raise LdmError(f"{path} {what}, which this run's model does not match: resume it with the method, config and "
                       "model folder that saved it")


def _write_state(accelerator, folder: Path, state: TrainingState, fsdp: bool) -> None:
    from safetensors.torch import save_file

    from ldm.train.state_files import rng_states, save_state

    if fsdp:  # collectives: every process gives its shards, the main process gets the whole
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        weights = [get_model_state_dict(model, options=_full_state()) for model in state.models]
        optimizer_state = get_optimizer_state_dict(*_optimized(state), options=_full_state())
    else:
        # every process: DDP-safe
        weights = [trained_part(accelerator.get_state_dict(model), accelerator.unwrap_model(model))
                   for model in state.models]
        optimizer_state = state.optimizer.state_dict() if accelerator.is_main_process else None
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        for k, tensors in enumerate(weights):
            save_file({name: t.contiguous() for name, t in tensors.items()}, str(folder / _model_file(k)))
        save_state(optimizer_state, folder / "optimizer.safetensors")
        save_state(state.lr_scheduler.state_dict(), folder / "lr_scheduler.safetensors")
        if accelerator.scaler is not None:
            save_state(accelerator.scaler.state_dict(), folder / "scaler.safetensors")
    accelerator.wait_for_everyone()  # the folder exists before the other processes write into it
    save_state(rng_states(), folder / f"random_states_{accelerator.process_index}.safetensors")


def _read_state_files(accelerator, path: Path, state: TrainingState, fsdp: bool) -> None:
    from safetensors.torch import load_file

    from ldm.train.state_files import load_state, set_rng_states

    if fsdp:  # the main process reads the whole state; each process keeps its own shards of it
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        main, options = accelerator.is_main_process, _full_state(broadcast_from_rank0=True)
        for k, model in enumerate(state.models):
            set_model_state_dict(model, load_file(str(path / _model_file(k))) if main else {}, options=options)
        set_optimizer_state_dict(*_optimized(state), load_state(path / "optimizer.safetensors") if main else {},
                                 options=options)
    else:
        for k, model in enumerate(state.models):
            load_trained_part(accelerator.unwrap_model(model), load_file(str(path / _model_file(k))), path)
        state.optimizer.load_state_dict(load_state(path / "optimizer.safetensors"))
    state.lr_scheduler.load_state_dict(load_state(path / "lr_scheduler.safetensors"))
    if accelerator.scaler is not None and (path / "scaler.safetensors").is_file():
        accelerator.scaler.load_state_dict(load_state(path / "scaler.safetensors"))
    rng = path / f"random_states_{accelerator.process_index}.safetensors"
    if rng.is_file():
        set_rng_states(load_state(rng))
    else:  # more processes than the run that saved it; the data order does not depend on these states
        log.warning("%s: no random states for process %d; keeping this process's", path, accelerator.process_index)


def convert_pickled_checkpoint(path: Path) -> None:
    """Rewrite a checkpoint saved by Accelerate's save_state (pickles) in this module's format, in place.

    Unpickles its files: only for checkpoints the user trusts. The new files are complete before the
    state file names the new format, and the pickles are removed only after that.
    """
    import torch

    from ldm.train.state_files import save_state

    pickles = {"optimizer.bin": "optimizer.safetensors", "scheduler.bin": "lr_scheduler.safetensors",
               "scaler.pt": "scaler.safetensors"}
    if not (path / "model.safetensors").is_file():
        raise LdmError(f"{path}: no model.safetensors; only checkpoints saved with safetensors weights convert")
    for old, new in pickles.items():
        if (path / old).is_file():
            save_state(torch.load(path / old, map_location="cpu", weights_only=False), path / new)
    rng_pickles = sorted(path.glob("random_states_*.pkl"))  # one per process of the run that saved it
    for old in rng_pickles:
        states = torch.load(old, map_location="cpu", weights_only=False)
        rng = {"python": states["random_state"], "numpy": states["numpy_random_seed"],
               "torch": states["torch_manual_seed"]}
        if "torch_cuda_manual_seed" in states:
            rng["cuda"] = states["torch_cuda_manual_seed"]
        save_state(rng, old.with_suffix(".safetensors"))
    _write_state_file(path, {**_read_state(path), "format": FORMAT})
    for old in [*(path / name for name in pickles), *rng_pickles]:
        old.unlink(missing_ok=True)
    log.info("%s: converted from pickles to safetensors", path)
