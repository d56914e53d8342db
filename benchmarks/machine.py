"""What a benchmark says about the machine it ran on: CPU and instruction sets, other load, peak memory,
and the matmul rates that are the ceiling for a UNet's GFLOP/s."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch


def rss_peak_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def reset_rss_peak() -> bool:
    """Restart the peak-RSS count from the current RSS (Linux only); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def machine_info() -> dict:
    """CPU model, core count, torch threads and the instruction sets that decide bf16 speed."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = line.split(":", 1)[1]
            if model and flags:
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": "avx512_bf16" in flags.split(),
        "amx_bf16": "amx_bf16" in flags.split(),
    }


def busy_cpus(window_s: float = 0.5) -> float | None:
    """How many CPUs other work keeps busy, sampled from /proc/stat while this process idles (Linux only)."""

    def snapshot() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    try:
        busy0, total0 = snapshot()
        time.sleep(window_s)
        busy1, total1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    return round((busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1), 2)


def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 10, max_s: float = 1.0) -> float:
    """This machine's dense matmul rate in GFLOP/s for one dtype (the ceiling a UNet can approach).

    Stops after max_s seconds: a CPU that emulates bf16 takes ~2 s for one product."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    done, start = 0, time.perf_counter()
    while done < repeats and (done == 0 or time.perf_counter() - start < max_s):
        torch.mm(a, b)
        done += 1
    return 2 * n**3 * done / (time.perf_counter() - start) / 1e9


def matmul_rates(threads: int | None = None) -> dict[str, float]:
    """This machine's fp32 and bf16 matmul GFLOP/s, on `threads` torch threads (default: as set now)."""
    if threads:
        torch.set_num_threads(threads)
    return {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
