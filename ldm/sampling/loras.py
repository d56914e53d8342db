"""LoRA files on a loaded pipeline: each loaded once as a named adapter, then switched on, off or rescaled."""

from __future__ import annotations

from pathlib import Path

from ldm.errors import LdmError
from ldm.io import one_line
from ldm.sampling.parameters import file_hash


class LoraAdapters:
    """The LoRA adapters loaded into one pipeline, keyed by file, and their hashes for PNG parameters."""

    def __init__(self, pipe):
        self.pipe = pipe
        self._names: dict[str, str] = {}  # resolved file -> adapter name
        self._hashes: dict[str, str] = {}

    def use(self, path: str | None, scale: float = 1.0) -> None:
        """Activate one LoRA file at `scale` (loaded on first use, kept for later calls), or none."""
        if path is None:
            if self._names:
                self.pipe.disable_lora()
            return
        key = str(Path(path).resolve())
        if key not in self._names:
            name = f"lora{len(self._names)}"
            try:
                self.pipe.load_lora_weights(key, adapter_name=name)
            except Exception as exc:  # diffusers/peft raise many types for foreign or broken files
                raise LdmError(f"cannot load LoRA {path}: {one_line(exc)}") from None
            self._names[key] = name
        self.pipe.enable_lora()
        self.pipe.set_adapters([self._names[key]], adapter_weights=[scale])

    def hash(self, path: str) -> str:
        """Short sha256 of a LoRA file, as AUTOMATIC1111 writes 'LoRA hash' (computed once per file)."""
        key = str(Path(path).resolve())
        if key not in self._hashes:
            self._hashes[key] = file_hash(key)
        return self._hashes[key]
