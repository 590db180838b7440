"""benchmarks/gpu_check.sh, unchanged, on CPU: its scaling part (benchmarks/device_scaling.py) in
a tiny configuration over two virtual JAX devices."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.large
def test_gpu_check_measures_scaling_on_two_virtual_cpu_devices(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               XLA_FLAGS="--xla_force_host_platform_device_count=2", GPU_CHECK_ONLY="scaling",
               SCALING_ARGS="--cube-shape 16 16 8 --n-base-filters 2 --batch-size 2 --steps 2 "
                            "--warmup 1", OUT=str(tmp_path), PYTHON=sys.executable)
    proc = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "scaling.txt") as f:
        text = f.read()
    assert "devices cpu:0, cpu:1" in text, text[-2000:]
    for step in ("pretrain", "finetune"):
        line = re.search(rf"^{step} +1 device \(baseline\): +([\d.]+) samples/s; 2 devices: +"
                         rf"([\d.]+) samples/s; scaling ratio ([\d.]+) \(ideal 2\)$", text, re.M)
        assert line, text[-2000:]
        one, two, ratio = (float(v) for v in line.groups())
        assert one > 0 and two > 0 and ratio == pytest.approx(two / one, abs=0.01)
    assert not (tmp_path / "bf16_threads.txt").exists()  # GPU_CHECK_ONLY=scaling
