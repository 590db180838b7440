"""What a fine-tuning run reads and records about its data: loading with the run's loader options,
the lazily read candidate crops of a prepared NCC/ECC folder, and the run's `TargetTask`.

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
