#!/usr/bin/env bash
# The GPU check (issue 13): the trainer on GPUs with NCCL and bf16, fed by
# engines on this machine's CPU cores, against the same model with no data
# path. Run from the repository root on a machine with NVIDIA GPUs:
#
#   bash benchmarks/gpu_check.sh [python -m benchmarks gpu options]
#
# Installs what is missing first: the CUDA build of torch (the default
# `torch` wheel on PyPI for Linux x86_64 is built for CUDA), then this
# project. With WHEELS=DIR set, the packages come from DIR's wheels alone,
# with no index (for machines without network), into a private target
# directory. Figures: printed, and bench-output/gpu_check.json.
set -euo pipefail
PY=${PYTHON:-python3}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: installing the CUDA build of torch"
    "$PY" -m pip install -q torch
fi
if [ -n "${WHEELS:-}" ]; then
    SITE=${SITE:-/tmp/medstream-site}
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
elif ! "$PY" -c 'import dataengine, trainer, deepspeed' 2>/dev/null; then
    "$PY" -m pip install -q -e .
fi
"$PY" -c 'import torch; print("gpu_check: torch", torch.__version__, "CUDA", torch.version.cuda, "devices", torch.cuda.device_count())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# DeepSpeed picks its accelerator at import; a wheel built on a CPU host
# may remember "cpu".
export DS_ACCELERATOR=cuda
export PYTHONUNBUFFERED=1
exec "$PY" -m benchmarks gpu "$@"
