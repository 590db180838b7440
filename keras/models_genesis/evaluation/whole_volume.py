"""Whole-volume segmentation and scoring with a task's own preprocessing (LCS, BMS; paper Sec. 3.2).

The paper scores LCS and BMS on the test volumes, not on crops. A scan is preprocessed exactly as
its training crops were, from the run's `TargetTask` (`task.json`): resampled to `task.spacing`,
scaled to [0, 1] by `task.intensity_window` (CT) or by the patient's own min and max (`"mri"`, the
same `intensity_window` function the loaders use), and shrunk by `task.crop_scale` (BMS); the
probabilities of the overlapping windows (`sliding_window_inference`) are mapped back to the
scan's own grid, where they are compared with the mask (label > 0).

Task `custom` (your own data, docs/your_own_data.md): a case is its channels (one file each, or
one 4D file), each scaled by `task.channels`; a softmax head's classes are scored by the Dice of
each label and written back as the data set's label values (`task.label_values`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm.auto import tqdm

from models_genesis.atomic import write_csv, write_json
from models_genesis.config import TargetTask
from models_genesis.data.target_tasks.common import extract_crops
from models_genesis.data.io.intensity import intensity_window, scale_to_unit
from models_genesis.data.io.volumes import (Volume, read_volume, reorient_volume, resample_volume,
                                            to_geometry_of, volume_key, write_volume)
from models_genesis.data.target_tasks.custom import (class_indices, normalize_channels,
                                                     read_image_channels, resize_to)
from models_genesis.evaluation.metrics import dice_coefficient, iou_score, label_dice, mean_iou
from models_genesis.evaluation.sliding_window import sliding_window_inference
from models_genesis.saving import load_model

VOLUME_SCORE_DEFINITION = ("volume_*: scores of whole test volumes (sliding-window inference, "
                           "overlap 0.5, Gaussian blending, on each scan's own grid), averaged "
                           "over the test volumes")


# `--normalization` of `predict-volume`: the modality and intensity window each name stands for.
NORMALIZATIONS = {"ct": ("ct", (-1000.0, 1000.0)), "mri": ("mri", None),
                  "minmax": ("mri", None), "none": ("ct", (0.0, 1.0))}


def preprocessing_task(window: Sequence[int], *, normalization: str = "ct",
                       crop_scale: float = 1.0, spacing=None) -> TargetTask:
    """A segmentation `TargetTask` that holds only the preprocessing given, for a model without
    a recorded task (a run from before `task.json`, or a model built in Python).

    Args:
        window: the model's input size (rows, cols, deps), the sliding window.
        normalization: a key of `NORMALIZATIONS`: `"ct"` (clip [-1000, 1000] HU, scale to
            [0, 1]), `"mri"` / `"minmax"` (per-scan min-max) or `"none"` (already in [0, 1]).
        crop_scale: scan voxels per model voxel (BMS: 100/64).
        spacing: resample the scan to this spacing in mm first; None keeps its grid.

    Raises:
        ValueError: an unknown `normalization`, or a bad window, crop scale or spacing.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"`normalization` must be one of {list(NORMALIZATIONS)}. "
                         f"Received: normalization={normalization!r}.")
    modality, lo_hi = NORMALIZATIONS[normalization]
    return TargetTask(code="custom", description="preprocessing given explicitly",
                      kind="segmentation", input_shape=tuple(int(w) for w in window),
                      batch_size=1, learning_rate=1e-3, patience=1, metric="iou",
                      modality=modality, intensity_window=lo_hi, spacing=spacing,
                      crop_scale=crop_scale)


def normalize_for_task(array: np.ndarray, task) -> np.ndarray:
    """Scale a scan to [0, 1] as the task's training crops were (float32); with per-channel
    scaling (`task.channels`) an `(X, Y, Z, C)` array (or `(X, Y, Z)` for one channel) gives
    `(X, Y, Z, C)`."""
    if task.channels is not None:
        return normalize_channels(array, task.channels)
    window = task.intensity_window if task.modality == "ct" else \
        intensity_window(np.asarray(array), task.modality)
    return scale_to_unit(array, window)


def _channels(volume) -> list:
    return list(volume) if isinstance(volume, (list, tuple)) else [volume]


def predict_probabilities(model, volume, task, *, overlap: float = 0.5, batch_size: int = 4,
                          progress: bool = False) -> np.ndarray:
    """Foreground probability of every voxel of `volume` (a `Volume`), shape `volume.shape`.

    Args:
        model: the run's Keras model (segmentation head, channels_last).
        volume: the scan as read (`read_volume`), in its own units (HU, MRI values); or a list
            of `Volume`s, one per channel, on one grid (task `custom`).
        task: the run's `TargetTask` (`TargetTask.from_json(run / "task.json")`).
        overlap, batch_size, progress: see `sliding_window_inference`.

    Returns:
        float32 `volume.shape` (the foreground); for a softmax head (`task.n_classes` > 1) the
        probability of every class, `volume.shape + (n_classes,)`.
    """
    channels = _channels(volume)
    if task.spacing is not None:
        channels = [resample_volume(v, task.spacing, order=1) for v in channels]
    arrays = [np.asarray(v.array) for v in channels]
    x = normalize_for_task(arrays[0] if len(arrays) == 1 else np.stack(arrays, -1), task)
    if task.crop_scale != 1.0:
        x = ndimage.zoom(x, (1.0 / task.crop_scale,) * 3 + (1.0,) * (x.ndim - 3), order=1,
                         grid_mode=True, mode="nearest")
    prob = sliding_window_inference(model, x, window=task.input_shape, overlap=overlap,
                                    batch_size=batch_size, progress=progress)
    if prob.ndim == 4 and task.n_classes == 1:
        prob = prob[..., -1] if prob.shape[-1] > 1 else prob[..., 0]
    shape = tuple(_channels(volume)[0].shape)
    if tuple(prob.shape[:3]) != shape:
        factors = [t / s for t, s in zip(shape, prob.shape)] + [1.0] * (prob.ndim - 3)
        prob = ndimage.zoom(prob, factors, order=1, grid_mode=True, mode="nearest")
    return np.clip(prob, 0.0, 1.0).astype(np.float32)


def read_task_input(paths, task, **read_options) -> list:
    """The scan of `paths` (one file, or one per channel) as the run's task reads it: a list of
    `Volume`s, one per channel (task `custom`: 3D files or one 4D file); `read_options` go to
    `read_volume` (e.g. `orientation=None`: the file's own grid)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if task.channels is None:
        if len(paths) != 1:
            raise ValueError(f"Task {task.code} reads one scan. Received {len(paths)} files: "
                             f"{paths}.")
        return [read_volume(paths[0], **read_options)]
    return read_image_channels(paths, task.n_channels, **read_options)


def label_map(prob: np.ndarray, task, threshold: float = 0.5) -> np.ndarray:
    """The labels of `predict_probabilities`' output: `prob > threshold` (uint8) for one class,
    else the data set's label value of the most probable class."""
    if task.n_classes == 1:
        return (prob > threshold).astype(np.uint8)
    values = np.asarray(task.label_values if task.label_values is not None
                        else range(task.n_classes))
    labels = values[np.argmax(prob, axis=-1)]
    return labels.astype(np.uint8 if values.max() < 256 else np.int32)


def score_volume(mask: np.ndarray, prob: np.ndarray) -> dict:
    """The paper's segmentation scores of one volume: `mean_iou`, `dice`, `foreground_iou`."""
    y = (np.asarray(mask) > 0).astype(np.float32)
    return {"mean_iou": mean_iou(y, prob), "dice": dice_coefficient(y, prob),
            "foreground_iou": iou_score(y, prob)}


def score_test_volumes(model, volumes: Sequence[Tuple[str, str]], task, *,
                       overlap: float = 0.5, batch_size: int = 4, progress: bool = True) -> dict:
    """Score every `(image path, mask path)` on its whole volume; return means and per case.

    Returns:
        dict: `volume_mean_iou`, `volume_dice`, `volume_foreground_iou` (means over volumes),
        `n_test_volumes` and `volume_scores` (one dict per volume with its image path).
    """
    per_case = []
    for image_path, mask_path in tqdm(list(volumes), desc="scoring test volumes", unit="volume",
                                      disable=not progress):
        volume, mask = read_task_input(image_path, task), read_volume(mask_path)
        prob = predict_probabilities(model, volume, task, overlap=overlap, batch_size=batch_size)
        if task.n_classes > 1:  # per-label Dice of the argmax (task custom)
            truth = class_indices(np.asarray(mask.array), task.label_values)
            scores = label_dice(truth, np.argmax(prob, axis=-1), task.n_classes)
        else:
            scores = score_volume(mask.array, prob)
        name = image_path if isinstance(image_path, (str, os.PathLike)) else image_path[0]
        per_case.append({"image": os.fspath(name), **scores})
    keys = ("mean_dice",) if task.n_classes > 1 else ("mean_iou", "dice", "foreground_iou")
    out = {f"volume_{k}": float(np.nanmean([c[k] for c in per_case])) if per_case
           else float("nan") for k in keys}
    if task.n_classes > 1 and per_case:
        out["volume_label_dice"] = np.nanmean([c["label_dice"] for c in per_case],
                                              axis=0).tolist()
    return {**out, "n_test_volumes": len(per_case), "volume_scores": per_case}


def segment_volume_to_file(model, in_path, out_path, task, *, threshold: float = 0.5,
                           overlap: float = 0.5, batch_size: int = 4,
                           progress: bool = True) -> str:
    """Segment one scan and write its mask in the scan's geometry (e.g. `.nii.gz`).

    The scan is segmented in the standard orientation every loader reads (`read_volume`), and
    the mask is put back on the file's own grid (`to_geometry_of`): same size, spacing, origin
    and direction as `in_path`, whatever its orientation (RAS NIfTI, oblique).

    Args:
        model: the Keras model or predict function (see `sliding_window_inference`).
        in_path: the scan, any format `read_volume` reads; for task `custom`, one file per
            channel (or one 4D file).
        out_path: the mask file to write (atomic; the folder is created); not `in_path`.
        task: the preprocessing: the run's `TargetTask` (`load_run_task`), or
            `preprocessing_task(window, normalization=..., crop_scale=...)`.
        threshold: foreground where the probability is above it (one class); a softmax head's
            mask holds the data set's label values (`label_map`).
        overlap, batch_size, progress: see `sliding_window_inference`.

    Returns:
        `out_path`.

    Raises:
        ValueError: `out_path` is `in_path` (the scan would be overwritten).
    """
    paths = [in_path] if isinstance(in_path, (str, os.PathLike)) else list(in_path)
    out_path = os.fspath(out_path)
    if any(os.path.abspath(os.fspath(p)) == os.path.abspath(out_path) for p in paths):
        raise ValueError(f"`out_path` must differ from `in_path`; the scan would be overwritten. "
                         f"Received: out_path={out_path!r}.")
    stored = read_task_input(paths, task, orientation=None)
    volumes = [reorient_volume(v) for v in stored]
    prob = predict_probabilities(model, volumes, task, overlap=overlap, batch_size=batch_size,
                                 progress=progress)
    mask = Volume(label_map(prob, task, threshold), volumes[0].spacing, volumes[0].origin,
                  volumes[0].direction)
    return write_volume(to_geometry_of(mask, stored[0]), out_path)


def classify_volume_to_file(model, in_path, out_path, task) -> str:
    """Classify one whole scan (task `custom` classification) and write its class
    probabilities as JSON (`probabilities` per class label, `label`: the most probable)."""
    volumes = read_task_input(in_path, task)
    x = resize_to(normalize_for_task(np.stack([v.array for v in volumes], -1), task),
                  task.input_shape)
    prob = np.asarray(model.predict_on_batch(x[None])).reshape(-1)
    if task.n_classes == 1:
        prob = np.asarray([1.0 - prob[0], prob[0]])
    values = list(task.label_values) if task.label_values is not None else \
        list(range(len(prob)))
    record = {"input": [os.fspath(p) for p in _channels(in_path)],
              "probabilities": {str(v): float(p) for v, p in zip(values, prob)},
              "label": int(values[int(np.argmax(prob))])}
    return write_json(out_path, record)


def score_candidates_to_file(model, in_path, candidates_csv, out_path, task, *,
                             batch_size: int = 24) -> str:
    """Classify the candidates of one scan (NCC, ECC) with the run's preprocessing.

    Reads the rows of `candidates_csv` (`coordX, coordY, coordZ` in world mm; a `seriesuid`
    column, when present, is matched to the scan's file name) and writes them to `out_path` (CSV)
    with a `probability` column.
    """
    table = pd.read_csv(candidates_csv, dtype={"seriesuid": str})
    missing = [c for c in ("coordX", "coordY", "coordZ") if c not in table.columns]
    if missing:
        raise ValueError(f"{candidates_csv} must have columns coordX, coordY, coordZ (world mm); "
                         f"missing {missing}.")
    if "seriesuid" in table.columns:
        table = table[table["seriesuid"] == volume_key(in_path)].reset_index(drop=True)
        if table.empty:
            raise ValueError(f"{candidates_csv} has no row for seriesuid {volume_key(in_path)!r}.")
    volume = read_volume(in_path)
    if task.spacing is not None:
        volume = resample_volume(volume, task.spacing, order=1)
    array = np.asarray(volume.array)
    ijk = np.rint(volume.world_to_voxel(table[["coordX", "coordY", "coordZ"]].to_numpy(float)))
    window = task.intensity_window if task.modality == "ct" else \
        intensity_window(array, task.modality)
    probs = []
    for start in range(0, len(ijk), int(batch_size)):
        crops = extract_crops(array, ijk[start:start + int(batch_size)], task.input_shape,
                              pad_value=window[0])
        x = scale_to_unit(crops, window)
        probs.append(np.asarray(model.predict_on_batch(x[..., None])).reshape(len(x), -1)[:, 0])
    table["probability"] = np.concatenate(probs) if probs else np.zeros(0)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    return write_csv(out_path, table)


def load_run_task(model_path, *, normalization=None, crop_scale=None, window=None):
    """The `TargetTask` a fine-tuning run recorded (`task.json` beside `model.keras`), with the
    explicitly given settings applied on top, and notes for the user.

    Args:
        model_path: the run folder or its `model.keras`.
        normalization: None (the run's), `"ct"` (clip [-1000, 1000] HU), `"mri"` / `"minmax"`
            (per-patient min-max, the loaders' MRI normalisation) or `"none"` (already [0, 1]).
        crop_scale, window: None (the run's) or the value to use instead.

    Returns:
        `(task or None, notes)`: None when the run has no `task.json` (a run from an older
        version): the caller then uses its own flags and defaults, and the notes say so.
    """
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(os.fspath(model_path))
    path = os.path.join(folder, "task.json")
    if not os.path.isfile(path):
        return None, [f"note: {folder} has no task.json (a run from before it was written): "
                      "using the command's flags and defaults (--normalization ct, "
                      "--crop-scale 1, the model's input size)"]
    task = TargetTask.from_json(path)
    notes, changes = [], {}
    if normalization is not None and task.channels is not None:  # every channel alike
        changes["channels"] = ({"ct": "ct", "mri": "mr", "minmax": "mr", "none": "none"}
                               [normalization],) * task.n_channels
    elif normalization is not None:
        modality, lo_hi = NORMALIZATIONS[normalization]
        changes.update(modality=modality, intensity_window=lo_hi)
    if crop_scale is not None:
        changes["crop_scale"] = float(crop_scale)
    if window is not None:
        changes["input_shape"] = tuple(int(w) for w in window)
    for name, value in changes.items():
        if getattr(task, name) != value:
            notes.append(f"note: {name}={value} given explicitly; the run was trained with "
                         f"{name}={getattr(task, name)} ({path})")
    return dataclasses.replace(task, **changes), notes


def run_model_file(model_path) -> str:
    """The `model.keras` of a run folder, or `model_path` itself (a file).

    Raises:
        FileNotFoundError: no such file (naming it).
    """
    model_path = os.fspath(model_path)
    if os.path.isdir(model_path):
        model_path = os.path.join(model_path, "model.keras")
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"No model file at {model_path!r}: give the `model.keras` that "
                                "`models-genesis finetune` writes, or its run folder.")
    return model_path


def predict_volume(model, in_path, out_path, *, task: Union[TargetTask, str, None] = None,
                   candidates=None, window: Optional[Sequence[int]] = None,
                   overlap: float = 0.5, threshold: float = 0.5,
                   normalization: Optional[str] = None, crop_scale: Optional[float] = None,
                   batch_size: int = 4, progress: bool = True) -> dict:
    """Apply a fine-tuned model to one whole scan: the one entry point of `predict-volume`.

    The run's `TargetTask` (its `task.json`, written by `finetune`) decides what is done:

    * a segmentation task (NCS, LCS, BMS): the scan is preprocessed as the run's crops were
      (spacing, intensity window or per-patient min-max, crop scale), segmented by overlapping
      windows (`sliding_window_inference`) and the mask written with the scan's geometry
      (`segment_volume_to_file`);
    * a classification task (NCC, ECC): the candidates of `candidates` (a CSV of world
      coordinates) are cropped and scored, written as a CSV with a `probability` column
      (`score_candidates_to_file`);
    * no task (a model without `task.json`): segmented the same way with the preprocessing given
      (`preprocessing_task`: windows of the model's input size, `normalization` default "ct",
      `crop_scale` default 1).

    Args:
        model: a `keras.Model`, a `.keras` file or a fine-tuning run folder (its `model.keras`,
            whose `task.json` is then read).
        in_path: the scan (`.nii`, `.nii.gz`, `.mhd`, a DICOM folder); for task `custom`, a
            list of one file per channel (or one 4D file); its classifier writes JSON.
        out_path: the mask (e.g. `mask.nii.gz`) or, for a classifier, the CSV to write.
        task: for a `keras.Model`, its `TargetTask` or the path of a `task.json` (None: no task).
        candidates: CSV of `coordX, coordY, coordZ` (world mm) for a classification task.
        window, normalization, crop_scale: with a run folder or a `task.json` path, None keeps
            the run's and a value overrides it (a note says so); a `TargetTask` given as `task`
            already holds them (`load_run_task` applies overrides); without a task they make
            one (`preprocessing_task`; defaults: the model's input size, "ct", 1). `normalization` is
            "ct", "mri", "minmax" or "none".
        overlap, threshold, batch_size, progress: as in `sliding_window_inference`.

    Returns:
        dict: `path` (what was written), `mode` ("segmentation" or "classification"),
        `notes` (lines for the user: settings that differ from the run's).

    Raises:
        FileNotFoundError: no model file or scan.
        ValueError: a `.keras` file that is not a Models Genesis model, a classifier without
            `candidates`, candidates given to a segmentation model, bad numbers.

    Example:
        >>> predict_volume("runs/lcs", "liver.nii.gz", "liver_mask.nii.gz")["path"]
    """
    model, task, notes = _model_and_task(model, task, normalization=normalization,
                                         crop_scale=crop_scale, window=window)
    in_path = _scan_input(in_path, task)
    if task is not None and task.kind == "classification":
        path = _classify_to_file(model, in_path, out_path, task, candidates,
                                 batch_size=batch_size)
        return {"path": path, "mode": "classification", "notes": notes}
    if candidates:
        raise ValueError(f"`candidates` are scored by a classification model; this one "
                         f"segments (task {getattr(task, 'code', None)!r}). Received: "
                         f"candidates={candidates!r}.")
    if task is None:  # a model without task.json: the preprocessing given, or the defaults
        task = preprocessing_task(window or model.input_shape[1:4],
                                  normalization=normalization or "ct",
                                  crop_scale=crop_scale or 1.0)
    path = segment_volume_to_file(model, in_path, out_path, task, threshold=threshold,
                                  overlap=overlap, batch_size=batch_size, progress=progress)
    return {"path": path, "mode": "segmentation", "notes": notes}


def _model_and_task(model, task, *, normalization, crop_scale, window):
    """`(model, task, notes)` of `predict_volume`'s arguments: a `.keras` file or run folder is
    loaded with its `task.json` (`load_run_task`), a `task.json` path is read; the settings
    given override the run's, and the notes say so."""
    if isinstance(model, (str, os.PathLike)):
        model_path = run_model_file(model)
        model = load_model(model_path, compile=False, what="model")
        task, notes = load_run_task(model_path, normalization=normalization,
                                    crop_scale=crop_scale, window=window)
        return model, task, notes
    if isinstance(task, (str, os.PathLike)):
        task, notes = load_run_task(os.path.dirname(os.path.abspath(os.fspath(task))),
                                    normalization=normalization, crop_scale=crop_scale,
                                    window=window)
        return model, task, notes
    return model, task, []


def _scan_input(in_path, task):
    """`in_path` as the task reads it: the list of channel files of a task `custom` case, else
    the one scan.

    Raises:
        ValueError: several files for a model that reads one scan.
    """
    paths = [in_path] if isinstance(in_path, (str, os.PathLike)) else list(in_path)
    if task is not None and task.channels is not None:  # task custom: C channel files
        return paths
    if len(paths) != 1:
        raise ValueError(f"The model reads one scan (several files are the channels of a task "
                         f"`custom` case). Received {len(paths)} files: {paths}.")
    return paths[0]


def _classify_to_file(model, in_path, out_path, task, candidates, *, batch_size: int) -> str:
    """Apply a classifier: a whole-volume classifier (task `custom`) writes its class
    probabilities as JSON, a candidate classifier (NCC, ECC) scores `candidates` into a CSV.

    Raises:
        ValueError: `candidates` for a whole-volume classifier, or none for a candidate one.
    """
    if task.channels is not None:
        if candidates:
            raise ValueError(f"A whole-volume classifier (task custom) takes no `candidates`. "
                             f"Received: candidates={candidates!r}.")
        return classify_volume_to_file(model, in_path, out_path, task)
    if not candidates:
        raise ValueError(f"The model is a {task.code} classifier: give `candidates` (a CSV "
                         "of coordX, coordY, coordZ in world mm) to score them.")
    return score_candidates_to_file(model, in_path, candidates, out_path, task,
                                    batch_size=batch_size)
