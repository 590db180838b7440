"""LCS: liver segmentation on LiTS 2017 (paper Sec. 3.2.4;
docs/release_reference.md, 'Target tasks').

Data layout (the challenge's): `volume-N.nii` and `segmentation-N.nii` (also `.nii.gz`), in one
folder or any sub-folders. Labels 0 background, 1 liver, 2 tumour; the liver is labels 1 and 2
(the paper: "liver as positive class and others as negative").

Split: patient-level, 100/15/15 of 130 scans in the paper. The release's list is not published, so
we draw it with the seed in the proportions 100:15:15 (exactly 100/15/15 on the 130 scans), or take
`split={"train": [...], "valid": [...], "test": [...]}` (ids such as `"volume-3"` or `"3"`).

Crops (ours; the paper does not say how it sampled LCS crops): `crops_per_volume` crops of
`input_shape` (64x64x32) per scan, a `positive_fraction` of them centred on a random liver voxel
and the rest on a random voxel anywhere; crops leaving the scan are padded with air (-1000 HU).
Test crops are drawn the same way; the test scans' paths are in `test_volumes` for whole-volume
sliding-window inference.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Dict, Optional, Sequence

import numpy as np

from models_genesis.data.target_tasks.cases import split_case_crops
from models_genesis.data.target_tasks.common import (SPLITS, SkipLog, TargetData,
                                                     build_target_data, check_input_shape,
                                                     check_split_ids, seeded_split)

LITS_SPLIT = (100, 15, 15)
_NUM = re.compile(r"^(volume|segmentation)-(\d+)\.nii(\.gz)?$")


def find_lits_cases(data_dir) -> Dict[str, tuple]:
    """Map `"volume-N"` to `(volume path, segmentation path)`; raise when a pair is incomplete."""
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"LiTS folder not found: {data_dir}")
    found: Dict[str, Dict[str, str]] = {}
    for path in sorted(glob.glob(os.path.join(data_dir, "**", "*.nii*"), recursive=True)):
        m = _NUM.match(os.path.basename(path))
        if m:
            found.setdefault(m.group(2), {})[m.group(1)] = path
    if not found:
        raise FileNotFoundError(f"No LiTS `volume-N.nii[.gz]` / `segmentation-N.nii[.gz]` files "
                                f"under {data_dir}.")
    unpaired = sorted((n for n, f in found.items() if len(f) != 2), key=int)
    if unpaired:
        raise ValueError(f"{data_dir}: scans without their pair (volume-N with segmentation-N): "
                         f"{unpaired[:10]}.")
    return {f"volume-{n}": (f["volume"], f["segmentation"])
            for n, f in sorted(found.items(), key=lambda kv: int(kv[0]))}


def load_lcs(data_dir, *, seed: int = 0, input_shape=None, split: Optional[dict] = None,
             split_fractions: Sequence[float] = LITS_SPLIT, crops_per_volume: int = 16,
             positive_fraction: float = 0.5, spacing=None, errors: str = "raise",
             progress: bool = True) -> TargetData:
    """Load LiTS as liver-vs-rest crops.

    Args:
        data_dir: folder holding `volume-N.nii[.gz]` and `segmentation-N.nii[.gz]`.
        seed: seeds the split and the crop positions.
        input_shape: crop (rows, cols, deps); defaults to 64x64x32.
        split: explicit patient split; None draws one with `split_fractions`.
        split_fractions: train/valid/test proportions (100/15/15 of the paper).
        crops_per_volume: crops cut from each scan.
        positive_fraction: share of crops centred on the liver.
        spacing: resample to this spacing (mm) first; None keeps the scans' grid.
        errors: `"raise"` on a bad case, or `"skip"` to record it in `info["skipped"]`.
        progress: show a progress bar over the cases.

    Returns:
        `TargetData` with masks `(N, rows, cols, deps, 1)` and the test scans in `test_volumes`.
    """
    shape = check_input_shape(input_shape, "lcs")
    skips = SkipLog(errors)
    cases = find_lits_cases(data_dir)
    if split is None:
        split = seeded_split(list(cases), split_fractions, rng=np.random.default_rng(seed))
        source = f"seeded {'/'.join(str(f) for f in split_fractions)} split (seed {seed})"
    else:
        split = {k: [i if i.startswith("volume-") else f"volume-{i}" for i in split.get(k, ())]
                 for k in SPLITS}
        source = "user split"
    check_split_ids(split, cases, "LCS split")
    parts, patients, test_volumes = split_case_crops(
        split, cases, shape, seed=seed, skips=skips, allowed_labels=(0, 1, 2), spacing=spacing,
        n=crops_per_volume, positive_fraction=positive_fraction, modality="ct",
        progress=progress)
    return build_target_data("lcs", parts, patients, skips, segmentation=True,
                             test_volumes=test_volumes, split_source=source,
                             crops_per_volume=crops_per_volume,
                             positive_fraction=positive_fraction, split=patients)
