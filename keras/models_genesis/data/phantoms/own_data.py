"""A small labelled data set of your own, written in the nnU-Net v2 or the Decathlon layout.

Two-channel brain MRI phantoms (the BraTS-like FLAIR of `phantoms.brain`, and a T1-like channel
in which the tumour core is bright and the oedema dark) with two foreground labels (1 oedema,
2 tumour core), for task `custom` (docs/your_own_data.md), its tests and notebook 11:

* `layout="nnunetv2"`: `imagesTr/{case}_0000.nii.gz`, `{case}_0001.nii.gz`,
  `labelsTr/{case}.nii.gz`, `dataset.json` with `channel_names`, `labels`, `file_ending`;
* `layout="decathlon"`: `imagesTr/{case}.nii.gz` (one 4D file, channels on the 4th axis),
  `labelsTr/{case}.nii.gz`, `dataset.json` with `modality`, `labels`, `training`.

`classification=True` adds `classification.csv` (`case,label`: 1 for a large tumour core).
Case k draws from `np.random.default_rng((seed, k))`.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from models_genesis.atomic import write_json, write_text
from models_genesis.data.io.volumes import write_volume
from models_genesis.data.phantoms.brain import BRATS_DIRECTION, draw_brain
from models_genesis.outputs import check_output_dir

CHANNELS = ("FLAIR", "T1")
LABELS = {"background": 0, "oedema": 1, "tumour core": 2}


def draw_two_channel_case(shape: Sequence[int], spacing: Sequence[float], *,
                          rng: np.random.Generator):
    """`(flair, t1, labels)`: int16 channels `(X, Y, Z)` and uint8 labels {0, 1, 2}."""
    flair, brats = draw_brain(shape, spacing, rng=rng, grade="HGG")
    labels = np.zeros(brats.shape, np.uint8)
    labels[brats == 2] = 1  # oedema
    labels[(brats == 1) | (brats == 4)] = 2  # tumour core
    brain = flair > 0
    t1 = np.where(brain, 500.0, 0.0) - 200.0 * (labels == 1) + 400.0 * (labels == 2)
    t1 = t1 + rng.normal(0.0, 15.0, t1.shape) * brain
    return flair, np.clip(np.rint(t1), 0, 32767).astype(np.int16), labels


def write_own_dataset(out_dir, *, layout: str = "nnunetv2", n: int = 8,
                      shape: Sequence[int] = (32, 32, 32),
                      spacing: Sequence[float] = (1.0, 1.0, 1.0),
                      direction: Optional[Sequence[float]] = None, seed: int = 0,
                      classification: bool = False) -> dict:
    """Write `n` two-channel, two-label cases in `layout` under `out_dir`.

    Args:
        out_dir: the data set folder (e.g. `Dataset501_Phantom` or `Task501_Phantom`).
        layout: `"nnunetv2"` or `"decathlon"`.
        n: cases.
        shape, spacing: voxels (x, y, z) and mm.
        direction: 9 direction cosines (default BraTS' diag(-1, -1, 1)).
        seed: case k draws from `np.random.default_rng((seed, k))`.
        classification: also write `classification.csv` (`case,label`).

    Returns:
        dict: `out_dir`, `layout`, `cases`.
    """
    if layout not in ("nnunetv2", "decathlon"):
        raise ValueError(f"`layout` must be 'nnunetv2' or 'decathlon'. Received: {layout!r}.")
    check_output_dir(out_dir, name="out_dir")
    root = os.fspath(out_dir)
    direction = BRATS_DIRECTION if direction is None else tuple(direction)
    geometry = dict(spacing=tuple(spacing), origin=(0.0, 0.0, 0.0), direction=direction)
    cases, sizes = [], []
    prefix = "case" if layout == "nnunetv2" else "PHANTOM"
    for k in range(int(n)):
        case = f"{prefix}_{k:03d}"
        flair, t1, labels = draw_two_channel_case(shape, spacing,
                                                  rng=np.random.default_rng((seed, k)))
        write_volume(labels, os.path.join(root, "labelsTr", f"{case}.nii.gz"), **geometry)
        if layout == "nnunetv2":
            for c, array in enumerate((flair, t1)):
                write_volume(array, os.path.join(root, "imagesTr", f"{case}_{c:04d}.nii.gz"),
                             **geometry)
        else:
            write_4d((flair, t1), os.path.join(root, "imagesTr", f"{case}.nii.gz"), **geometry)
        cases.append(case)
        sizes.append(int(np.count_nonzero(labels == 2)))
    if layout == "nnunetv2":
        meta = {"channel_names": {str(i): c for i, c in enumerate(CHANNELS)}, "labels": LABELS,
                "numTraining": len(cases), "file_ending": ".nii.gz", "name": "Phantom"}
    else:
        meta = {"name": "Phantom", "modality": {str(i): c for i, c in enumerate(CHANNELS)},
                "labels": {str(v): k for k, v in LABELS.items()}, "numTraining": len(cases),
                "numTest": 0, "tensorImageSize": "4D", "test": [],
                "training": [{"image": f"./imagesTr/{c}.nii.gz",
                              "label": f"./labelsTr/{c}.nii.gz"} for c in cases]}
    write_json(os.path.join(root, "dataset.json"), meta)
    if classification:
        median = float(np.median(sizes))
        rows = "".join(f"{c},{int(s > median)}\n" for c, s in zip(cases, sizes))
        write_text(os.path.join(root, "classification.csv"), "case,label\n" + rows)
    return {"out_dir": root, "layout": layout, "cases": cases}


def write_4d(channels, path: str, *, spacing, origin, direction) -> str:
    """Write `(X, Y, Z)` arrays as one 4D image (channels on the 4th axis, the Decathlon's
    multi-modal files), under a temporary name then renamed."""
    import SimpleITK as sitk

    images = []
    for array in channels:
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
        image.SetSpacing(tuple(float(s) for s in spacing))
        image.SetOrigin(tuple(float(o) for o in origin))
        image.SetDirection(tuple(float(d) for d in direction))
        images.append(image)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), ".tmp-" + os.path.basename(path))
    sitk.WriteImage(sitk.JoinSeries(images), tmp)
    os.replace(tmp, path)
    return path
