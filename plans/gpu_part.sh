#!/usr/bin/env bash
# On the lent GPU machine, a part call (docs/gpu_plan.md): keep a carried part's files where the plan's call, made
# next on the same warm machine, joins them (python -m benchmarks.gpu_parts).
# The run tool's command: bash plans/gpu_part.sh .gpu-part1   (carry: [".gpu-part1"], timeout_s: 120)
set -eu
part="${1:?which part folder: e.g. .gpu-part1}"
mkdir -p .gpu-kept
cp -a "$part"/. .gpu-kept/
echo "kept $(find "$part" -type f | wc -l) files of $part ($(du -sh .gpu-kept | cut -f1) kept in all)"
