"""Training on several accelerators, on any Keras backend: placement checks and data parallelism.

One count, `devices` (an integer or `"auto"`: every device present), says how many devices a
run's global batch is split over; each device takes `batch_size / devices` examples of every batch
and the gradient is that of the whole batch, so N devices take the steps one device takes with the
same global batch (up to float summation order).

- JAX: Keras' own distribution API, `keras.distribution.DataParallel` over the first N devices
  (`data_parallel`): variables replicated, each batch split along its first axis. Validation and
  prediction run on the replicated weights without the split (`EvaluateWithoutSplit`,
  `without_split`), so a last batch of any size is scored.
- TensorFlow: `tf.distribute.MirroredStrategy` over the first N devices (`training.distribute`, the
  only module that imports TensorFlow; `strategy="multiworker"` spans machines).
- PyTorch: one device.

The checks (`resolve_devices`, `check_mixed_precision`, `device_groups`) run before any work, and
raise `ValueError` naming the option: the CLI passes its flag names (`--devices`), so its one-line
error names the flag.
"""

from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Union

import keras

from models_genesis.config import MIXED_PRECISION, parse_devices
from models_genesis.training import distribute

# Field name -> how an error names it; the CLI passes its flags (`{"devices": "--devices"}`).
FIELD_NAMES = {"devices": "devices", "batch_size": "batch_size",
               "mixed_precision": "mixed_precision", "parallel_runs": "parallel_runs"}


def _label(names: Optional[Dict[str, str]], key: str) -> str:
    return {**FIELD_NAMES, **(names or {})}[key]


def _received(names, key: str, value) -> str:
    label = _label(names, key)
    return f"{label} {value}" if label.startswith("--") else f"{label}={value!r}"


def available_devices() -> List[str]:
    """The devices the current backend trains on, as `"gpu:0"`-style names: the accelerators
    (GPUs, TPUs) when there are any, else the CPU devices (JAX: several with
    `XLA_FLAGS=--xla_force_host_platform_device_count=N`; TensorFlow: its logical CPUs)."""
    backend = keras.backend.backend()
    if backend == "jax":
        return list(keras.distribution.list_devices())
    if backend == "tensorflow":
        return distribute.logical_devices()
    if backend == "torch":
        import torch  # the torch backend's own library

        return [f"gpu:{i}" for i in range(torch.cuda.device_count())] or ["cpu:0"]
    return ["cpu:0"]


def gpu_compute_capabilities() -> List[tuple]:
    """`(major, minor)` of each GPU the backend sees (empty without a GPU)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax  # the JAX backend's own library

        return [tuple(int(v) for v in str(d.compute_capability).split(".")[:2])
                for d in jax.devices() if d.platform == "gpu"]
    if backend == "tensorflow":
        return distribute.gpu_compute_capabilities()
    if backend == "torch":
        import torch

        return [tuple(torch.cuda.get_device_capability(i))
                for i in range(torch.cuda.device_count())]
    return []


def resolve_devices(devices: Union[int, str], batch_size: int, *,
                    names: Optional[Dict[str, str]] = None, present: Optional[list] = None) -> int:
    """Check a run's device count against the devices present and the batch size; return it.

    Args:
        devices: a positive integer, or `"auto"`: every device of `available_devices()`.
        batch_size: the global batch, split evenly over the devices.
        names: how errors name the options (the CLI: `{"devices": "--devices", ...}`).
        present: the devices (default: `available_devices()`).

    Raises:
        ValueError: `devices` is not a positive integer or `"auto"`, exceeds the devices present,
            asks for several devices under a backend without data parallelism (PyTorch), or does
            not divide `batch_size`.
    """
    try:
        devices = parse_devices(devices)
    except ValueError:
        raise ValueError(f"{_label(names, 'devices')} must be a positive integer or 'auto'. "
                         f"Received: {_received(names, 'devices', devices)}.") from None
    present = available_devices() if present is None else list(present)
    n = len(present) if devices == "auto" else devices
    if n > len(present):
        raise ValueError(
            f"{_label(names, 'devices')} must be at most the {len(present)} device(s) present "
            f"({', '.join(present)}; backend {keras.backend.backend()}). "
            f"Received: {_received(names, 'devices', devices)}.")
    if n > 1 and keras.backend.backend() not in ("jax", "tensorflow"):
        raise ValueError(
            f"{_label(names, 'devices')} above 1 needs the JAX backend (keras.distribution) or "
            f"TensorFlow (tf.distribute); backend {keras.backend.backend()!r} trains on one "
            f"device. Received: {_received(names, 'devices', devices)}.")
    if int(batch_size) % n:
        raise ValueError(
            f"{_label(names, 'batch_size')} must be divisible by the {n} devices of "
            f"{_label(names, 'devices')} (each device takes an equal share of every batch). "
            f"Received: {_received(names, 'batch_size', batch_size)}.")
    return n


def check_mixed_precision(name: Optional[str], *, names: Optional[Dict[str, str]] = None,
                          present: Optional[list] = None,
                          capabilities: Optional[list] = None) -> None:
    """Refuse a mixed precision the devices cannot compute in.

    `fp16` needs a GPU: CPUs (and TPUs) have no float16 arithmetic, so Keras would emulate it,
    slower than float32. `bf16` on GPUs needs compute capability 8.0 or newer (Ampere: A100,
    H100); CPUs run it (TensorFlow's CPU bf16 Conv3D gradient has a known fault, warned about by
    `pretrain`).

    Raises:
        ValueError: an unknown name, or one the devices cannot compute in.
    """
    if name is None:
        return
    label = _label(names, "mixed_precision")
    if name not in MIXED_PRECISION:
        raise ValueError(f"{label} must be one of {list(MIXED_PRECISION)} or none. "
                         f"Received: {_received(names, 'mixed_precision', name)}.")
    present = available_devices() if present is None else list(present)
    kind = present[0].split(":")[0]
    backend = keras.backend.backend()
    if name == "fp16" and kind != "gpu":
        raise ValueError(
            f"{label} fp16 needs a GPU: the {kind.upper()} of this machine (backend {backend}) "
            "has no float16 arithmetic (it would be emulated, slower than float32); use bf16 or "
            f"none. Received: {_received(names, 'mixed_precision', name)}.")
    if name == "bf16" and kind == "gpu":
        caps = gpu_compute_capabilities() if capabilities is None else list(capabilities)
        old = sorted({c for c in caps if tuple(c) < (8, 0)})
        if old:
            raise ValueError(
                f"{label} bf16 needs GPUs of compute capability 8.0 or newer (A100, H100); this "
                f"machine's: {', '.join('.'.join(map(str, c)) for c in old)}. Use fp16 or none. "
                f"Received: {_received(names, 'mixed_precision', name)}.")


def device_groups(parallel_runs: int, devices: Union[int, str], *,
                  names: Optional[Dict[str, str]] = None,
                  present: Optional[list] = None) -> List[Optional[List[int]]]:
    """The devices of each of `parallel_runs` runs trained at once.

    On accelerators, run k gets its own `devices` of them (GPU indices, which it is given as
    `CUDA_VISIBLE_DEVICES`), so `parallel_runs * devices` must not exceed the devices present.
    On CPUs, parallel runs are processes sharing the CPU: every group is None (all devices).

    Raises:
        ValueError: `parallel_runs` is not a positive integer, or more devices are asked for
            than present.
    """
    if isinstance(parallel_runs, bool) or int(parallel_runs) != parallel_runs or parallel_runs < 1:
        raise ValueError(f"{_label(names, 'parallel_runs')} must be a positive integer. "
                         f"Received: {_received(names, 'parallel_runs', parallel_runs)}.")
    present = available_devices() if present is None else list(present)
    devices = parse_devices(devices)
    if present[0].startswith("cpu"):
        return [None] * int(parallel_runs)
    per_run = len(present) // int(parallel_runs) if devices == "auto" else devices
    if per_run < 1 or per_run * int(parallel_runs) > len(present):
        raise ValueError(
            f"{_label(names, 'parallel_runs')} {parallel_runs} runs of {per_run or devices} "
            f"device(s) each need more than the {len(present)} device(s) present "
            f"({', '.join(present)}); lower {_label(names, 'parallel_runs')} or "
            f"{_label(names, 'devices')}. Received: "
            f"{_received(names, 'parallel_runs', parallel_runs)}.")
    indices = [int(p.split(":")[1]) for p in present]
    return [indices[k * per_run:(k + 1) * per_run] for k in range(int(parallel_runs))]


def check_options(strategy: str, devices: Union[int, str], batch_size: int,
                  mixed_precision: Optional[str], *,
                  names: Optional[Dict[str, str]] = None) -> None:
    """The checks of `placement` without creating anything, for a command line to run first
    with its flag names. With a tf.distribute `strategy` the devices are the strategy's: it must
    be created before TensorFlow lists any device, so the checks wait for `placement`."""
    if strategy != "none":
        return
    resolve_devices(devices, batch_size, names=names)
    check_mixed_precision(mixed_precision, names=names)


def _distribution(n: int):
    """`keras.distribution.DataParallel` over the first `n` devices (JAX), or None."""
    if n <= 1 or keras.backend.backend() != "jax":
        return None
    return keras.distribution.DataParallel(devices=available_devices()[:n])


@contextlib.contextmanager
def data_parallel(n: int):
    """Under JAX with `n > 1`: build, compile and `fit` inside this scope to split every batch
    over the first `n` devices (`keras.distribution.DataParallel`); the previous distribution is
    restored on exit. A no-op otherwise (TensorFlow uses `training.distribute`)."""
    distribution = _distribution(n)
    if distribution is None:
        yield None
        return
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(distribution)
    try:
        yield distribution
    finally:
        keras.distribution.set_distribution(previous)


@contextlib.contextmanager
def without_split():
    """Evaluate or predict on the replicated weights without splitting batches over devices
    (under `data_parallel`, a batch whose size the device count does not divide cannot be
    split)."""
    previous = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if previous is None:
        yield
        return
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


class EvaluateWithoutSplit(keras.callbacks.Callback):
    """`fit`'s validation without the split of `data_parallel` (see `without_split`): the
    distribution is lifted at `on_test_begin` and set again at `on_test_end`."""

    def __init__(self):
        super().__init__()
        self._scope = None

    def on_test_begin(self, logs=None):
        self._scope = without_split()
        self._scope.__enter__()

    def on_test_end(self, logs=None):
        if self._scope is not None:
            self._scope.__exit__(None, None, None)
            self._scope = None


def whole_batch_samples(n_samples: int, batch_size: int, n_devices: int) -> int:
    """How many of `n_samples` training samples an epoch can use so that every batch splits
    evenly over `n_devices`: all of them, unless the last, partial batch's size is not divisible
    by `n_devices` (then that batch is left out)."""
    last = int(n_samples) % int(batch_size)
    if n_devices <= 1 or last % n_devices == 0:
        return int(n_samples)
    return int(n_samples) - last


class _WholeBatches(keras.utils.PyDataset):
    """The first `n_batches` batches of a `PyDataset` (its loading options and epoch hook kept)."""

    def __init__(self, dataset, n_batches: int):
        super().__init__(workers=dataset.workers, use_multiprocessing=dataset.use_multiprocessing,
                         max_queue_size=dataset.max_queue_size)
        self.dataset, self.n_batches = dataset, int(n_batches)

    def __len__(self):
        return self.n_batches

    def __getitem__(self, index):
        return self.dataset[index]

    def on_epoch_end(self):
        self.dataset.on_epoch_end()


def whole_batches(dataset, n_samples: int, batch_size: int, n_devices: int):
    """`dataset` (batches of `batch_size` over `n_samples`, the last one maybe partial) without a
    last batch that `n_devices` cannot share evenly (`whole_batch_samples`); said aloud."""
    kept = whole_batch_samples(n_samples, batch_size, n_devices)
    if kept == n_samples:
        return dataset
    print(f"{n_samples - kept} of {n_samples} training samples per epoch left out: the last "
          f"batch cannot be split evenly over {n_devices} devices.")
    return _WholeBatches(dataset, kept // int(batch_size))


def check_even_validation(n_samples: int, batch_size: int, n_replicas: int) -> None:
    """Under a tf.distribute strategy, refuse a validation set whose last batch the replicas
    cannot share evenly: Keras' TensorFlow trainer fails on it mid-training (measured with
    TensorFlow 2.21: "Inputs to operation AddN ... must have the same size and shape"). JAX
    validates such batches without the split (`EvaluateWithoutSplit`)."""
    last = int(n_samples) % int(batch_size)
    if last % int(n_replicas):
        raise ValueError(
            f"Under a tf.distribute strategy over {n_replicas} replicas the last validation batch "
            f"({last} of {n_samples} samples, batch_size={batch_size}) must split evenly over "
            "the replicas: choose a batch size for which it does, or use the JAX backend. "
            f"Received: {n_samples} validation samples.")


class Placement:
    """Where a run trains: `strategy` (a `tf.distribute` strategy or None), `n_devices` (the
    devices or replicas a batch is split over) and `scope()` to build, compile and fit in."""

    def __init__(self, strategy, n_devices: int):
        self.strategy = strategy
        self.n_devices = int(n_devices)

    @property
    def splits_with_keras(self) -> bool:
        """True where `keras.distribution.DataParallel` splits the batches (JAX, devices > 1)."""
        return self.strategy is None and self.n_devices > 1 and keras.backend.backend() == "jax"

    def build_scope(self):
        """Scope for building and compiling the model (the strategy's, else none)."""
        return distribute.strategy_scope(self.strategy)

    def scope(self):
        """Scope of the whole run (`data_parallel` under JAX)."""
        return data_parallel(self.n_devices if self.splits_with_keras else 1)

    def callbacks(self) -> list:
        return [EvaluateWithoutSplit()] if self.splits_with_keras else []


def placement(strategy: str, devices: Union[int, str], batch_size: int,
              mixed_precision: Optional[str] = None, *,
              names: Optional[Dict[str, str]] = None) -> Placement:
    """Check and set up where a run trains (before any other work).

    `strategy` (`"none"`, `"mirrored"`, `"multiworker"`: tf.distribute, TensorFlow only) is
    created first (MultiWorkerMirroredStrategy must precede every other TensorFlow operation);
    with `"none"`, `devices` above 1 means `keras.distribution.DataParallel` under JAX and a
    `MirroredStrategy` over that many devices under TensorFlow.

    Raises:
        ValueError: see `resolve_devices`, `check_mixed_precision`, `distribute.get_strategy`.
    """
    chosen = distribute.get_strategy(strategy)
    if chosen is not None:
        n = distribute.replicas(chosen)
    else:
        n = resolve_devices(devices, batch_size, names=names)
        if n > 1 and keras.backend.backend() == "tensorflow":
            chosen = distribute.get_strategy("mirrored", devices=n)
    check_mixed_precision(mixed_precision, names=names)
    return Placement(chosen, n)
