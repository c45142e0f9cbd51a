#!/usr/bin/env bash
# Wheels for running benchmarks/gpu_check.sh on a GPU machine with no network
# whose Python already holds a CUDA build of torch (and numpy, grpcio's
# usual neighbours): everything else this project imports, for CPython
# ${PYVER:-3.12} on manylinux x86_64, into ${1:-.whl}. Versions are the ones
# this checkout's .venv holds, so both sides run the same code.
#
#   bash tools/gpu_wheels.sh .whl      # here, with network
#   WHEELS=.whl bash benchmarks/gpu_check.sh   # there
set -euo pipefail
DEST=${1:-.whl}
PY=${PY:-.venv/bin/python}
PYVER=${PYVER:-3.12}
mkdir -p "$DEST"
PLATFORMS=()
for p in manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 \
         manylinux_2_17 manylinux2014 manylinux_2_5 manylinux1; do
    PLATFORMS+=(--platform "${p}_x86_64")
done
version() { "$PY" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
for name in hjson pydantic pydantic_core annotated-types typing-inspection lmdb zstandard \
            pydicom pyedflib pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle \
            wfdb soundfile grpcio grpcio-health-checking grpcio-reflection protobuf; do
    v=$(version "$name")
    [ -n "$v" ] || { echo "gpu_wheels: $name is not installed in $PY's environment" >&2; exit 1; }
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
        --implementation cp "${PLATFORMS[@]}" -d "$DEST" "$name==$v"
done
# DeepSpeed publishes a source distribution only: build its pure-Python
# wheel here (ops are JIT-built on the GPU machine; DS_ACCELERATOR=cuda there).
DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" \
    "deepspeed==$(version deepspeed)"
du -sh "$DEST"
