"""ECC: pulmonary embolism false-positive reduction (paper Sec. 3.2.3, docs/release_reference.md,
'Target tasks').

The PE-CAD data (121 CTPA scans, 687 true and 5,568 false candidates) are not public, so ECC reads
a generic candidate format:
- volume files anywhere under `data_dir` (`.nii.gz`, `.nii`, `.mhd`, `.mha`, `.nrrd`), whose name
  without extension is the patient id (e.g. `Patient03219.nii.gz`);
- a CSV (default `candidates.csv`) with `seriesuid, coordX, coordY, coordZ, class` in world mm;
  a `FileName` column is accepted in place of `seriesuid`.

Split: the release's files `train_cv-{k}.csv`, `val_cv-{k}.csv`, `test_cv-{k}.csv` (one id per
line under a `FileName` header) in `split_dir`, for `fold` k = 1, 2, 3; or a seeded patient-level
split with `split_fractions` (default 0.6/0.1/0.3, close to the release's 74/4/39 lists but with a
larger validation share). Crops are 64x64x64 by default.
"""

from __future__ import annotations

import glob
import os
from typing import Dict, Optional, Sequence

import numpy as np

from models_genesis.data.target_tasks.candidates import check_candidate_table, load_candidate_task
from models_genesis.data.target_tasks.common import (SPLITS, SkipLog, TargetData,
                                                     check_input_shape, check_split_ids,
                                                     read_id_list, seeded_split)
from models_genesis.data.io.volumes import volume_key

VOLUME_EXTENSIONS = (".nii.gz", ".nii", ".mhd", ".mha", ".nrrd")
RELEASE_SPLIT_FILES = {"train": "train_cv-{fold}.csv", "valid": "val_cv-{fold}.csv",
                       "test": "test_cv-{fold}.csv"}


def find_volumes(data_dir) -> Dict[str, str]:
    """Map patient ids (file names without extension) to volume files anywhere under `data_dir`."""
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"ECC folder not found: {data_dir}")
    index: Dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(data_dir, "**", "*"), recursive=True)):
        if not path.lower().endswith(VOLUME_EXTENSIONS) or os.path.isdir(path):
            continue
        key = volume_key(path)
        if key in index:
            raise ValueError(f"Two volumes share the id {key!r}: {index[key]}, {path}.")
        index[key] = path
    if not index:
        raise FileNotFoundError(f"No volume files {VOLUME_EXTENSIONS} under {data_dir}.")
    return index


def read_release_split(split_dir, fold: int) -> Dict[str, list]:
    """Read the release's `{train,val,test}_cv-{fold}.csv` lists (header `FileName`)."""
    if fold not in (1, 2, 3):
        raise ValueError(f"`fold` must be 1, 2 or 3. Received: fold={fold!r}.")
    return {name: read_id_list(os.path.join(os.fspath(split_dir), pattern.format(fold=fold)),
                               header="FileName")
            for name, pattern in RELEASE_SPLIT_FILES.items()}


def read_candidate_csv(data_dir, candidates_csv: str = "candidates.csv"):
    """ECC's candidate table, checked: `(table, path)`.

    `candidates_csv` is absolute or relative to `data_dir`; a `FileName` column (the release's
    header) is read as `seriesuid`.

    Raises:
        FileNotFoundError: the CSV is missing.
        ValueError: see `check_candidate_table`.
    """
    # On first use: this module is on `models-genesis --help`'s import path (pandas: 0.7 s).
    import pandas as pd

    path = candidates_csv if os.path.isabs(candidates_csv) else \
        os.path.join(os.fspath(data_dir), candidates_csv)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Candidate CSV not found: {path}")
    table = pd.read_csv(path, dtype={"seriesuid": str, "FileName": str})
    if "seriesuid" not in table.columns and "FileName" in table.columns:
        table = table.rename(columns={"FileName": "seriesuid"})
    return check_candidate_table(table, path), path


def load_ecc(data_dir, *, seed: int = 0, input_shape=None, candidates_csv: str = "candidates.csv",
             split_dir=None, fold: Optional[int] = None,
             split: Optional[Dict[str, Sequence[str]]] = None,
             split_fractions: Sequence[float] = (0.6, 0.1, 0.3),
             negative_ratio: Optional[float] = None, undersample: Sequence[str] = SPLITS,
             spacing=None, errors: str = "raise", progress: bool = True) -> TargetData:
    """Load the generic candidate format as labelled crops (1: true embolus, 0: false positive).

    Args:
        data_dir: folder of volumes and the candidate CSV.
        seed: seeds the split (when drawn) and the undersampling.
        input_shape: crop (rows, cols, deps); defaults to 64x64x64.
        candidates_csv: CSV name (in `data_dir`) or path.
        split_dir, fold: the release's split files and which cross-validation fold (1-3;
            default 1). `fold` without `split_dir` (or `split`) is an error: without the
            release's lists there are no folds.
        split: split -> patient ids, overriding both `split_dir` and the drawn split.
        split_fractions: train/valid/test shares of a drawn split.
        negative_ratio, undersample: cap false positives per positive (see `candidates`).
        spacing: resample to this spacing (mm) first; None keeps the grid.
        errors: `"raise"` on a bad candidate or unreadable scan, or `"skip"` to record it in
            `info["skipped"]`.
        progress: show a progress bar over the scans.

    Returns:
        `TargetData`: crops `(N, rows, cols, deps, 1)` in [0, 1], labels `(N,)` in {0, 1}.
    """
    shape = check_input_shape(input_shape, "ecc")
    if fold is not None and split_dir is None and split is None:
        raise ValueError(f"`fold` needs the release's split files train_cv-k/val_cv-k/test_cv-k"
                         f".csv: pass split_dir= (--split-dir). Received: fold={fold!r}, "
                         f"split_dir=None.")
    skips = SkipLog(errors)
    volumes = find_volumes(data_dir)
    table, csv_path = read_candidate_csv(data_dir, candidates_csv)
    for uid in sorted(set(table["seriesuid"]) - set(volumes)):
        skips.bad(f"{csv_path}: seriesuid {uid}", f"has no volume file under {data_dir}")
    table = table[table["seriesuid"].isin(list(volumes))].copy()
    table["path"] = table["seriesuid"].map(volumes)
    if split is not None:
        split, source = {k: list(split.get(k, ())) for k in SPLITS}, "user split"
    elif split_dir is not None:
        fold = 1 if fold is None else fold
        split, source = read_release_split(split_dir, fold), f"{split_dir} fold {fold}"
    else:
        patients = sorted(set(table["seriesuid"]))
        split = seeded_split(patients, split_fractions, rng=np.random.default_rng(seed))
        source = f"seeded {tuple(split_fractions)} split (seed {seed})"
    check_split_ids(split, volumes, f"ECC split ({source})")
    return load_candidate_task("ecc", table, split, shape, seed=seed, skips=skips,
                               negative_ratio=negative_ratio, undersample=undersample,
                               spacing=spacing, progress=progress, split_source=source,
                               candidates_csv=csv_path)
