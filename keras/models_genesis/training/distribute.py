"""Several devices or machines: `tf.distribute` strategies for Keras 3's TensorFlow backend.

This is the only module of the package that imports TensorFlow, and only inside its functions:
everything else runs on any Keras backend. `"none"` needs no TensorFlow at all.

- `"mirrored"`: `tf.distribute.MirroredStrategy` over all GPUs, or over all logical CPU devices
  when there is no GPU (split one CPU into several with `split_cpu` before TensorFlow starts).
- `"multiworker"`: `tf.distribute.MultiWorkerMirroredStrategy`; the cluster comes from the
  `TF_CONFIG` environment variable, and the strategy must be created before any other
  TensorFlow operation runs in the process. Keras 3's `fit` cannot train under it (its TensorFlow
  trainer reduces the distributed first batch eagerly and the scalar step logs along axis 0), so
  `fit_distributed` trains with its own loop, driving the same Keras callbacks.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Optional, Sequence, Tuple

import keras
import numpy as np

from models_genesis.config import STRATEGIES


def _require_tensorflow_backend(name: str) -> None:
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
    # TensorFlow-only code: imported here so that the module loads on any Keras backend.
    import tensorflow as tf

    if int(n) < 1:
        raise ValueError(f"`n` must be a positive integer. Received: n={n!r}.")
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(int(n))])


def logical_devices() -> list:
    """TensorFlow's logical GPUs, or its logical CPUs when there is no GPU (what `"mirrored"`
    spreads over), as `"gpu:0"`-style names."""
    # TensorFlow-only code: imported here so that the module loads on any Keras backend.
    import tensorflow as tf

    found = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [f"{d.device_type.lower()}:{d.name.rsplit(':', 1)[-1]}" for d in found]


def gpu_compute_capabilities() -> list:
    """`(major, minor)` of each GPU TensorFlow sees (empty without a GPU)."""
    # TensorFlow-only code: imported here so that the module loads on any Keras backend.
    import tensorflow as tf

    return [tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)))
            for gpu in tf.config.list_physical_devices("GPU")]


def get_strategy(name: str = "none", devices: Optional[int] = None):
    """Return the `tf.distribute` strategy called `name`, or None for `"none"`.

    Args:
        name: `"none"`, `"mirrored"` or `"multiworker"`.
        devices: for `"mirrored"`, mirror over the first `devices` devices (None: all).

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
    # TensorFlow-only code: imported here so that the module loads on any Keras backend.
    import tensorflow as tf

    if name == "mirrored":
        found = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in found][:devices])
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



def _replica_batches(strategy, dataset, step: int):
    """Per-replica `(x, y, w)`: replica r of `R` takes batch `step * R + r` of `dataset`, so a
    batch's content still depends only on (seed, epoch, index). A replica past the last batch
    gets batch 0 with weight 0 (used for validation only)."""
    # TensorFlow-only code: imported here so that the module loads on any Keras backend.
    import tensorflow as tf

    def batch(context):
        index = step * context.num_replicas_in_sync + context.replica_id_in_sync_group
        x, y = dataset[index if index < len(dataset) else 0]
        w = np.full(len(x), float(index < len(dataset)), np.float32)
        return tf.constant(x), tf.constant(y), tf.constant(w)

    return strategy.experimental_distribute_values_from_function(batch)


def _replica_steps(strategy, model, loss: str):
    """Return tf.functions `(train_step, eval_step, average_statistics)`: the steps map
    `_replica_batches` to the all-reduced `(sum of per-cube losses, number of cubes)`;
    `average_statistics` sets the non-trainable variables of every replica to their mean."""
    # TensorFlow-only code: imported here so that the module loads on any Keras backend.
    import tensorflow as tf

    loss_fn = keras.losses.get(loss)

    def per_cube(y, pred):  # (B,) mean loss over each cube
        values = loss_fn(y, tf.cast(pred, y.dtype))
        return tf.reduce_mean(tf.reshape(values, [tf.shape(y)[0], -1]), axis=1)

    def train_replica(x, y, w):
        count = tf.distribute.get_replica_context().all_reduce("SUM", tf.reduce_sum(w))
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(w * per_cube(y, model(x, training=True)))
            # Gradients are summed over replicas: dividing by the global count gives the mean.
            value = total / count + sum(model.losses) / strategy.num_replicas_in_sync
            scaled = model.optimizer.scale_loss(value)
        grads = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return total, tf.reduce_sum(w)

    def eval_replica(x, y, w):
        return tf.reduce_sum(w * per_cube(y, model(x, training=False))), tf.reduce_sum(w)

    def distributed(replica_fn):
        @tf.function(reduce_retracing=True)
        def step(batch):
            sums = strategy.run(replica_fn, args=batch)
            return [strategy.reduce("SUM", v, axis=None) for v in sums]
        return step

    def average_replica():  # each replica updates its own copy of the BN moving statistics
        context = tf.distribute.get_replica_context()
        for v in model.non_trainable_variables:
            if "float" in str(v.dtype):
                v.assign(context.all_reduce("MEAN", tf.identity(v.value)))

    average = tf.function(lambda: strategy.run(average_replica))
    return distributed(train_replica), distributed(eval_replica), average


def _steps_per_epoch(n_batches: int, n_replicas: int) -> int:
    """The training steps of one epoch: each of the `n_replicas` replicas takes one of the
    `n_batches` batches per step; the batches left over are left out (said aloud).

    Raises:
        ValueError: fewer batches than replicas.
    """
    steps = n_batches // n_replicas
    if steps < 1:
        raise ValueError(f"The training set must have at least one batch per replica "
                         f"({n_replicas}). Received: {n_batches} batches.")
    if n_batches % n_replicas:
        print(f"fit_distributed: {n_batches % n_replicas} of {n_batches} training batches per "
              f"epoch are left out, so that each of the {n_replicas} replicas runs {steps} "
              f"steps.")
    return steps


def fit_distributed(strategy, model, train, val, *, epochs: int, loss: str = "mse",
                    callbacks: Sequence[keras.callbacks.Callback] = (), verbose="auto"):
    """Train `model` under `strategy` with its own loop: `model.fit` for MultiWorkerMirroredStrategy.

    Each training step, replica r of the `R` replicas (over all workers) takes batch
    `step * R + r` of `train`; gradients are summed over replicas from the loss divided by the
    cubes of the whole step, so the step minimises the mean loss of its `R` batches. An epoch is
    `len(train) // R` steps (the remaining batches are left out, said aloud: every replica must
    run the same steps). Each replica updates the BatchNormalization moving statistics from its
    own batches; at the end of each epoch they are averaged over replicas, so all workers hold
    the same weights. The validation loss is the mean over all cubes of `val`, all-reduced.
    Callbacks get the calls and logs (`loss`, `val_loss`, `learning_rate`) of `fit`, so
    checkpoints, early stopping, the learning-rate schedule and logs behave as with `fit`.

    Args:
        strategy: a `tf.distribute` strategy; `model` was built and compiled in its scope.
        model: a compiled Keras model mapping `x` batches to `y` batches.
        train, val: indexable datasets of `(x, y)` batches (e.g. `RestorationDataset`); their
            epoch is set by the callbacks (`EpochSetter`).
        epochs: train up to this epoch (a callback may set `model._initial_epoch` to resume).
        loss: Keras loss name, averaged over each example.
        callbacks: Keras callbacks.
        verbose: progress bar like `fit`'s (0: none).

    Returns:
        The `keras.callbacks.History` of the run.
    """
    n = strategy.num_replicas_in_sync
    steps = _steps_per_epoch(len(train), n)
    with strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    train_step, eval_step, average_statistics = _replica_steps(strategy, model, loss)
    cbs = keras.callbacks.CallbackList(list(callbacks), add_history=True,
                                       add_progbar=verbose != 0, verbose=verbose, epochs=epochs,
                                       steps=steps, model=model)
    model.stop_training, logs = False, {}
    cbs.on_train_begin()
    for epoch in range(model._initial_epoch or 0, epochs):
        cbs.on_epoch_begin(epoch)
        train_sums = np.zeros(2)
        for step in range(steps):
            cbs.on_train_batch_begin(step)
            train_sums += [float(v) for v in train_step(_replica_batches(strategy, train, step))]
            cbs.on_train_batch_end(step, {"loss": train_sums[0] / train_sums[1]})
        average_statistics()
        val_sums = sum(np.array([float(v) for v in eval_step(_replica_batches(strategy, val, s))])
                       for s in range(-(-len(val) // n)))
        logs = {"loss": train_sums[0] / train_sums[1], "val_loss": val_sums[0] / val_sums[1],
                "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))}
        cbs.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    cbs.on_train_end(logs)
    return model.history
