"""What the benchmarks report about the machine: CPU, load, peak memory, matmul rates."""

import torch

from benchmarks.machine import busy_cpus, machine_info, matmul_gflops, matmul_rates, reset_rss_peak, rss_peak_mb


def test_matmul_rates():
    assert matmul_gflops(torch.float32, n=128, repeats=2) > 0
    rates = matmul_rates()
    assert set(rates) == {"fp32", "bf16"} and min(rates.values()) > 0


def test_machine_info_names_the_cpu_and_torch():
    info = machine_info()
    assert info["cpu"] and info["cpu_count"] >= 1 and info["torch"] == torch.__version__
    assert info["torch_threads"] == torch.get_num_threads()
    assert isinstance(info["avx512_bf16"], bool) and isinstance(info["amx_bf16"], bool)


def test_peak_rss_grows_with_an_allocation_and_load_is_a_cpu_count():
    can_reset = reset_rss_peak()  # Linux: the peak restarts from the current RSS
    before = rss_peak_mb()
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    assert block.sum() > 0 and rss_peak_mb() >= (before + 32 if can_reset else before)
    busy = busy_cpus(0.05)
    assert busy is None or 0 <= busy <= machine_info()["cpu_count"]
