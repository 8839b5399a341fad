#!/usr/bin/env bash
# The GPU run (python -m bench.gpu) on a machine with JAX and a GPU but no
# Keras and no network, such as the lent H200 (Python 3.12, JAX 0.11, no
# TensorFlow).
#
#   bash bench/gpu_device.sh prepare   # here: the wheels it lacks into wheels/ (git-ignored, about 3 MB)
#   bash bench/gpu_device.sh run       # there, with wheels/ carried: installs them, runs, writes $OUT
#
# With the device tool: run(command="bash bench/gpu_device.sh run", carry=["wheels"], timeout_s=480).
# BUDGET (seconds, default 330) stops starting new models, so the call ends in
# time with what it measured; results are appended to $OUT/gpu.jsonl as each
# model finishes. Every model at 224 px is measured before any at 512.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
    # Keras itself, and what Keras needs that the machine's image lacks (its package list: namex, optree).
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d wheels \
        "keras==$(python3 -c 'import keras; print(keras.__version__)' 2>/dev/null || echo 3.15.1)" namex optree
    ls -l wheels
    ;;
run)
    OUT="${OUT:-/tmp/gpu-out}"
    mkdir -p "$OUT"
    site=/tmp/keras-site
    python3 -m pip install --quiet --no-index --no-deps --target "$site" wheels/*.whl
    export PYTHONPATH="$site:$PWD" KERAS_BACKEND=jax
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.csv"
    python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
    python3 -m bench.gpu --time-budget "${BUDGET:-330}" --out "$OUT/gpu.jsonl" 2>&1 \
        | grep -v "^WARNING: All log messages before absl" | tee "$OUT/gpu.log"
    ;;
*)
    echo "usage: bash bench/gpu_device.sh prepare|run" >&2
    exit 2
    ;;
esac
