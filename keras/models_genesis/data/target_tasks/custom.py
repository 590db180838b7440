"""Task `custom`: your own labelled data set, in the Decathlon or the nnU-Net v2 layout.

`dataset.json` (read by `dataset_json.read_dataset_spec`) says which layout, the channels and
the labels. Everything else follows the paper's tasks (Sec. 3.2): `prepare --task custom` writes
a prepared copy, `finetune --task custom` trains on crops, scores the test cases on whole volumes
by sliding windows, and writes the run's preprocessing as `task.json`, which
`predict-volume --model RUN` reads back. See docs/your_own_data.md.

* Segmentation with any number of labels: the model's classes are the indices of the data set's
  label values (background 0 first); masks are class indices; the head is a softmax over the
  classes trained with Dice + cross-entropy; test scores are the Dice of each label and their
  mean, on whole volumes.
* Classification of whole volumes from a `case,label` CSV: each case, scaled to [0, 1], is
  resized (linear) to the model's input; two classes give the paper's sigmoid head and AUC,
  more a softmax and the accuracy.
* Intensity per channel (`CHANNEL_INTENSITIES`), from the channel's name in `dataset.json`
  (`CT` -> the release's HU window, anything else -> per-case percentiles) or `intensity=`.
* Split: test = fold `fold` of nnU-Net's `splits_final.json` when present, else of a 5-fold split
  of the cases seeded with `SPLIT_SEED` (fixed: every run sees the same folds); validation
  (early stopping) is a seeded `valid_fraction` of the other folds.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from models_genesis.atomic import write_json
from models_genesis.data.io.intensity import (MR_PERCENTILES, intensity_window,
                                              percentile_window, scale_to_unit)
from models_genesis.data.io.volumes import (Volume, read_volume, resample_mask, resample_volume,
                                             write_volume)
from models_genesis.data.target_tasks.common import (SPLITS, SkipLog, TargetData,
                                                     build_target_data, case_rng,
                                                     check_input_shape, check_same_grid,
                                                     extract_crops, progress_bar,
                                                     sample_crop_centers)
from models_genesis.data.target_tasks.dataset_json import (CLASSIFICATION_CSV, DATASET_JSON,
                                                           SPLITS_JSON, DatasetSpec,
                                                           read_dataset_spec)

# The intensity scalings of an input channel, each to [0, 1] (Genesis' input range, Sec. 3.1).
CHANNEL_INTENSITIES = {
    "ct": "clip the release's Hounsfield window [-1000, 1000] and scale it to [0, 1]",
    "mr": "per-case percentiles (0.5, 99.5) of the channel mapped to 0 and 1, clipped",
    "zscore": "data already z-scored (e.g. nnU-Net preprocessed): clip z to [-3, 3], map to "
              "[0, 1] (z = 0 -> 0.5)",
    "none": "data already in [0, 1]: clipped to [0, 1]",
}
ZSCORE_RANGE = (-3.0, 3.0)
SPLIT_SEED = 12345  # the seed of nnU-Net's own 5-fold split (a fixed split, whatever the run)
N_FOLDS = 5


def intensity_of_channel(name: str) -> str:
    """The default scaling of a channel named `name` in dataset.json: `ct` for CT, else `mr`."""
    return "ct" if str(name).strip().lower() == "ct" else "mr"


def channel_intensities(channel_names: Sequence[str], intensity=None) -> Tuple[str, ...]:
    """The scaling of each channel: from the names, or `intensity` (one for all, or one each).

    Raises:
        ValueError: an unknown scaling, or as many values as neither 1 nor the channels.
    """
    if intensity is None:
        return tuple(intensity_of_channel(n) for n in channel_names)
    values = (intensity,) if isinstance(intensity, str) else tuple(intensity)
    unknown = [v for v in values if v not in CHANNEL_INTENSITIES]
    if unknown or len(values) not in (1, len(channel_names)):
        raise ValueError(f"`intensity` must be one of {list(CHANNEL_INTENSITIES)}, once for every "
                         f"channel or once per channel ({len(channel_names)}: "
                         f"{list(channel_names)}). Received: intensity={intensity!r}.")
    return values * len(channel_names) if len(values) == 1 else values


def channel_window(x: np.ndarray, scaling: str) -> Tuple[float, float]:
    """The `(lo, hi)` of one channel mapped to 0 and 1 under `scaling` (see CHANNEL_INTENSITIES)."""
    if scaling == "ct":
        return intensity_window(x, "ct")
    if scaling == "mr":
        return percentile_window(np.asarray(x, dtype=np.float32), MR_PERCENTILES)
    if scaling == "zscore":
        return ZSCORE_RANGE
    if scaling == "none":
        return (0.0, 1.0)
    raise ValueError(f"`scaling` must be one of {list(CHANNEL_INTENSITIES)}. "
                     f"Received: scaling={scaling!r}.")


def normalize_channels(array: np.ndarray, scalings: Sequence[str]) -> np.ndarray:
    """Scale each channel of `(X, Y, Z, C)` (or `(X, Y, Z)` for one) to [0, 1] by its scaling;
    returns float32 `(X, Y, Z, C)`."""
    array = np.asarray(array)
    array = array[..., None] if array.ndim == 3 else array
    if array.shape[-1] != len(scalings):
        raise ValueError(f"The image has {array.shape[-1]} channel(s); the scalings name "
                         f"{len(scalings)}: {list(scalings)}.")
    return np.stack([scale_to_unit(array[..., c], channel_window(array[..., c], s))
                     for c, s in enumerate(scalings)], axis=-1)


def _split_4d(path: str, n_channels: int, **read_options) -> List[Volume]:
    """The channels of a 4D image (Decathlon), each read back by `read_volume` (same geometry
    handling as any 3D file)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(path)
    except RuntimeError as exc:
        raise ValueError(f"Cannot read {path} with SimpleITK: "
                         f"{' '.join(str(exc).split())[-200:]}") from None
    if image.GetDimension() != 4 or image.GetSize()[3] != n_channels:
        raise ValueError(f"{path}: expected a 4D image with {n_channels} channels (dataset.json "
                         f"declares {n_channels}). Received: a {image.GetDimension()}D image of "
                         f"size {image.GetSize()}.")
    folder = tempfile.mkdtemp(prefix="channels-")
    try:
        out = []
        for c in range(n_channels):
            name = os.path.join(folder, f"channel_{c:04d}.nii")
            sitk.WriteImage(image[:, :, :, c], name)
            volume = read_volume(name, **read_options)
            out.append(Volume(volume.array, volume.spacing, volume.origin, volume.direction, path))
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def read_image_channels(paths: Sequence[str], n_channels: int,
                        **read_options) -> List[Volume]:
    """Read the channels of one case: one 3D file each, or one 4D file holding all of them
    (`read_options` go to `read_volume`, e.g. `orientation=None`).

    Raises:
        ValueError: a 4D file where one 3D file per channel is expected, a channel count other
            than `n_channels`, or channels on different grids; the message names the file.
    """
    paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if len(paths) == 1 and n_channels > 1:
        return _split_4d(paths[0], n_channels, **read_options)
    if len(paths) != n_channels:
        raise ValueError(f"Expected {n_channels} channel file(s) (one per channel, or one 4D "
                         f"file). Received {len(paths)}: {paths}.")
    volumes = []
    for path in paths:
        try:
            volumes.append(read_volume(path, **read_options))
        except ValueError as exc:
            if "must be a 3D scalar image" in str(exc):
                raise ValueError(f"{path}: expected a 3D image (one file per channel; "
                                 f"{n_channels} channel(s) declared). {exc}") from None
            raise
        reason = check_same_grid(volumes[0], volumes[-1])
        if reason:
            raise ValueError(f"{path}: not on the grid of channel 0 {paths[0]}: "
                             + reason.replace("mask", "channel"))
    return volumes


def class_indices(labels: np.ndarray, label_values: Sequence[int]) -> np.ndarray:
    """Label values -> class indices (positions in the sorted `label_values`), uint8."""
    values = np.asarray(label_values)
    return np.searchsorted(values, labels).astype(np.uint8)


def read_custom_case(images: Sequence[str], label: Optional[str], *, n_channels: int,
                     label_values: Sequence[int] = (), spacing=None):
    """Read one case: its channels and (segmentation) its labels, checked.

    Returns:
        `(volumes, labels)`: one `Volume` per channel (the first gives the geometry) and the
        label values on their grid (None without a label file).

    Raises:
        ValueError: bad channels (see `read_image_channels`), a label file on another grid or
            holding values not declared in dataset.json's `labels` (the message names it).
    """
    volumes = read_image_channels(images, n_channels)
    labels = None
    if label is not None:
        mask = read_volume(label)
        reason = check_same_grid(volumes[0], mask)
        if reason:
            raise ValueError(f"{label}: not on the grid of its image {volumes[0].path}: {reason}")
        labels = np.asarray(mask.array)
        if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
            raise ValueError(f"{label}: holds non-integer values; expected the labels "
                             f"{list(label_values)} of dataset.json.")
        extra = np.setdiff1d(np.unique(labels), np.asarray(label_values))
        if extra.size:
            raise ValueError(f"{label}: holds the values {extra.astype(int).tolist()[:10]}, not "
                             f"in dataset.json's labels {list(label_values)}.")
        labels = labels.astype(np.int64)
    if spacing is not None:
        volumes = [resample_volume(v, spacing, order=1) for v in volumes]
        if labels is not None:
            labels = np.asarray(resample_mask(Volume(labels, mask.spacing, mask.origin,
                                                     mask.direction), spacing).array)
    return volumes, labels


def split_cases(case_ids: Sequence[str], *, fold: int = 0, splits: Optional[list] = None,
                n_folds: int = N_FOLDS, valid_fraction: float = 0.2, seed: int = 0,
                strata: Optional[Dict[str, int]] = None) -> Tuple[Dict[str, List[str]], str]:
    """Train / valid / test case ids: test = fold `fold` (0-based, as nnU-Net numbers them).

    Args:
        case_ids: the usable cases.
        fold: the held-out fold.
        splits: nnU-Net's `splits_final.json` (its fold's `val` is the test split); None: a
            `n_folds` split of the sorted cases seeded with `SPLIT_SEED`.
        valid_fraction: share of the other cases held out for validation (seeded by `seed`;
            at least one case each way).
        seed: the run's seed.
        strata: case -> class (classification): the seeded folds are dealt class by class, so
            each fold holds every class in about its share.

    Returns:
        `(split, source)`.
    """
    ids = sorted(case_ids)
    count = len(splits) if splits is not None else int(n_folds)
    if isinstance(fold, bool) or int(fold) != fold or not 0 <= int(fold) < count:
        raise ValueError(f"`fold` must be 0..{count - 1} (" + (
            f"{SPLITS_JSON} holds {count} folds" if splits is not None else f"{count}-fold split")
            + f"). Received: fold={fold!r}.")
    fold = int(fold)
    if splits is not None:
        known = set(ids)
        test = sorted(c for c in splits[fold]["val"] if c in known)
        train = sorted(c for c in splits[fold]["train"] if c in known)
        source = f"{SPLITS_JSON} fold {fold}"
    else:
        if len(ids) < count:
            raise ValueError(f"A {count}-fold split needs at least {count} cases (or nnU-Net's "
                             f"{SPLITS_JSON} beside dataset.json). Received: {len(ids)} case(s).")
        order = [ids[i] for i in np.random.default_rng(SPLIT_SEED).permutation(len(ids))]
        if strata is not None:  # stable: the seeded order within each class
            order = sorted(order, key=lambda c: strata[c])
        folds = [sorted(order[k::count]) for k in range(count)]
        test = folds[fold]
        train = sorted(c for k, f in enumerate(folds) if k != fold for c in f)
        source = f"{count}-fold split seeded with {SPLIT_SEED}, fold {fold}"
    n_valid = int(round(valid_fraction * len(train)))
    if valid_fraction > 0 and len(train) > 1:
        n_valid = min(max(n_valid, 1), len(train) - 1)
    rng = np.random.default_rng([int(seed), 0xFA11D])
    valid = sorted(rng.choice(train, size=n_valid, replace=False).tolist()) if n_valid else []
    return {"train": sorted(set(train) - set(valid)), "valid": valid, "test": test}, source


def _segmentation_crops(image: np.ndarray, classes: np.ndarray, shape, *, n: int,
                        positive_fraction: float, rng: np.random.Generator):
    """`n` crops of a normalised `(X, Y, Z, C)` image and its class map (padding: 0)."""
    centers = sample_crop_centers(classes > 0, n, positive_fraction, rng=rng)
    x = np.stack([extract_crops(image[..., c], centers, shape, pad_value=0.0)
                  for c in range(image.shape[-1])], axis=-1)
    y = extract_crops(classes, centers, shape, pad_value=0)
    return x.astype(np.float32), y.astype(np.float32)


def resize_to(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resize a `(X, Y, Z, C)` image to `shape` (linear), the input of a whole-volume classifier."""
    from scipy import ndimage

    factors = [t / s for t, s in zip(shape, image.shape[:3])] + [1.0]
    out = ndimage.zoom(image, factors, order=1, grid_mode=True, mode="nearest")
    return np.clip(out[:shape[0], :shape[1], :shape[2]], 0.0, 1.0).astype(np.float32)


def task_fields(spec: DatasetSpec, scalings: Sequence[str]) -> dict:
    """The `TargetTask` fields this data set sets (written to the run's `task.json`)."""
    if spec.kind == "classification":
        values = tuple(sorted(set(spec.classification.values())))
        return {"kind": "classification", "channels": tuple(scalings),
                "n_classes": 1 if len(values) == 2 else len(values), "label_values": values,
                "metric": "auc" if len(values) == 2 else "accuracy"}
    return {"kind": "segmentation", "channels": tuple(scalings),
            "n_classes": len(spec.label_values), "label_values": tuple(spec.label_values),
            "metric": "dice"}


def load_custom(data_dir, *, seed: int = 0, input_shape=None, fold: int = 0,
                valid_fraction: float = 0.2, crops_per_volume: int = 16,
                positive_fraction: float = 0.67, intensity=None,
                classification_csv: Optional[str] = None, spacing=None,
                errors: str = "raise", progress: bool = True) -> TargetData:
    """Load your own data set (Decathlon or nnU-Net v2 layout) for one fold.

    Args:
        data_dir: the data set folder (or one `prepare --task custom` wrote).
        seed: seeds the validation carve-out and the crop positions.
        input_shape: crop (rows, cols, deps), each a multiple of 8; default 64x64x32.
        fold: the test fold, 0-based (nnU-Net's numbering).
        valid_fraction: share of the training cases held out for validation.
        crops_per_volume, positive_fraction: segmentation crops per case and the share centred
            on a foreground voxel (nnU-Net oversamples the foreground by a third: 0.67 here).
        intensity: the scaling of the channels (see `channel_intensities`); None: from
            dataset.json's channel names.
        classification_csv: a `case,label` CSV for whole-volume classification (default
            `classification.csv` when present).
        spacing: resample every case to this spacing in mm first; None keeps each grid.
        errors: `"raise"` at a bad case, or `"skip"` it and record why in `info["skipped"]`.
        progress: show a progress bar over the cases.

    Returns:
        `TargetData`: crops `(N, rows, cols, deps, C)`; masks of class indices
        `(N, rows, cols, deps, 1)` or class labels `(N,)`; `info["task_fields"]` (kind,
        channels, classes) and the test cases in `test_volumes` (segmentation).
    """
    shape = check_input_shape(input_shape, "custom")
    if not 0.0 <= float(valid_fraction) < 1.0:
        raise ValueError(f"`valid_fraction` must be in [0, 1). "
                         f"Received: valid_fraction={valid_fraction!r}.")
    skips = SkipLog(errors)
    spec = read_dataset_spec(data_dir, classification_csv=classification_csv)
    for item in spec.refused:
        skips.bad(item["item"], item["reason"])
    scalings = channel_intensities(spec.channel_names, intensity)
    split, source = split_cases(list(spec.cases), fold=fold, splits=spec.splits,
                                valid_fraction=valid_fraction, seed=seed,
                                strata=spec.classification)
    # Read the cases split by split: crops (segmentation) or whole volumes (classification).
    parts, patients = {}, {}
    bar = progress_bar(sum(len(v) for v in split.values()), "reading cases", progress)
    for name in SPLITS:
        parts[name], patients[name] = _load_split(
            split[name], spec, scalings, shape, skips, bar, spacing=spacing, seed=seed,
            crops_per_volume=crops_per_volume, positive_fraction=positive_fraction)
    bar.close()
    segmentation = spec.kind == "segmentation"
    # Segmentation is scored on the test cases' whole volumes.
    test_volumes = [spec.cases[case] for case in patients["test"]] if segmentation else []
    return build_target_data("custom", parts, patients, skips, segmentation=segmentation,
                             test_volumes=test_volumes, split_source=source, fold=int(fold),
                             split=patients, layout=spec.layout, spacing=spacing,
                             channel_names=list(spec.channel_names),
                             label_names=list(spec.label_names),
                             task_fields=task_fields(spec, scalings))


def _load_split(cases: Sequence[str], spec: DatasetSpec, scalings: Sequence[str], shape,
                skips: SkipLog, bar, *, spacing, seed: int, crops_per_volume: int,
                positive_fraction: float):
    """Read, scale and crop (or resize) the cases of one split; a case that cannot be read is
    raised or skipped (`skips`).

    Returns:
        `((x, y), kept)`: the split's stacked examples (see `_stack_examples`) and the cases read.
    """
    xs, ys, kept = [], [], []
    for case in cases:
        bar.update(1)
        images, label = spec.cases[case]
        try:
            volumes, labels = read_custom_case(images, label, n_channels=spec.n_channels,
                                               label_values=spec.label_values, spacing=spacing)
        except (ValueError, OSError) as exc:
            skips.bad(images[0], str(exc).replace(f"{images[0]}: ", ""))
            continue
        image = normalize_channels(np.stack([v.array for v in volumes], -1), scalings)
        x, y = _case_examples(image, labels, case, spec, shape, seed=seed,
                              crops_per_volume=crops_per_volume,
                              positive_fraction=positive_fraction)
        xs.append(x)
        ys.append(y)
        kept.append(case)
    return _stack_examples(xs, ys, spec, shape), kept


def _case_examples(image: np.ndarray, labels: Optional[np.ndarray], case: str,
                   spec: DatasetSpec, shape, *, seed: int, crops_per_volume: int,
                   positive_fraction: float):
    """The examples of one case scaled to [0, 1], `(X, Y, Z, C)`: `crops_per_volume` crops and
    their class maps (segmentation; crop positions seeded by `seed` and the case), or the volume
    resized to `shape` and its label (classification)."""
    if spec.kind == "segmentation":
        return _segmentation_crops(image, class_indices(labels, spec.label_values), shape,
                                   n=crops_per_volume, positive_fraction=positive_fraction,
                                   rng=case_rng(seed, case))
    return resize_to(image, shape)[None], np.asarray([spec.classification[case]])


def _stack_examples(xs: List[np.ndarray], ys: List[np.ndarray], spec: DatasetSpec, shape):
    """One split's examples stacked: inputs `(N, *shape, C)` and class maps `(N, *shape)` or
    class indices `(N,)` (positions of the labels among the sorted classes); empty arrays
    when no case was read."""
    x = np.concatenate(xs) if xs else np.zeros((0,) + shape + (spec.n_channels,), np.float32)
    if spec.kind == "segmentation":
        y = np.concatenate(ys) if ys else np.zeros((0,) + shape, np.float32)
    else:
        values = sorted(set(spec.classification.values()))
        y = np.searchsorted(values, np.concatenate(ys)) if ys else np.zeros(0, np.int64)
    return x, y


# `prepare --task custom`: the prepared folder is itself in the nnU-Net v2 layout (one file per
# channel, labels as in the source), with the split it was prepared with in splits_final.json.
def case_files(case: str, n_channels: int, labelled: bool) -> Dict[str, str]:
    """The files of one prepared case (relative paths)."""
    files = {f"image_{c}": f"imagesTr/{case}_{c:04d}.nii.gz" for c in range(n_channels)}
    if labelled:
        files["mask"] = f"labelsTr/{case}.nii.gz"
    return files


def custom_prepare_jobs(data_dir, common: dict, *, intensity=None,
                        classification_csv: Optional[str] = None, fold: Optional[int] = None):
    """`(jobs, parameters, loader_options, refused)` of `prepare --task custom` (see
    `models_genesis.data.target_tasks.case_sources.list_cases`)."""
    spec = read_dataset_spec(data_dir, classification_csv=classification_csv)
    scalings = channel_intensities(spec.channel_names, intensity)
    splits = spec.splits
    if splits is None:  # the fixed seeded folds, written with the prepared cases
        splits = [dict(zip(("train", "val"), (s["train"], s["test"])))
                  for s in (split_cases(spec.cases, fold=k, valid_fraction=0.0,
                                        strata=spec.classification)[0]
                            for k in range(N_FOLDS))]
    jobs = [{**common, "case": case, "images": list(images), "image": images[0],
             "label": label, "n_channels": spec.n_channels,
             "label_values": list(spec.label_values)}
            for case, (images, label) in sorted(spec.cases.items())]
    parameters = {"layout": spec.layout, "channel_names": list(spec.channel_names),
                  "intensity": list(scalings), "labels": dict(zip(spec.label_names,
                                                                  spec.label_values)),
                  "splits": splits, "classification": spec.classification}
    options = {"intensity": list(scalings), "spacing": None}
    if fold is not None:
        options["fold"] = int(fold)
    refused = [{"item": r["item"], "reason": r["reason"]} for r in spec.refused]
    return jobs, parameters, options, refused


def prepare_custom_case(job: dict) -> dict:
    """Read, check and write one case of `prepare --task custom` (a worker's job)."""
    volumes, labels = read_custom_case(job["images"], job["label"],
                                       n_channels=job["n_channels"],
                                       label_values=job["label_values"],
                                       spacing=job.get("spacing"))
    files = case_files(job["case"], job["n_channels"], labels is not None)
    out = {k: os.path.join(job["out_dir"], v) for k, v in files.items()}
    if labels is not None:
        write_volume(labels.astype(np.uint8 if labels.max() < 256 else np.int32), out["mask"],
                     like=volumes[0])
    for c in list(range(1, len(volumes))) + [0]:  # channel 0 last: done when it exists
        write_volume(volumes[c], out[f"image_{c}"])
    return {"files": files, "shape": list(volumes[0].shape),
            "spacing": list(volumes[0].spacing),
            "foreground_voxels": None if labels is None else int(np.count_nonzero(labels))}


def write_custom_dataset_files(out_dir, manifest: dict) -> None:
    """`dataset.json`, `splits_final.json` (and `classification.csv`) of a prepared custom
    folder, over its finished cases (atomic)."""
    params = manifest["parameters"]
    done = sorted(c for c, e in manifest["cases"].items() if e.get("status") == "done")
    meta = {"channel_names": {str(i): n for i, n in enumerate(params["channel_names"])},
            "file_ending": ".nii.gz", "numTraining": len(done),
            "source_layout": params["layout"], "intensity": params["intensity"]}
    if params.get("classification") is None:
        meta["labels"] = params["labels"]
    out_dir = os.fspath(out_dir)
    write_json(os.path.join(out_dir, DATASET_JSON), meta)
    kept = set(done)
    write_json(os.path.join(out_dir, SPLITS_JSON),
               [{"train": [c for c in s["train"] if c in kept],
                 "val": [c for c in s["val"] if c in kept]} for s in params["splits"]])
    if params.get("classification") is not None:
        # pandas (0.7 s) on first use.
        import pandas as pd

        from models_genesis.atomic import write_csv

        table = pd.DataFrame({"case": done,
                              "label": [params["classification"][c] for c in done]})
        write_csv(os.path.join(out_dir, CLASSIFICATION_CSV), table)


def dataset_summary(data_dir) -> str:
    """One line: layout, channels, labels and cases of a data set (for notebooks and logs)."""
    spec = read_dataset_spec(data_dir)
    return json.dumps({"layout": spec.layout, "channels": list(spec.channel_names),
                       "labels": dict(zip(spec.label_names, spec.label_values)),
                       "cases": len(spec.cases), "kind": spec.kind})
