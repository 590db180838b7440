#!/usr/bin/env bash
# One prepared GPU check (the lent H100/H200 has no TensorFlow: Keras 3 runs under JAX there).
# Usage on the device machine, from the repository root, with Keras' wheels carried in .whl/:
#   bash benchmarks/gpu_check.sh            # writes logs under ${OUT:-/tmp/gpu_check}
# It times pre-training steps alone against steps fed by the on-the-fly generator
# (benchmarks/pretrain_throughput.py) at the release size, mixed precision bf16, batch 32 and 64.
# JAX's compilation cache (under $OUT) spares the later runs a recompilation of the same step.
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
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, keras, numpy; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
run() {  # name, seconds allowed, then benchmark arguments
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" | tee "$OUT/$name.txt"
  timeout "$limit" python3 benchmarks/pretrain_throughput.py "$@" 2>&1 | grep -v "^W0000\|^I0000" | tee -a "$OUT/$name.txt" | tail -7
}
run bf16_threads 170 --mixed-precision bf16 --batch-size 32 --workers 14 --steps 40 --warmup 5
run bf16_threads_b64 240 --mixed-precision bf16 --batch-size 64 --workers 14 --steps 20 --warmup 3
run bf16_processes 170 --mixed-precision bf16 --batch-size 32 --workers 14 --multiprocessing --steps 40 --warmup 5
