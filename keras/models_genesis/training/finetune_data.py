"""What a fine-tuning run reads and records about its data: loading with the run's loader options,
the checks of in-memory splits before training (`validate_target_data`), the lazily read
candidate crops of a prepared NCC/ECC folder, and the run's `TargetTask`.

The run's `TargetTask` (`run_task`) is the registered task with the values this run used: its
crop, the spacing its scans were resampled to and the crop scale. `finetune` writes it as
`task.json` next to the model, and `predict-volume --model RUN` reads it back.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from models_genesis.data.target_tasks import load_target_data


def load_run_data(config, task):
    """Load `config.data_dir` with `config.data_options` (and `config.fold`)."""
    if not config.data_dir:
        raise ValueError("Give `data` or `config.data_dir`. Received: data=None, data_dir=None.")
    options = dict(config.data_options or {})
    if config.fold is not None:
        options.setdefault("fold", config.fold)
    return load_target_data(task.code, config.data_dir, seed=config.seed,
                            input_shape=config.input_shape, **options)


def is_lazy(data) -> bool:
    """True for crops read from disk batch by batch (`CandidateData` of a prepared folder)."""
    return hasattr(data, "dataset") and hasattr(data, "rows")


def check_candidate_data(data, config, explicit_shape=None):
    """Check a `CandidateData` (both classes in train and test) and apply `label_fraction`."""
    shape = tuple(data.input_shape)
    if explicit_shape is not None and tuple(explicit_shape) != shape:
        raise ValueError(f"The prepared crops are {shape}; `input_shape` must match. "
                         f"Received: input_shape={tuple(explicit_shape)}.")
    if any(s % 8 for s in shape):
        raise ValueError(f"Crops must be divisible by 8 in every axis. Received: crop {shape}.")
    for name in ("train", "valid", "test"):
        labels = data.labels[data.rows[name]]
        if not len(labels):
            raise ValueError(f"The {name} split of the prepared {data.task} folder is empty.")
        if name != "valid" and np.unique(labels).size < 2:
            raise ValueError(f"The {name} split must hold both classes (0 and 1) to train and to "
                             f"compute the AUC. Received: only {np.unique(labels).tolist()}.")
    if config.label_fraction < 1.0:
        data = data.subsample(config.label_fraction,
                              rng=np.random.default_rng([config.seed, 0x1ABE1]))
    return data


def task_for_data(task, data):
    """`task` with the fields its data set fixes (task `custom`: kind, channels, classes; the
    loader's `info["task_fields"]`); other tasks unchanged."""
    fields = (getattr(data, "info", None) or {}).get("task_fields")
    return dataclasses.replace(task, **fields) if fields else task


def run_task(task, data, config, spatial):
    """The run's `TargetTask`: `task` with the crop, spacing and crop scale this run used."""
    info = getattr(data, "info", None) or {}
    options = dict(config.data_options or {})
    if "prepared" in info:
        spacing = info["prepared"].get("spacing")
    elif "spacing" in info:
        spacing = info["spacing"]
    else:
        spacing = options.get("spacing", task.spacing)
    crop_scale = info.get("crop_scale", options.get("crop_scale", task.crop_scale))
    return dataclasses.replace(task, input_shape=tuple(int(s) for s in spatial),
                               spacing=None if spacing is None else tuple(spacing),
                               crop_scale=float(crop_scale))


SPLITS = ("train", "valid", "test")  # a TargetData's splits, in this order


def check_split(data, split: str, kind: str, spatial, *, n_channels: int = 1,
                n_classes: int = 1) -> tuple:
    """Return (x, y) of one split as float32 channels_last arrays, or raise ValueError.

    `n_channels` input channels; labels 0/1 with `n_classes=1` (sigmoid), else class indices
    0..n_classes-1 (softmax; masks `(N, rows, cols, deps, 1)`)."""
    x, y = getattr(data, f"x_{split}", None), getattr(data, f"y_{split}", None)
    if x is None or y is None:
        raise ValueError(f"`data` must provide x_{split} and y_{split}. Received: "
                         f"x_{split}={type(x).__name__}, y_{split}={type(y).__name__}.")
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 5 or x.shape[-1] != n_channels or x.shape[0] == 0:
        raise ValueError(f"`x_{split}` must be a non-empty (N, rows, cols, deps, {n_channels}) "
                         f"array (channels_last). Received: x_{split}.shape={x.shape}.")
    if spatial is not None and tuple(x.shape[1:4]) != tuple(spatial):
        raise ValueError(f"`x_{split}` crops must be {tuple(spatial)} (the training crop). "
                         f"Received: x_{split}.shape={x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"`x_{split}` holds NaN or infinite values.")
    if kind == "classification":
        if y.shape not in ((x.shape[0],), (x.shape[0], 1)):
            raise ValueError(f"`y_{split}` must hold one label per crop, shape ({x.shape[0]},). "
                             f"Received: y_{split}.shape={y.shape}.")
        y = y.reshape(-1)
    elif y.shape != x.shape[:4] + (1,):
        raise ValueError(f"`y_{split}` masks must be on the grid of `x_{split}`, shape "
                         f"{x.shape[:4] + (1,)}. Received: y_{split}.shape={y.shape}.")
    values = np.unique(y)
    allowed = np.arange(max(2, int(n_classes)))
    if not np.all(np.isin(values, allowed)):
        raise ValueError(f"`y_{split}` must hold the labels {allowed.tolist()}"
                         + (" (binary)" if n_classes == 1 else " (class indices)")
                         + f". Received values: {values[:10].tolist()}.")
    return x.astype(np.float32, copy=False), y.astype(np.float32, copy=False)


def validate_target_data(data, kind: str, input_shape=None, *, n_channels: int = 1,
                         n_classes: int = 1) -> dict:
    """Check a `TargetData` before training and return its splits as float32 arrays.

    Args:
        data: object with `x_train, y_train, x_valid, y_valid, x_test, y_test`; x of shape
            (N, rows, cols, deps, 1) in [0, 1]; y labels (N,) for classification or masks of the
            shape of x for segmentation, binary.
        kind: `"classification"` or `"segmentation"`.
        input_shape: expected crop (rows, cols, deps), or None to take the training crop.
        n_channels, n_classes: input channels, and the head's outputs (1: binary labels;
            more: class indices, see `check_split`).

    Returns:
        `{"train": (x, y), "valid": (x, y), "test": (x, y)}`; classification y as (N,).

    Raises:
        ValueError: a missing split, wrong shapes (masks on another grid), non-binary labels,
            a crop not divisible by 8, a training set with one class or only empty masks, a
            classification test set with one class (its AUC would be undefined).
    """
    spatial = None if input_shape is None else tuple(int(s) for s in input_shape)
    splits = {}
    for split in SPLITS:
        splits[split] = check_split(data, split, kind, spatial, n_channels=n_channels,
                                    n_classes=n_classes)
        spatial = splits[split][0].shape[1:4]
    if any(s % 8 for s in spatial):
        raise ValueError("Crops must be divisible by 8 in every axis (three 2x poolings of the "
                         f"U-Net). Received: crop {tuple(spatial)}.")
    check_labels(kind, splits["train"][1], "y_train")
    if kind == "classification":
        check_labels(kind, splits["test"][1], "y_test")
    return splits


def check_labels(kind: str, y, name: str) -> None:
    """Raise ValueError when labels `y` cannot train (one class; only empty masks)."""
    if kind == "classification" and np.unique(y).size < 2:
        raise ValueError(f"`{name}` must hold both classes (0 and 1) to train and to compute the "
                         f"AUC. Received: only {np.unique(y).tolist()}.")
    if kind == "segmentation" and not np.any(y):
        raise ValueError(f"Every mask of `{name}` is empty; there is no foreground to learn.")
