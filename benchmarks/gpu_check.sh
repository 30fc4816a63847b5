#!/usr/bin/env bash
# One device check that fits in minutes (benchmarks/gpu_check.py prints the table):
#
#     bash benchmarks/gpu_check.sh                        # the GPU, paper shapes (H200: < 8 min)
#     bash benchmarks/gpu_check.sh --device cpu --tiny    # the CPU, tiny shapes (a minute)
#     bash benchmarks/gpu_check.sh --budget-s 300 --json /tmp/gpu_check.json
#
# Flags go to `python -m benchmarks.gpu_check` (--device cpu|cuda|auto, --tiny, --budget-s,
# --max-batch, --peak-tflops, --json). On a machine without a package registry, the Python
# packages the check needs and the machine lacks come from benchmarks/wheels/ (filled here
# first by `bash benchmarks/gpu_wheels.sh`): when the imports fail and that folder holds
# wheels, they are installed without network into $GPU_CHECK_SITE (default
# /tmp/gpu_check_site), which goes first on PYTHONPATH.
# The interpreter: $PYTHON, else this checkout's .venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${PYTHON:-}" ]]; then
    PY=$PYTHON
elif [[ -x .venv/bin/python ]]; then
    PY=.venv/bin/python
else
    PY=python3
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
NEEDS="import diffusers, pydantic, ffmpeg, yaml, pandas, pyarrow, scipy, cv2, accelerate"
if ! "$PY" -c "$NEEDS" 2>/dev/null; then
    shopt -s nullglob
    wheels=(benchmarks/wheels/*.whl)
    if (( ${#wheels[@]} == 0 )); then
        echo "gpu_check: missing Python packages and no wheels in benchmarks/wheels/;" \
             "run 'bash benchmarks/gpu_wheels.sh' where pip reaches PyPI, then carry that" \
             "folder" >&2
        "$PY" -c "$NEEDS"  # names the missing module
        exit 1
    fi
    SITE=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "${wheels[@]}"
    export PYTHONPATH="$SITE:$PYTHONPATH"
    "$PY" -c "$NEEDS"
fi
exec "$PY" -m benchmarks.gpu_check "$@"
