"""Which reduced precision is fast on this device: 'auto' for sampling and for training.

bf16 is only worth it where the hardware computes it: CPUs with AVX-512 BF16 or AMX, and GPUs that
support it. A CPU without those (most laptops, and AVX2-only servers) emulates bf16 matmuls and
convolutions 40-140x slower than fp32 (measured on an AVX2 EPYC: 1 vs 133 GFLOP/s for a 1024^2
matmul), so 'auto' must fall back to fp32 there rather than follow a config written on another machine.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch

from ldm.config import MIXED_PRECISIONS, PRECISIONS
from ldm.errors import LdmError

log = logging.getLogger("ldm")


def cpu_has_fast_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX-512 BF16 or AMX), so bf16 beats fp32."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(check) for check in checks):
        return any(check() for check in checks)
    try:  # older torch: ask the kernel
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """Sampling: 'auto' -> bf16 on CPUs with native bf16 and on bf16-capable GPUs, fp16 on other GPUs, else fp32."""
    if precision not in PRECISIONS:
        raise LdmError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"


def resolve_mixed_precision(mixed_precision: str, device: torch.device) -> str:
    """Training: the Accelerate setting ('no', 'bf16', 'fp16') that mixed_precision means on this device.

    'auto' follows resolve_precision. An explicit bf16 on a CPU that emulates it is kept (it is what
    was asked for) with a warning, since it turns a minutes-long run into hours."""
    if mixed_precision not in MIXED_PRECISIONS:
        raise LdmError(f"unknown mixed precision {mixed_precision!r}: choose one of {', '.join(MIXED_PRECISIONS)}")
    if mixed_precision == "fp16" and device.type != "cuda":
        raise LdmError("mixed_precision fp16 needs a GPU; use bf16 or auto on CPU")
    if mixed_precision == "auto":
        resolved = resolve_precision("auto", device)
        return "no" if resolved == "fp32" else resolved
    if mixed_precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        log.warning("warning: this CPU has no native bf16 (AVX-512 BF16 or AMX): bf16 runs emulated, "
                    "tens of times slower than fp32; use mixed_precision auto or no")
    return mixed_precision


def autocast(precision: str, device: torch.device):
    """The autocast context for a resolved sampling precision ('fp32': none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
