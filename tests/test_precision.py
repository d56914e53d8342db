"""'auto' precision follows what the hardware computes natively, for sampling and for training."""

import logging
from pathlib import Path

import pytest
import torch
from support import TINY

from ldm import precision
from ldm.config import load_config
from ldm.errors import LdmError
from ldm.precision import cpu_has_fast_bf16, resolve_mixed_precision, resolve_precision

CPU = torch.device("cpu")


def test_native_bf16_detection_agrees_with_the_kernel():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to compare with")
    flags = cpuinfo.read_text().split()
    assert cpu_has_fast_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.parametrize("native, sampling, training", [(True, "bf16", "bf16"), (False, "fp32", "no")])
def test_auto_takes_bf16_only_where_the_cpu_computes_it(monkeypatch, native, sampling, training):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: native)
    assert resolve_precision("auto", CPU) == sampling
    assert resolve_mixed_precision("auto", CPU) == training


def test_explicit_choices_are_kept(monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    with caplog.at_level(logging.WARNING, logger="ldm"):
        assert resolve_mixed_precision("bf16", CPU) == "bf16"
        assert resolve_mixed_precision("no", CPU) == "no"
        assert resolve_precision("fp32", CPU) == "fp32"
    assert not caplog.records


def test_explicit_bf16_on_a_cpu_that_emulates_it_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="ldm"):
        assert resolve_mixed_precision("bf16", CPU) == "bf16"
    assert len(caplog.records) == 1 and "no native bf16" in caplog.records[0].getMessage()


@pytest.mark.parametrize("value, message", [("fp16", "needs a GPU"), ("fp8", "unknown mixed precision")])
def test_impossible_training_precisions_are_one_line_errors(value, message):
    with pytest.raises(LdmError, match=message) as err:
        resolve_mixed_precision(value, CPU)
    assert "\n" not in str(err.value)


def test_configs_accept_auto_and_name_the_key_otherwise():
    cfg = load_config(TINY, ["train_vae.mixed_precision=auto"])
    assert cfg.train_vae.mixed_precision == "auto"
    with pytest.raises(LdmError, match="train_unet.mixed_precision"):
        load_config(TINY, ["train_unet.mixed_precision=fp8"])


def test_the_shipped_training_configs_leave_the_choice_to_the_machine():
    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("emoji64", "finetune_full", "finetune_lora"):
        cfg = load_config(root / f"{name}.yaml", ["data.path=."])
        assert cfg.train_unet.mixed_precision == "auto", name
