#!/usr/bin/env bash
# One prepared GPU check (the lent H100/H200 has no TensorFlow: Keras 3 runs under JAX there).
# Usage on the device machine, from the repository root, with Keras' wheels carried in .whl/:
#   bash benchmarks/gpu_check.sh            # writes logs under ${OUT:-/tmp/gpu_check}
# It times pre-training steps alone against steps fed by the on-the-fly generator
# (benchmarks/pretrain_throughput.py) at the release size, mixed precision bf16, batch 32 and 64.
# JAX's compilation cache (under $OUT) spares the later runs a recompilation of the same step.
# Then benchmarks/device_scaling.py: pre-training and fine-tuning steps (samples/s) on 1 device
# and on all devices (keras.distribution.DataParallel), with the scaling ratio.
# Without a GPU it runs on CPU devices, e.g. two virtual ones, only the scaling part, tiny:
#   XLA_FLAGS=--xla_force_host_platform_device_count=2 GPU_CHECK_ONLY=scaling \
#   SCALING_ARGS="--cube-shape 16 16 8 --n-base-filters 2 --batch-size 2 --steps 2 --warmup 1" \
#   bash benchmarks/gpu_check.sh
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/keras:$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=${KERAS_BACKEND:-jax}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR="$OUT/jax_cache" JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=1
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
else
  echo "no nvidia-smi: no NVIDIA GPU on this machine" | tee "$OUT/gpu.txt"
fi
"${PYTHON:-python3}" -c "import jax, keras, numpy; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
PYTHON=${PYTHON:-python3}
run() {  # name, seconds allowed, script, then its arguments
  local name=$1 limit=$2 script=$3; shift 3
  echo "== $name: $script $*" | tee "$OUT/$name.txt"
  timeout "$limit" "$PYTHON" "benchmarks/$script" "$@" 2>&1 | grep -v "^W0000\|^I0000" | tee -a "$OUT/$name.txt" | tail -7
}
if [ "${GPU_CHECK_ONLY:-all}" = all ]; then
  run bf16_threads 170 pretrain_throughput.py --mixed-precision bf16 --batch-size 32 --workers 14 --steps 40 --warmup 5
  run bf16_threads_b64 240 pretrain_throughput.py --mixed-precision bf16 --batch-size 64 --workers 14 --steps 20 --warmup 3
  run bf16_processes 170 pretrain_throughput.py --mixed-precision bf16 --batch-size 32 --workers 14 --multiprocessing --steps 40 --warmup 5
fi
# 1 device against all devices, release size, bf16, 16 samples per device and step.
# shellcheck disable=SC2086  # SCALING_ARGS: several words on purpose
run scaling 400 device_scaling.py ${SCALING_ARGS:---mixed-precision bf16 --batch-size 16 --steps 20 --warmup 3}
