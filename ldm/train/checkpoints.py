"""Atomic, resumable training checkpoints on top of Accelerate's save_state/load_state."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from ldm.config import Config, dump_config
from ldm.errors import LdmError

log = logging.getLogger("ldm")

_NAME = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "ldm_state.json"  # written last inside the temporary folder, before the rename


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


def resolve_resume(root: str | Path, resume: str | None) -> Path | None:
    """Map --resume (None, 'latest' or a path) to a checkpoint folder, or None to start fresh."""
    if not resume:
        return None
    if resume == "latest":
        found = list_checkpoints(root)
        if not found:
            log.info("--resume latest: no checkpoint in %s, starting fresh", root)
            return None
        return found[-1][1]
    path = Path(resume)
    if not path.is_dir():
        raise LdmError(f"--resume: checkpoint not found: {resume}")
    if not (path / STATE_FILE).is_file():
        raise LdmError(f"--resume: {resume} is not a complete ldm checkpoint (no {STATE_FILE})")
    return path


def save_checkpoint(accelerator, root: str | Path, step: int, cfg: Config, limit: int, extra_save=None) -> Path:
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
    accelerator.save_state(str(tmp), safe_serialization=True)
    if accelerator.is_main_process:
        if extra_save is not None:
            extra_save(tmp)
        (tmp / "config.yaml").write_text(dump_config(cfg), encoding="utf-8")
        state = tmp / STATE_FILE
        with open(state, "w", encoding="utf-8") as f:
            json.dump({"step": step}, f)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():  # a re-save of the same step (e.g. the last one) replaces it whole
            shutil.rmtree(final)
        os.replace(tmp, final)
        # Only now that the new checkpoint is complete may old ones go.
        for _, old in list_checkpoints(root)[:-limit] if limit > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-checkpoint-*"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> int:
    """Restore Accelerate state from a checkpoint folder and return its step."""
    step = int(json.loads((path / STATE_FILE).read_text())["step"])
    accelerator.load_state(str(path))
    return step
