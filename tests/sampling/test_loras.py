"""ldm/sampling/loras.py: a broken LoRA file is one line; hashes are computed once per file."""

import hashlib

import pytest

from ldm.errors import LdmError
from ldm.sampling.loras import LoraAdapters


def test_a_file_diffusers_cannot_load_is_a_one_line_error_and_nothing_is_active(tiny_model, tmp_path):
    broken = tmp_path / "pytorch_lora_weights.safetensors"
    broken.write_bytes(b"not safetensors")
    adapters = LoraAdapters(tiny_model.pipe)
    with pytest.raises(LdmError, match=f"^cannot load LoRA {broken}: ") as caught:
        adapters.use(str(broken), 1.0)
    assert "\n" not in str(caught.value)
    adapters.use(None)  # nothing was loaded: switching off is a no-op


def test_hashes_are_the_files_short_sha256_under_any_spelling_of_its_path(tmp_path):
    lora = tmp_path / "a.safetensors"
    lora.write_bytes(b"weights")
    adapters = LoraAdapters(pipe=None)
    assert adapters.hash(str(lora)) == hashlib.sha256(b"weights").hexdigest()[:10]
    assert adapters.hash(str(tmp_path / "." / "a.safetensors")) == adapters.hash(str(lora))
