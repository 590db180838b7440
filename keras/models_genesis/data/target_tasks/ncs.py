"""NCS: lung nodule segmentation on LIDC-IDRI (paper Sec. 3.2.2;
docs/release_reference.md, 'Target tasks').

Two sources:
1. The release's preprocessed arrays in `data_dir`: `x_{train,valid,test}_{r}x{c}x{d}.npy`
   (crops in [0, 1]) and `m_{...}.npy` (masks in {0, 1}), `(N, r, c, d)`, with or without a
   channel axis (first or last). A smaller `input_shape` takes the centre of each crop.
2. Volumes with nodule masks: `subset*/{seriesuid}.mhd`, `masks/{seriesuid}.mhd` (same grid;
   labels 0, or one uint8 label per nodule, > 0 is nodule) and `annotations.csv` (`seriesuid,
   coordX, coordY, coordZ[, diameter_mm]`, world mm), as the chest phantoms (and `prepare`) write
   them. Split: by series, seeded, in the paper's proportions 510/100/408, or `split=`.
3. LIDC-IDRI as TCIA ships it (no `annotations.csv` in `data_dir`): every CT DICOM series under
   `data_dir` with its XML reading; the nodule masks are the readers' consensus
   (`models_genesis.data.target_tasks.lidc_consensus`: at least `consensus_level` of the readers who marked a nodule,
   nodules grouped across readers by overlap). Split: by patient (`LIDC-IDRI-NNNN`), seeded,
   510/100/408, or `split=` (patient ids).

Sources 2 and 3 are resampled to `spacing` (1 mm isotropic, as in the paper), and one crop of
`input_shape` (64x64x32) is cut around each nodule centre; a crop holding no mask voxel is a bad
item (raised or skipped), and so is an unreadable scan.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Dict, Optional, Sequence

import numpy as np

from models_genesis.data.io.csv_tables import read_table
from models_genesis.data.target_tasks.cases import crops_from_case, read_case
from models_genesis.data.target_tasks.common import (SPLITS, SkipLog, TargetData,
                                                     build_target_data, check_input_shape,
                                                     check_split_ids, progress_bar, seeded_split)
from models_genesis.data.io.volumes import index_volumes, volume_key

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


def _stacked(crops, shape) -> np.ndarray:
    """Concatenate per-scan crop arrays; `(0, *shape)` float32 when there are none."""
    return np.concatenate(crops) if crops else np.zeros((0,) + tuple(shape), np.float32)


def _nodule_crops(image, labels: np.ndarray, centres_mm, shape, what: str, source: str,
                  skips: SkipLog):
    """Crops around nodule centres (world mm) and their masks; a crop with no mask voxel is bad."""
    centres_mm = np.asarray(centres_mm, dtype=float).reshape(-1, 3)
    x, m = crops_from_case(np.asarray(image.array), labels > 0, image.world_to_voxel(centres_mm),
                           shape, modality="ct")
    empty = ~m.reshape(len(m), -1).any(axis=1)
    for c in centres_mm[empty]:
        skips.bad(f"{what} nodule at ({c[0]:.1f}, {c[1]:.1f}, {c[2]:.1f}) mm",
                  f"its crop holds no mask voxel ({source})")
    return x[~empty], m[~empty]


def _draw_split(ids: Sequence[str], split: Optional[Dict[str, Sequence[str]]],
                split_fractions: Sequence[float], seed: int, what: str):
    """`(split, source)`: `split` as given, or `ids` split in `split_fractions` seeded by `seed`
    (`what` names the drawn split in `source`)."""
    if split is None:
        split = seeded_split(ids, split_fractions, rng=np.random.default_rng(seed))
        source = f"seeded {'/'.join(str(f) for f in split_fractions)} {what} (seed {seed})"
    else:
        split, source = {k: list(split.get(k, ())) for k in SPLITS}, "user split"
    return split, source


def load_lidc(data_dir, shape, skips: SkipLog, *, seed: int, spacing, split, split_fractions,
              consensus_level: float, min_readers: int, progress: bool) -> TargetData:
    """NCS crops from LIDC-IDRI as downloaded (DICOM series + XML readings), split by patient."""
    # data.target_tasks.lidc_consensus pulls scipy and scikit-image onto `models-genesis --help`'s import path.
    from models_genesis.data.target_tasks.lidc_consensus import find_lidc_scans, read_lidc_scan

    scans = find_lidc_scans(data_dir)
    by_patient: Dict[str, list] = {}
    for uid, scan in scans.items():
        by_patient.setdefault(scan["patient_id"], []).append(uid)
    split, source = _draw_split(list(by_patient), split, split_fractions, seed,
                                "patient split")
    check_split_ids(split, by_patient, "NCS split (LIDC-IDRI patients)")
    parts, patients = {}, {}
    bar = progress_bar(sum(len(by_patient[p]) for n in SPLITS for p in split[n]),
                       "LIDC-IDRI scans", progress)
    for name in SPLITS:
        xs, ms, kept = [], [], []
        for uid in (u for p in split[name] for u in by_patient[p]):
            bar.update(1)
            folder = scans[uid]["folder"]
            scan = skips.read(lambda: read_lidc_scan(folder, spacing=spacing,
                                                     consensus_level=consensus_level,
                                                     min_readers=min_readers,
                                                     errors=skips.errors), folder)
            if scan is None:
                continue
            skips.items.extend(scan.skipped)
            kept.append(uid)
            if scan.nodules:
                x, m = _nodule_crops(scan.image, np.asarray(scan.labels.array),
                                     [n["center_mm"] for n in scan.nodules], shape,
                                     scans[uid]["patient_id"], folder, skips)
                xs.append(x)
                ms.append(m)
        parts[name] = _stacked(xs, shape), _stacked(ms, shape)
        patients[name] = kept
    bar.close()
    return build_target_data("ncs", parts, patients, skips, segmentation=True,
                             split_source=source, spacing=spacing, split=patients,
                             consensus_level=float(consensus_level), min_readers=int(min_readers))


def load_ncs(data_dir, *, seed: int = 0, input_shape=None, spacing=(1.0, 1.0, 1.0),
             split: Optional[Dict[str, Sequence[str]]] = None,
             split_fractions: Sequence[float] = LIDC_SPLIT,
             annotations_csv: str = "annotations.csv",
             mask_dir: str = "masks", volume_pattern: str = "subset*/*.mhd",
             consensus_level: float = 0.5, min_readers: int = 1, errors: str = "raise",
             progress: bool = True) -> TargetData:
    """Load nodule crops with their masks (see the module docstring for both sources).

    Args:
        data_dir: folder with the release's arrays, or volumes + `masks/` + `annotations.csv`,
            or LIDC-IDRI as downloaded.
        seed: seeds the patient split.
        input_shape: crop (rows, cols, deps); defaults to 64x64x32.
        spacing: resampling spacing in mm (None keeps each scan's grid).
        split: split -> seriesuids (LIDC-IDRI: patient ids), overriding the drawn split.
        split_fractions: train/valid/test proportions of the drawn split.
        annotations_csv, mask_dir, volume_pattern: names inside `data_dir`.
        consensus_level, min_readers: LIDC-IDRI consensus rule (see `models_genesis.data.target_tasks.lidc_consensus`).
        errors: `"raise"` on a bad case, or `"skip"` to record it in `info["skipped"]`.
        progress: show a progress bar over the scans.

    Returns:
        `TargetData` with masks `(N, rows, cols, deps, 1)`.
    """
    shape = check_input_shape(input_shape, "ncs")
    skips = SkipLog(errors)
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"NCS folder not found: {data_dir}")
    # Source 1: the release's arrays.
    released = load_release_arrays(data_dir, shape, skips)
    if released is not None:
        return released
    # Source 3 (no annotations.csv): LIDC-IDRI as downloaded.
    csv_path = os.path.join(data_dir, annotations_csv)
    if not os.path.isfile(csv_path):
        try:
            return load_lidc(data_dir, shape, skips, seed=seed, spacing=spacing, split=split,
                             split_fractions=split_fractions, consensus_level=consensus_level,
                             min_readers=min_readers, progress=progress)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"No NCS data in {data_dir}: no release arrays "
                                    f"(x_train_RxCxD.npy), no {annotations_csv}, and "
                                    f"{exc}") from None
    # Source 2: volumes, their masks and annotations.csv.
    return _load_annotated_volumes(data_dir, csv_path, shape, skips, seed=seed, spacing=spacing,
                                   split=split, split_fractions=split_fractions,
                                   mask_dir=mask_dir, volume_pattern=volume_pattern,
                                   progress=progress)


def find_masks(data_dir: str, mask_dir: str = "masks") -> Dict[str, str]:
    """seriesuid -> nodule mask file (`.mhd` or `.nii[.gz]`) in `data_dir/mask_dir`."""
    return {volume_key(p): p for p in glob.glob(os.path.join(data_dir, mask_dir, "*.mhd"))
            + glob.glob(os.path.join(data_dir, mask_dir, "*.nii*"))}


def _find_annotated_series(data_dir: str, csv_path: str, mask_dir: str, volume_pattern: str,
                           skips: SkipLog):
    """The series of source 2: `(volumes, masks, table, uids)`, uid -> volume and mask files,
    the annotations and the uids that have all three (the others are bad items)."""
    volumes = index_volumes(data_dir, volume_pattern)
    masks = find_masks(data_dir, mask_dir)
    table = read_table(csv_path, ("seriesuid", "coordX", "coordY", "coordZ"),
                       unique=("seriesuid", "coordX", "coordY", "coordZ"))
    for uid in sorted(set(table["seriesuid"]) - set(volumes)):
        skips.bad(f"{csv_path}: seriesuid {uid}", f"has no volume under {data_dir}")
    for uid in sorted(set(table["seriesuid"]) & set(volumes) - set(masks)):
        skips.bad(f"{csv_path}: seriesuid {uid}",
                  f"has no mask in {os.path.join(data_dir, mask_dir)}")
    uids = sorted(set(table["seriesuid"]) & set(volumes) & set(masks))
    return volumes, masks, table, uids


def _load_annotated_volumes(data_dir: str, csv_path: str, shape, skips: SkipLog, *, seed: int,
                            spacing, split, split_fractions, mask_dir: str, volume_pattern: str,
                            progress: bool) -> TargetData:
    """NCS crops from volumes, their nodule masks and `annotations.csv` (source 2), split by
    series."""
    volumes, masks, table, uids = _find_annotated_series(data_dir, csv_path, mask_dir,
                                                         volume_pattern, skips)
    split, source = _draw_split(uids, split, split_fractions, seed, "split")
    check_split_ids(split, uids, "NCS split")
    parts, patients = {}, {}
    bar = progress_bar(sum(len(split[n]) for n in SPLITS), "NCS scans", progress)
    for name in SPLITS:
        xs, ms, kept = [], [], []
        for uid in split[name]:
            bar.update(1)
            case = read_case(volumes[uid], masks[uid], allowed_labels=NODULE_LABELS, skips=skips,
                             spacing=spacing)
            if case is None:
                continue
            image, labels = case
            rows = table[table["seriesuid"] == uid]
            centres = rows[["coordX", "coordY", "coordZ"]].to_numpy(float)
            x, m = _nodule_crops(image, labels, centres, shape, uid, masks[uid], skips)
            xs.append(x)
            ms.append(m)
            kept.append(uid)
        parts[name] = _stacked(xs, shape), _stacked(ms, shape)
        patients[name] = kept
    bar.close()
    return build_target_data("ncs", parts, patients, skips, segmentation=True,
                             split_source=source, spacing=spacing, split=patients)
