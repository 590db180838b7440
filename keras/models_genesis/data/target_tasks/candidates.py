"""Candidate crops for the false-positive-reduction tasks (NCC, ECC; paper Sec. 3.2.1, 3.2.3).

A candidate table lists `seriesuid, coordX, coordY, coordZ, class` in world millimetres (LUNA16's
`candidates.csv`; ECC uses the same columns). Each volume is read once; its candidates are mapped
to voxels with `Volume.world_to_voxel`, rounded, and cut as crops centred there (padded with air
where they leave the scan). Labels must be 0 or 1.

False positives outnumber true ones by far (LUNA16: ~550,000 vs 1,351). `negative_ratio` keeps at
most `negative_ratio` negatives per positive in each split listed in `undersample`, drawn with the
seed. A uniform subsample of the negatives leaves the expected AUC unchanged, so it may be applied
to the test split to keep memory bounded; pass `undersample=("train",)` to test on every candidate.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from models_genesis.data.io.csv_tables import CANDIDATE_COLUMNS, check_table
from models_genesis.data.target_tasks.common import (SPLITS, SkipLog, TargetData,
                                                     build_target_data, extract_crops,
                                                     intensity_window, progress_bar,
                                                     scale_to_unit)
from models_genesis.data.io.volumes import read_volume, resample_volume

COLUMNS = CANDIDATE_COLUMNS


def check_candidate_table(table, source):
    """Check a candidate table (columns, numeric coordinates, class 0 or 1); return it checked.

    Raises:
        ValueError: naming `source`, the column and the row (see `models_genesis.data.io.csv_tables`).
    """
    table = check_table(table, source, COLUMNS)
    bad = ~table["class"].isin([0, 1]).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{source}: `class` must be 0 or 1; row {row + 1} (line {row + 2}) "
                         f"holds {table['class'].iloc[row]!r}.")
    table["class"] = table["class"].astype(np.int64)
    return table


def _undersample(labels: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Indices kept: all positives and at most `ratio * positives` negatives (sorted)."""
    pos = np.flatnonzero(labels == 1)
    neg = np.flatnonzero(labels == 0)
    k = min(len(neg), int(round(ratio * max(len(pos), 1))))
    return np.sort(np.concatenate([pos, rng.choice(neg, size=k, replace=False)]))


def load_candidate_task(task: str, table, split: Dict[str, Sequence[str]], shape, *,
                        seed: int, skips: SkipLog, negative_ratio: Optional[float] = None,
                        undersample: Sequence[str] = SPLITS, spacing=None,
                        progress: bool = True, **extra_info) -> TargetData:
    """Cut a crop around each candidate of each split's patients.

    Args:
        task: task code for `TargetData.task`.
        table: DataFrame with `COLUMNS` and `path` (the volume of each `seriesuid`).
        split: split name -> seriesuids (patient-level).
        shape: crop `(rows, cols, deps)`.
        seed: seeds the undersampling.
        skips: receives candidates outside their volume.
        negative_ratio: keep at most this many negatives per positive (None: keep all).
        undersample: the splits `negative_ratio` applies to.
        spacing: resample each volume to this spacing (mm) first; None keeps it.
        progress: show a progress bar over the scans.

    Returns:
        `TargetData` with labels `(N,)` int64.
    """
    if negative_ratio is not None and not float(negative_ratio) > 0:
        raise ValueError(f"`negative_ratio` must be > 0 or None. "
                         f"Received: negative_ratio={negative_ratio!r}.")
    rng = np.random.default_rng(seed)
    by_uid = {uid: rows for uid, rows in table.groupby("seriesuid", sort=True)}
    window = intensity_window(np.zeros(1), "ct")
    parts, patients = {}, {}
    bar = progress_bar(sum(len(set(split.get(n, ())) & set(by_uid)) for n in SPLITS),
                       f"{task} scans", progress)
    for name in SPLITS:
        uids = [u for u in sorted(split.get(name, ())) if u in by_uid]
        # The negatives are undersampled split by split, in the order of SPLITS (one rng).
        keep = _kept_candidates([by_uid[u] for u in uids],
                                negative_ratio if name in undersample else None, rng)
        parts[name] = _split_crops(uids, by_uid, keep, shape, spacing=spacing, window=window,
                                   skips=skips, bar=bar)
        patients[name] = uids
    bar.close()
    return build_target_data(task, parts, patients, skips, segmentation=False,
                             negative_ratio=negative_ratio, split=patients, **extra_info)


def _kept_candidates(scans: Sequence, ratio: Optional[float],
                     rng: np.random.Generator) -> np.ndarray:
    """Which candidates of a split's scans (their tables, in order) are kept, `(N,)` bool: all,
    or all positives and at most `ratio` negatives per positive (see `_undersample`)."""
    labels = np.concatenate([rows["class"].to_numpy(np.int64) for rows in scans]) \
        if scans else np.zeros(0, np.int64)
    keep = np.arange(len(labels))
    if ratio is not None and len(labels):
        keep = _undersample(labels, float(ratio), rng)
    keep_mask = np.zeros(len(labels), bool)
    keep_mask[keep] = True
    return keep_mask


def _split_crops(uids: Sequence[str], by_uid: dict, keep: np.ndarray, shape, *, spacing,
                 window, skips: SkipLog, bar):
    """The crops `(N, *shape)` in [0, 1] and labels `(N,)` of the kept candidates of one split's
    scans (`keep` runs over their candidates in order); each scan is read once."""
    xs, ys, offset = [], [], 0
    for uid in uids:
        rows = by_uid[uid]
        chosen = rows[keep[offset:offset + len(rows)]]
        offset += len(rows)
        bar.update(1)
        if chosen.empty:
            continue
        crops = _scan_crops(uid, rows["path"].iloc[0], chosen, shape, spacing=spacing,
                            window=window, skips=skips)
        if crops is not None:
            xs.append(crops[0])
            ys.append(crops[1])
    empty = np.zeros((0,) + tuple(shape), np.float32)
    return (np.concatenate(xs) if xs else empty,
            np.concatenate(ys) if ys else np.zeros(0, np.int64))


def _scan_crops(uid: str, path: str, chosen, shape, *, spacing, window, skips: SkipLog):
    """Crops around the candidates `chosen` of one scan, scaled to [0, 1] by the CT `window`, and
    their labels; a candidate outside the volume is a bad item. None: the scan is unreadable and
    skipped (raised with `errors="raise"`)."""
    volume = skips.read(lambda: read_volume(path), path,
                        f"unreadable scan, its {len(chosen)} candidate(s) left out: ")
    if volume is None:
        return None
    if spacing is not None:
        volume = resample_volume(volume, spacing, order=1)
    ijk = np.rint(volume.world_to_voxel(chosen[["coordX", "coordY", "coordZ"]].to_numpy(float)))
    inside = np.all((ijk >= 0) & (ijk < np.asarray(volume.shape)), axis=1)
    for _, row in chosen[~inside].iterrows():
        skips.bad(f"{uid} candidate at ({row.coordX:.1f}, {row.coordY:.1f}, "
                  f"{row.coordZ:.1f}) mm", f"lies outside its volume {volume.path}")
    crops = extract_crops(np.asarray(volume.array), ijk[inside], shape, pad_value=window[0])
    return scale_to_unit(crops, window), chosen["class"].to_numpy(np.int64)[inside]
