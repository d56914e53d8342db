"""Benchmarks that time ldm's real trainer and sampler on this machine; scripts/benchmark.py runs them.

Not part of the installed package: ldm never imports them. Importing this folder loads no torch, so the
script can check its arguments first (benchmarks.options).
"""
