"""NCS: lung nodule segmentation on LIDC-IDRI (paper Sec. 3.2.2, REFERENCE 6).

Two sources:
1. The release's preprocessed arrays in `data_dir`: `x_{train,valid,test}_{r}x{c}x{d}.npy`
   (crops in [0, 1]) and `m_{...}.npy` (masks in {0, 1}), `(N, r, c, d)`, with or without a
   channel axis (first or last). A smaller `input_shape` takes the centre of each crop.
2. Volumes with nodule masks: `subset*/{seriesuid}.mhd`, `masks/{seriesuid}.mhd` (same grid;
   labels 0, or one uint8 label per nodule, > 0 is nodule) and `annotations.csv` (`seriesuid,
   coordX, coordY, coordZ, diameter_mm`, world mm), as the chest phantoms are written. Scans and
   masks are resampled to `spacing` (1 mm isotropic, as in the paper), and one crop of
   `input_shape` (64x64x32) is cut around each nodule centre; a crop holding no mask voxel is a
   bad item (raised or skipped). Split: patient-level, seeded, in the paper's proportions
   510/100/408, or `split=`.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Dict, Optional, Sequence

import numpy as np

from models_genesis.data.target_tasks.cases import crops_from_case, read_case
from models_genesis.data.target_tasks.common import (SPLITS, SkipLog, TargetData,
                                                     build_target_data, check_input_shape,
                                                     check_split_ids, seeded_split)

LIDC_SPLIT = (510, 100, 408)
NODULE_LABELS = tuple(range(256))  # {0, 1}, or one uint8 label per nodule (> 0: nodule)
_ARRAY = re.compile(r"^x_train_(\d+)x(\d+)x(\d+)\.npy$")


def _to_crops(array: np.ndarray, path: str) -> np.ndarray:
    """`(N, r, c, d)`, `(N, r, c, d, 1)` or `(N, 1, r, c, d)` -> `(N, r, c, d)`."""
    if array.ndim == 5 and array.shape[-1] == 1:
        return array[..., 0]
    if array.ndim == 5 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim == 4:
        return array
    raise ValueError(f"{path} must hold crops (N, rows, cols, deps[, 1]). Received shape "
                     f"{array.shape}.")


def _centre(a: np.ndarray, shape, path: str) -> np.ndarray:
    have = a.shape[1:]
    if any(s > h for s, h in zip(shape, have)):
        raise ValueError(f"`input_shape` {tuple(shape)} is larger than the crops in {path} "
                         f"{tuple(have)}.")
    lo = [(h - s) // 2 for h, s in zip(have, shape)]
    return a[:, lo[0]:lo[0] + shape[0], lo[1]:lo[1] + shape[1], lo[2]:lo[2] + shape[2]]


def load_release_arrays(data_dir, shape, skips: SkipLog) -> Optional[TargetData]:
    """Read the release's `x_*`/`m_*` arrays, or return None when `data_dir` has none."""
    names = sorted(n for n in os.listdir(data_dir) if _ARRAY.match(n))
    if not names:
        return None
    size = names[0][len("x_train_"):-len(".npy")]
    parts = {}
    for name in SPLITS:
        xp, mp = (os.path.join(data_dir, f"{p}_{name}_{size}.npy") for p in ("x", "m"))
        for p in (xp, mp):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"The release's NCS arrays are incomplete: {p} is missing.")
        x, m = _to_crops(np.load(xp), xp), _to_crops(np.load(mp), mp)
        if x.shape != m.shape:
            raise ValueError(f"{mp} shape {m.shape} differs from {xp} shape {x.shape}.")
        if not np.all(np.isin(np.unique(m), (0, 1))):
            raise ValueError(f"{mp} must hold masks in {{0, 1}}. Received values "
                             f"{np.unique(m)[:10].tolist()}.")
        if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 1 or np.isnan(x).any()):
            raise ValueError(f"{xp} must hold crops in [0, 1] without NaN.")
        parts[name] = (_centre(x, shape, xp), _centre(m, shape, mp))
    return build_target_data("ncs", parts, {k: [] for k in SPLITS}, skips, segmentation=True,
                             split_source=f"release arrays in {data_dir}")


def load_ncs(data_dir, *, seed: int = 0, input_shape=None, spacing=(1.0, 1.0, 1.0),
             split: Optional[Dict[str, Sequence[str]]] = None,
             split_fractions: Sequence[float] = LIDC_SPLIT,
             annotations_csv: str = "annotations.csv",
             mask_dir: str = "masks", volume_pattern: str = "subset*/*.mhd",
             errors: str = "raise") -> TargetData:
    """Load nodule crops with their masks (see the module docstring for both sources).

    Args:
        data_dir: folder with the release's arrays, or volumes + `masks/` + `annotations.csv`.
        seed: seeds the patient split.
        input_shape: crop (rows, cols, deps); defaults to 64x64x32.
        spacing: resampling spacing in mm (None keeps each scan's grid).
        split: split -> seriesuids, overriding the drawn split.
        split_fractions: train/valid/test proportions of the drawn split.
        annotations_csv, mask_dir, volume_pattern: names inside `data_dir`.
        errors: `"raise"` on a bad case, or `"skip"` to record it in `info["skipped"]`.

    Returns:
        `TargetData` with masks `(N, rows, cols, deps, 1)`.
    """
    import pandas as pd

    from models_genesis.data.volumes import index_volumes, volume_key

    shape = check_input_shape(input_shape, "ncs")
    skips = SkipLog(errors)
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"NCS folder not found: {data_dir}")
    released = load_release_arrays(data_dir, shape, skips)
    if released is not None:
        return released
    volumes = index_volumes(data_dir, volume_pattern)
    masks = {volume_key(p): p for p in glob.glob(os.path.join(data_dir, mask_dir, "*.mhd"))
             + glob.glob(os.path.join(data_dir, mask_dir, "*.nii*"))}
    csv_path = os.path.join(data_dir, annotations_csv)
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"No release arrays (x_train_RxCxD.npy) and no annotation CSV "
                                f"{csv_path}.")
    table = pd.read_csv(csv_path, dtype={"seriesuid": str})
    for uid in sorted(set(table["seriesuid"]) - set(volumes)):
        skips.bad(f"{csv_path}: seriesuid {uid}", f"has no volume under {data_dir}")
    for uid in sorted(set(table["seriesuid"]) & set(volumes) - set(masks)):
        skips.bad(f"{csv_path}: seriesuid {uid}",
                  f"has no mask in {os.path.join(data_dir, mask_dir)}")
    uids = sorted(set(table["seriesuid"]) & set(volumes) & set(masks))
    if split is None:
        split = seeded_split(uids, split_fractions, rng=np.random.default_rng(seed))
        source = f"seeded {'/'.join(str(f) for f in split_fractions)} split (seed {seed})"
    else:
        split, source = {k: list(split.get(k, ())) for k in SPLITS}, "user split"
    check_split_ids(split, uids, "NCS split")
    parts, patients = {}, {}
    for name in SPLITS:
        xs, ms, kept = [], [], []
        for uid in split[name]:
            case = read_case(volumes[uid], masks[uid], allowed_labels=NODULE_LABELS, skips=skips,
                             spacing=spacing)
            if case is None:
                continue
            image, labels = case
            rows = table[table["seriesuid"] == uid]
            ijk = image.world_to_voxel(rows[["coordX", "coordY", "coordZ"]].to_numpy(float))
            x, m = crops_from_case(np.asarray(image.array), labels > 0, ijk, shape, modality="ct")
            empty = ~m.reshape(len(m), -1).any(axis=1)
            for (_, row), is_empty in zip(rows.iterrows(), empty):
                if is_empty:
                    skips.bad(f"{uid} nodule at ({row.coordX:.1f}, {row.coordY:.1f}, "
                              f"{row.coordZ:.1f}) mm", f"its crop holds no mask voxel "
                                                       f"({masks[uid]})")
            xs.append(x[~empty])
            ms.append(m[~empty])
            kept.append(uid)
        none = np.zeros((0,) + shape, np.float32)
        parts[name] = (np.concatenate(xs) if xs else none, np.concatenate(ms) if ms else none)
        patients[name] = kept
    return build_target_data("ncs", parts, patients, skips, segmentation=True,
                             split_source=source, spacing=spacing, split=patients)
