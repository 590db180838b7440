"""BMS: brain tumour segmentation on BraTS 2018 FLAIR (paper Sec. 3.2.5, docs/release_reference.md,
'Target tasks').

Data layout (the challenge's download, `MICCAI_BraTS_2018_Data_Training/`): one folder per
patient under `HGG/` (210) and `LGG/` (75), e.g. `HGG/Brats18_TCIA10_330_1/`, holding
`Brats18_TCIA10_330_1_{flair,t1,t1ce,t2,seg}.nii.gz`; the folder name is the patient id. A folder
holding any `*_{flair,t1,t1ce,t2,seg}.nii[.gz]` file is a case; BMS reads the FLAIR and the
segmentation (`required`, default `("flair", "seg")`), and a case missing one is a bad case
(raised, or skipped with `errors="skip"`) named with the missing file. Labels 0, 1, 2, 4;
tumour (whole tumour) = label > 0. Intensities: `normalize_intensity(x, "mri")`, min-max scaled
per patient over the whole scan (`models_genesis.data.io.volumes.intensity_window`).

Folds: three lists of patient ids (one per line, no header; the release publishes them as
`fold_1.csv` .. `fold_3.csv`) given as `fold_files` or found in `split_dir`; or, when none is given, a seeded split of the patients into
three folds. Test = fold `fold`; the other two folds train, less a seeded `valid_fraction`
carved out for validation (the paper names no validation set; early stopping needs one).
Patients found on disk but in no fold are listed in `info["unassigned"]`; a fold naming a
patient without data is an error.

Crops: docs/release_reference.md, 'Target tasks' gives "crops 100x100x50 -> 64x64x32": we cut
`input_shape * crop_scale` (crop_scale 100/64 = 1.5625: 100x100x50 for 64x64x32) and resize it to
`input_shape` (linear; the mask is thresholded at 0.5). `crop_scale=1` cuts `input_shape` directly.
Of `crops_per_volume` crops, a `positive_fraction` is centred on a tumour voxel and the rest on a
brain voxel (> 0).
"""

from __future__ import annotations

import glob
import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

from models_genesis.data.target_tasks.cases import split_case_crops
from models_genesis.data.target_tasks.common import (SkipLog, TargetData, build_target_data,
                                                     check_input_shape, check_split_ids,
                                                     read_id_list)

BRATS_LABELS = (0, 1, 2, 4)
BRATS_FILES = ("flair", "t1", "t1ce", "t2", "seg")
BRATS_CROP_SCALE = 100 / 64


def _brain(array: np.ndarray) -> np.ndarray:
    """The brain: voxels above the scan's minimum (BraTS scans are skull-stripped, background 0)."""
    return array > array.min()


def find_brats_cases(data_dir, skips: SkipLog,
                     required: Sequence[str] = ("flair", "seg")) -> Dict[str, tuple]:
    """Map patient ids (folder names) to the files of `required`, in that order.

    Args:
        data_dir: the download (any depth above the patient folders).
        skips: where a case missing a file goes (raise or record).
        required: modalities each case must have (`flair`, `t1`, `t1ce`, `t2`, `seg`).

    Returns:
        patient id -> tuple of paths, one per `required` entry (default `(flair, seg)`).
    """
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"BraTS folder not found: {data_dir}")
    unknown = sorted(set(required) - set(BRATS_FILES))
    if unknown or not required:
        raise ValueError(f"`required` must name some of {list(BRATS_FILES)}. "
                         f"Received: required={tuple(required)!r}.")
    pattern = re.compile(r"_(" + "|".join(BRATS_FILES) + r")\.nii(\.gz)?$")
    folders: Dict[str, Dict[str, List[str]]] = {}
    for path in sorted(glob.glob(os.path.join(data_dir, "**", "*.nii*"), recursive=True)):
        m = pattern.search(os.path.basename(path))
        if m:
            folders.setdefault(os.path.dirname(path), {}).setdefault(m.group(1), []).append(path)
    cases: Dict[str, tuple] = {}
    for folder, files in sorted(folders.items()):
        case = os.path.basename(folder)
        missing = [m for m in required if m not in files]
        several = [m for m in required if len(files.get(m, ())) > 1]
        if missing:
            skips.bad(folder, "missing " + ", ".join(f"{case}_{m}.nii.gz" for m in missing) +
                      f" (a BraTS case needs {', '.join(required)})")
        elif several:
            skips.bad(folder, f"several {several[0]} files: {files[several[0]]}")
        elif case in cases:
            first = os.path.dirname(cases[case][0])
            skips.bad(folder, f"patient {case} appears twice (also {first})")
        else:
            cases[case] = tuple(files[m][0] for m in required)
    if not cases and not skips.items:
        raise FileNotFoundError(f"No BraTS `*_flair.nii[.gz]` files under {data_dir}.")
    return cases


def read_folds(fold_files: Optional[Sequence] = None, fold_dir=None) -> Optional[list]:
    """Read three fold lists from `fold_files`, or `fold_dir/fold_{1,2,3}.csv`; None if neither."""
    if fold_files is None and fold_dir is not None:
        fold_files = [os.path.join(os.fspath(fold_dir), f"fold_{k}.csv") for k in (1, 2, 3)]
    if fold_files is None:
        return None
    if len(fold_files) != 3:
        raise ValueError(f"`fold_files` must name 3 files. Received: fold_files={fold_files!r}.")
    return [read_id_list(p) for p in fold_files]


def load_bms(data_dir, *, seed: int = 0, input_shape=None, fold: int = 1,
             fold_files: Optional[Sequence] = None, split_dir=None,
             valid_fraction: float = 0.1, crops_per_volume: int = 16,
             positive_fraction: float = 0.5, crop_scale: float = BRATS_CROP_SCALE,
             errors: str = "raise", progress: bool = True) -> TargetData:
    """Load BraTS FLAIR crops with tumour masks for one cross-validation fold.

    Args:
        data_dir: folder of patient folders (any depth).
        seed: seeds the folds (when drawn), the validation carve-out and the crop positions.
        input_shape: crop (rows, cols, deps); defaults to 64x64x32.
        fold: test fold, 1, 2 or 3.
        fold_files, split_dir: the three fold lists (see the module docstring).
        valid_fraction: share of the training patients held out for validation.
        crops_per_volume, positive_fraction: crops per scan and the share on the tumour.
        crop_scale: cut `input_shape * crop_scale` voxels and resize them to `input_shape`.
        errors: `"raise"` on a bad case, or `"skip"` to record it in `info["skipped"]`.
        progress: show a progress bar over the cases.

    Returns:
        `TargetData` with masks `(N, rows, cols, deps, 1)`, and the test scans in `test_volumes`.
    """
    shape = check_input_shape(input_shape, "bms")
    if fold not in (1, 2, 3):
        raise ValueError(f"`fold` must be 1, 2 or 3. Received: fold={fold!r}.")
    if not 0.0 <= float(valid_fraction) < 1.0:
        raise ValueError(f"`valid_fraction` must be in [0, 1). Received: "
                         f"valid_fraction={valid_fraction!r}.")
    if not float(crop_scale) >= 1.0:
        raise ValueError(f"`crop_scale` must be >= 1. Received: crop_scale={crop_scale!r}.")
    skips = SkipLog(errors)
    cases = find_brats_cases(data_dir, skips)
    rng = np.random.default_rng(seed)
    folds = read_folds(fold_files, split_dir)
    if folds is None:
        order = [sorted(cases)[i] for i in rng.permutation(len(cases))]
        folds = [sorted(f) for f in np.array_split(np.asarray(order, dtype=object), 3)]
        source = f"seeded 3-fold split (seed {seed})"
    else:
        source = f"fold files {fold_files or split_dir}"
    check_split_ids({f"fold {k + 1}": ids for k, ids in enumerate(folds)}, cases,
                    f"BMS folds ({source})")
    train = sorted(i for k, ids in enumerate(folds) if k != fold - 1 for i in ids)
    n_valid = int(round(valid_fraction * len(train)))
    if valid_fraction > 0 and len(train) > 1:
        n_valid = min(max(n_valid, 1), len(train) - 1)  # keep one patient each way
    valid = sorted(rng.choice(train, size=n_valid, replace=False).tolist()) if n_valid else []
    split = {"train": sorted(set(train) - set(valid)), "valid": valid,
             "test": sorted(folds[fold - 1])}
    assigned = {i for ids in folds for i in ids}
    parts, patients, test_volumes = split_case_crops(
        split, cases, shape, seed=seed, skips=skips, allowed_labels=BRATS_LABELS,
        n=crops_per_volume, positive_fraction=positive_fraction, modality="mri",
        region=_brain, crop_scale=crop_scale, progress=progress)
    return build_target_data("bms", parts, patients, skips, segmentation=True,
                             test_volumes=test_volumes, split_source=source, fold=fold,
                             crop_scale=float(crop_scale), crops_per_volume=crops_per_volume,
                             positive_fraction=positive_fraction, split=patients,
                             unassigned=sorted(set(cases) - assigned))
