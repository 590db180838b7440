"""Whole-volume segmentation and scoring with a task's own preprocessing (LCS, BMS; paper Sec. 3.2).

The paper scores LCS and BMS on the test volumes, not on crops. A scan is preprocessed exactly as
its training crops were, from the run's `TargetTask` (`task.json`): resampled to `task.spacing`,
scaled to [0, 1] by `task.intensity_window` (CT) or by the patient's own min and max (`"mri"`, the
same `intensity_window` function the loaders use), and shrunk by `task.crop_scale` (BMS); the
probabilities of the overlapping windows (`sliding_window_inference`) are mapped back to the
scan's own grid, where they are compared with the mask (label > 0).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm.auto import tqdm

from models_genesis.atomic import write_csv
from models_genesis.config import TargetTask
from models_genesis.data.target_tasks.common import extract_crops
from models_genesis.data.io.intensity import intensity_window, scale_to_unit
from models_genesis.data.io.volumes import (Volume, read_volume, reorient_volume, resample_volume,
                                            to_geometry_of, volume_key, write_volume)
from models_genesis.evaluation.metrics import dice_coefficient, iou_score, mean_iou
from models_genesis.evaluation.sliding_window import sliding_window_inference

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
    """Scale a scan to [0, 1] as the task's training crops were (float32)."""
    window = task.intensity_window if task.modality == "ct" else \
        intensity_window(np.asarray(array), task.modality)
    return scale_to_unit(array, window)


def predict_probabilities(model, volume, task, *, overlap: float = 0.5, batch_size: int = 4,
                          progress: bool = False) -> np.ndarray:
    """Foreground probability of every voxel of `volume` (a `Volume`), shape `volume.shape`.

    Args:
        model: the run's Keras model (segmentation head, channels_last).
        volume: the scan as read (`read_volume`), in its own units (HU, MRI values).
        task: the run's `TargetTask` (`TargetTask.from_json(run / "task.json")`).
        overlap, batch_size, progress: see `sliding_window_inference`.
    """
    scan = resample_volume(volume, task.spacing, order=1) if task.spacing is not None else volume
    x = normalize_for_task(np.asarray(scan.array), task)
    if task.crop_scale != 1.0:
        x = ndimage.zoom(x, 1.0 / task.crop_scale, order=1, grid_mode=True, mode="nearest")
    prob = sliding_window_inference(model, x, window=task.input_shape, overlap=overlap,
                                    batch_size=batch_size, progress=progress)
    if prob.ndim == 4:
        prob = prob[..., -1] if prob.shape[-1] > 1 else prob[..., 0]
    if tuple(prob.shape) != tuple(volume.shape):
        factors = [t / s for t, s in zip(volume.shape, prob.shape)]
        prob = ndimage.zoom(prob, factors, order=1, grid_mode=True, mode="nearest")
    return np.clip(prob, 0.0, 1.0).astype(np.float32)


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
        volume, mask = read_volume(image_path), read_volume(mask_path)
        prob = predict_probabilities(model, volume, task, overlap=overlap, batch_size=batch_size)
        per_case.append({"image": os.fspath(image_path), **score_volume(mask.array, prob)})
    out = {f"volume_{k}": float(np.mean([c[k] for c in per_case])) if per_case else float("nan")
           for k in ("mean_iou", "dice", "foreground_iou")}
    return {**out, "n_test_volumes": len(per_case), "volume_scores": per_case}


def segment_volume_to_file(model, in_path, out_path, task, *, threshold: float = 0.5,
                           overlap: float = 0.5, batch_size: int = 4,
                           progress: bool = True) -> str:
    """Segment one scan and write its binary mask in the scan's geometry (e.g. `.nii.gz`).

    The scan is segmented in the standard orientation every loader reads (`read_volume`), and
    the mask is put back on the file's own grid (`to_geometry_of`): same size, spacing, origin
    and direction as `in_path`, whatever its orientation (RAS NIfTI, oblique).

    Args:
        model: the Keras model or predict function (see `sliding_window_inference`).
        in_path: the scan, any format `read_volume` reads.
        out_path: the mask file to write (atomic; the folder is created); not `in_path`.
        task: the preprocessing: the run's `TargetTask` (`load_run_task`), or
            `preprocessing_task(window, normalization=..., crop_scale=...)`.
        threshold: foreground where the probability is above it.
        overlap, batch_size, progress: see `sliding_window_inference`.

    Returns:
        `out_path`.

    Raises:
        ValueError: `out_path` is `in_path` (the scan would be overwritten).
    """
    in_path, out_path = os.fspath(in_path), os.fspath(out_path)
    if os.path.abspath(in_path) == os.path.abspath(out_path):
        raise ValueError(f"`out_path` must differ from `in_path`; the scan would be overwritten. "
                         f"Received: out_path={out_path!r}.")
    stored = read_volume(in_path, orientation=None)
    volume = reorient_volume(stored)
    prob = predict_probabilities(model, volume, task, overlap=overlap, batch_size=batch_size,
                                 progress=progress)
    mask = Volume((prob > threshold).astype(np.uint8), volume.spacing, volume.origin,
                  volume.direction)
    return write_volume(to_geometry_of(mask, stored), out_path)


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
    if normalization is not None:
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
