#!/usr/bin/env bash
# The GPU check: run it whenever a GPU machine is at hand; at most 8 minutes on one GPU.
#
#   bash bench/gpu_check.sh            # on a GPU machine, from the repository root
#   bash bench/gpu_check.sh --dry      # on any machine: the same parts on the CPU at tiny sizes
#   bash bench/gpu_check.sh --only trainer,heads      # some parts (trainer, loop, heads, sweep)
#
# Prints the device name, then ratios measured side by side (bench/gpu_check.py says how):
#   trainer  wrn16_4 Trainer epoch: fp32 vs bf16 vs channels_last vs compile (synthetic CIFAR-size
#            data on the GPU)
#   loop     the Trainer vs a minimal hand loop of the same model
#   heads    fused RLP head vs the naive two-pass head at n = 100,000 x 10 heads (time, peak memory)
#   sweep    a 4-trial sweep at gpus_per_worker 1 vs 0.25 (trials per hour)
# Copy its output into docs/performance.md ("GPU check") with the device it names.
#
# What the machine needs: Python 3.11 with torch (and torchvision, timm, numpy, pyarrow, the base
# requirements of pyproject.toml); rlp_tune itself is used from this checkout (PYTHONPATH), not
# installed. The sweep part also needs ray[default,tune], optuna and duckdb; without them it prints
# one line and is skipped. A machine that cannot reach a package index gets them as wheels:
#   here (same Python version and platform as there):
#     pip download -d wheels -c constraints.txt "ray[default,tune]" optuna duckdb pyarrow pandas
#       (add --python-version 3.11 --platform manylinux2014_x86_64 --only-binary=:all: when this
#        machine differs from the GPU machine)
#   carry wheels/ with the working tree (the Ray wheel alone is ~70 MB: copy it beside the tree when a
#   transfer limit is smaller), then there:
#     python -m pip install --no-index --find-links wheels "ray[default,tune]" optuna duckdb
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
"$PY" -c 'import torch' 2>/dev/null || { echo "gpu_check: $PY has no torch" >&2; exit 2; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" RAY_USAGE_STATS_ENABLED=0
echo "gpu_check: $(date -u +%FT%TZ) on $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
# 8 minutes in all: no new part after 450 s (the script's --budget), hard stop at 480 s
exec timeout 480 "$PY" bench/gpu_check.py "$@"
