"""Several devices or machines: `tf.distribute` strategies for Keras 3's TensorFlow backend.

This is the only module of the package that imports TensorFlow, and only inside its functions:
everything else runs on any Keras backend. `"none"` needs no TensorFlow at all.

- `"mirrored"`: `tf.distribute.MirroredStrategy` over all GPUs, or over all logical CPU devices
  when there is no GPU (split one CPU into several with `split_cpu` before TensorFlow starts).
- `"multiworker"`: `tf.distribute.MultiWorkerMirroredStrategy`; the cluster comes from the
  `TF_CONFIG` environment variable, and the strategy must be created before any other
  TensorFlow operation runs in the process.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Optional, Tuple

from models_genesis.config import STRATEGIES


def _require_tensorflow_backend(name: str) -> None:
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"`strategy={name!r}` uses tf.distribute and needs the TensorFlow backend "
            f"(KERAS_BACKEND=tensorflow). Received: backend={keras.backend.backend()!r}."
        )


def split_cpu(n: int) -> None:
    """Split the first physical CPU into `n` logical devices (for `"mirrored"` on CPU).

    Must run before TensorFlow initialises its devices (before any tensor is created).

    Raises:
        RuntimeError: TensorFlow has already initialised its devices.
    """
    import tensorflow as tf

    if int(n) < 1:
        raise ValueError(f"`n` must be a positive integer. Received: n={n!r}.")
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(int(n))])


def get_strategy(name: str = "none"):
    """Return the `tf.distribute` strategy called `name`, or None for `"none"`.

    Args:
        name: `"none"`, `"mirrored"` or `"multiworker"`.

    Returns:
        None (single device, any backend) or a `tf.distribute.Strategy`; build and compile the
        model inside `strategy_scope(strategy)`.

    Raises:
        ValueError: unknown name, or a strategy other than `"none"` on a non-TensorFlow backend.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {list(STRATEGIES)}. Received: strategy={name!r}.")
    if name == "none":
        return None
    _require_tensorflow_backend(name)
    import tensorflow as tf

    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if "TF_CONFIG" not in os.environ:
        print("strategy 'multiworker': TF_CONFIG is not set, running as a single worker.")
    return tf.distribute.MultiWorkerMirroredStrategy()


def strategy_scope(strategy):
    """The scope to build and compile models in: `strategy.scope()`, or a no-op for None."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def replicas(strategy) -> int:
    """Number of replicas the global batch is split over (1 without a strategy)."""
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def worker_role(environ: Optional[dict] = None) -> Tuple[bool, int]:
    """Return `(is_chief, task_index)` from `TF_CONFIG` (a single process is the chief).

    The chief is task `chief` 0, or `worker` 0 when the cluster has no `chief` entry; only the
    chief writes the run's outputs, the other workers write to their own folders.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG")
    if not raw:
        return True, 0
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"TF_CONFIG must be JSON. Received: TF_CONFIG={raw!r}.") from exc
    task = tf_config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = "chief" in tf_config.get("cluster", {})
    is_chief = kind == "chief" or (kind == "worker" and index == 0 and not has_chief)
    return is_chief, index

