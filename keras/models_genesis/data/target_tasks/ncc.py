"""NCC: lung nodule false-positive reduction on LUNA16 (paper Sec. 3.2.1, docs/release_reference.md,
'Target tasks').

Data layout (LUNA16's): `subset{K}/{seriesuid}.mhd` (+ `.raw`) and `candidates.csv`
(`seriesuid, coordX, coordY, coordZ, class`, world mm; `candidates_V2.csv` is found too).

Split: the paper uses 445/178/265 patients. LUNA16's ten subsets hold 89 scans each (88 in
subset 9), so whole subsets give 0-4 -> 445 train, 5-6 -> 178 validation, 7-9 -> 265 test: the
paper's counts, and the release's pre-training split (subsets 0-4 / 5-6 / 7-9,
docs/release_reference.md, 'Pre-training data'), so no test scan was seen in pre-training. Pass
`subsets=` to choose others, or `split=` (seriesuids).
"""

from __future__ import annotations

import os
import re
from typing import Dict, Optional, Sequence

from models_genesis.data.target_tasks.candidates import check_candidate_table, load_candidate_task
from models_genesis.data.target_tasks.common import (SPLITS, SkipLog, TargetData,
                                                     check_input_shape, check_split_ids)
from models_genesis.data.io.volumes import index_volumes

LUNA16_SUBSETS = {"train": (0, 1, 2, 3, 4), "valid": (5, 6), "test": (7, 8, 9)}
_SUBSET = re.compile(r"subset(\d+)$")


def find_candidates_csv(data_dir, name: Optional[str] = None) -> str:
    """Return the candidate CSV in `data_dir` (`name`, else `candidates.csv` or `_V2`)."""
    names = [name] if name else ["candidates.csv", "candidates_V2.csv"]
    for n in names:
        path = n if os.path.isabs(n) else os.path.join(os.fspath(data_dir), n)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"No candidate CSV found; searched {names} in {data_dir}.")


def subset_of(path) -> int:
    """The LUNA16 subset number of a volume path (`.../subset3/x.mhd` -> 3)."""
    m = _SUBSET.search(os.path.basename(os.path.dirname(os.fspath(path))))
    if not m:
        raise ValueError(f"Volume {path} is not inside a `subsetK` folder; pass `split=` instead.")
    return int(m.group(1))


def split_by_subsets(volumes: Dict[str, str], subsets: Dict[str, Sequence[int]]) -> Dict[str, list]:
    """Map each split to the seriesuids of its subsets; raise when a split gets no scan."""
    split = {name: sorted(uid for uid, p in volumes.items()
                          if subset_of(p) in set(subsets.get(name, ())))
             for name in SPLITS}
    empty = [n for n in SPLITS if not split[n]]
    if empty:
        present = sorted({subset_of(p) for p in volumes.values()})
        raise ValueError(f"No scans for the {empty} split(s): subsets {subsets} requested, the "
                         f"folder holds subsets {present}. Pass `subsets=` to match the folder.")
    return split


def load_ncc(data_dir, *, seed: int = 0, input_shape=None, candidates_csv: Optional[str] = None,
             subsets: Optional[Dict[str, Sequence[int]]] = None,
             split: Optional[Dict[str, Sequence[str]]] = None,
             negative_ratio: Optional[float] = None, undersample: Sequence[str] = SPLITS,
             spacing=None, errors: str = "raise", progress: bool = True) -> TargetData:
    """Load LUNA16 candidates as labelled crops (label 1: nodule, 0: false positive).

    Args:
        data_dir: LUNA16 folder (`subset*/`, `candidates.csv`).
        seed: seeds the false-positive undersampling.
        input_shape: crop (rows, cols, deps); defaults to 64x64x32.
        candidates_csv: CSV name or path; default `candidates.csv` / `candidates_V2.csv`.
        subsets: split -> subset numbers; default `LUNA16_SUBSETS` (0-4 / 5-6 / 7-9).
        split: split -> seriesuids, overriding `subsets`.
        negative_ratio, undersample: cap false positives per positive (see `candidates`).
        spacing: resample scans to this spacing (mm) first; None keeps them.
        errors: `"raise"` on a bad candidate or unreadable scan, or `"skip"` to record it in
            `info["skipped"]`.
        progress: show a progress bar over the scans.

    Returns:
        `TargetData`: crops `(N, rows, cols, deps, 1)` in [0, 1], labels `(N,)` in {0, 1}.
    """
    # On first use: this module is on `models-genesis --help`'s import path (pandas: 0.7 s).
    import pandas as pd

    shape = check_input_shape(input_shape, "ncc")
    skips = SkipLog(errors)
    volumes = index_volumes(data_dir, "subset*/*.mhd")
    csv_path = find_candidates_csv(data_dir, candidates_csv)
    table = pd.read_csv(csv_path, dtype={"seriesuid": str})
    table = check_candidate_table(table, csv_path)
    no_volume = sorted(set(table["seriesuid"]) - set(volumes))
    for uid in no_volume:
        skips.bad(f"{csv_path}: seriesuid {uid}",
                  f"has no volume under {data_dir} ({int((table.seriesuid == uid).sum())} rows)")
    table = table[table["seriesuid"].isin(list(volumes))].copy()
    table["path"] = table["seriesuid"].map(volumes)
    if split is None:
        subsets = LUNA16_SUBSETS if subsets is None else subsets
        split = split_by_subsets(volumes, subsets)
        source = f"LUNA16 subsets {dict(subsets)}"
    else:
        split = {k: list(split.get(k, ())) for k in SPLITS}
        source = "user split"
    check_split_ids(split, volumes, "NCC split")
    return load_candidate_task("ncc", table, split, shape, seed=seed, skips=skips,
                               negative_ratio=negative_ratio, undersample=undersample,
                               spacing=spacing, progress=progress, split_source=source,
                               candidates_csv=csv_path)
