#!/usr/bin/env bash
# Fill benchmarks/wheels/ with what benchmarks/gpu_check.sh installs on a machine that has no
# package registry: the device machine (Python 3.12, x86-64 Linux; torch, accelerate,
# transformers, numpy, pandas, pyarrow, scipy, opencv, pyyaml, safetensors and huggingface_hub
# are there already). Run it here, where pip reaches PyPI, from any directory:
#
#     bash benchmarks/gpu_wheels.sh
#
# It downloads, for CPython 3.12 on manylinux x86-64 and without dependencies, the versions this
# checkout's .venv holds (PYTHON=... to read another interpreter's) of:
#   diffusers, pydantic + pydantic_core, annotated-types, typing-inspection, typing_extensions,
#   importlib_metadata (diffusers' requirements), ffmpeg-python + future (pipeline.io.media).
# The folder ignores itself (its .gitignore holds "*"), so a device run names it in carry:
#     run(command="bash benchmarks/gpu_check.sh", carry=["benchmarks/wheels"])
# About 10 MB of the 64 MiB a run may carry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEST=benchmarks/wheels
PURE=(diffusers pydantic annotated-types typing-inspection typing_extensions importlib_metadata
      ffmpeg-python future)
BINARY=(pydantic_core)

version() { "$PY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1"; }

mkdir -p "$DEST"
printf '*\n' > "$DEST/.gitignore"
rm -f "$DEST"/*.whl
pure=() binary=()
for name in "${PURE[@]}"; do pure+=("$name==$(version "$name")"); done
for name in "${BINARY[@]}"; do binary+=("$name==$(version "$name")"); done
# Pure-Python wheels fit every interpreter (pip builds one where PyPI has only a source archive).
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$DEST" "${pure[@]}"
# Compiled ones for the device's interpreter and platform.
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$DEST" "${binary[@]}"
ls -1 "$DEST"/*.whl
du -sh "$DEST"
