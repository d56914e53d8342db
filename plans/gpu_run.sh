#!/usr/bin/env bash
# On the lent GPU machine (docs/gpu_plan.md): install the carried wheels, then run the plan's next call.
# The run tool's command: bash plans/gpu_run.sh   (carry: [".gpu"], timeout_s: 600)
set -o pipefail
python3 -m benchmarks.gpu_parts .gpu || exit  # the files the part calls carried ahead, if the pack was split
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .gpu/wheels/*.whl || exit
export PYTHONPATH=/tmp/site:.gpu/site:. PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 scripts/gpu_plan.py run --device cuda --carry .gpu --out "$OUT" "$@" 2>&1 | tail -40
