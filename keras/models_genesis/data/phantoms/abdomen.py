"""LiTS-like abdominal CT phantoms for the LCS target task (paper Sec. 3.2.4).

Writes `volume-N.nii` (int16 HU) and `segmentation-N.nii` (uint8: 0 background, 1 liver, 2 tumour
inside the liver), the LiTS challenge's names and labels, on the same grid. Anatomy in Hounsfield
units: air outside the body (-1000), a fat layer (about -100) around soft tissue (about 40), a
large liver in the right upper abdomen (about 60, portal-venous phase) holding 0 to 3 hypodense
tumours (about 20), a contrast-filled aorta (about 180), kidneys (about 150), a vertebral body
(about 500), bowel gas pockets (-1000 to -800) and scanner noise. Each case draws its own sizes and
positions from `np.random.default_rng((seed, index))`, so case N does not depend on `n`.
"""

from __future__ import annotations

import os
from typing import Sequence, Tuple

import numpy as np

from models_genesis.data.phantoms.shapes import ellipsoid_mask, finalize_intensities
from models_genesis.data.io.volumes import write_volume
from models_genesis.outputs import check_output_dir, refuse_to_replace

_INF = np.inf


def draw_abdomen(shape: Sequence[int], spacing: Sequence[float], *,
                 rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one abdomen: int16 HU `(X, Y, Z)` and uint8 labels (1 liver, 2 tumour)."""
    shape, spacing = tuple(int(s) for s in shape), np.asarray(spacing, dtype=float)
    extent = (np.asarray(shape) - 1) * spacing
    centre = extent / 2.0

    def blob(c, r):
        return ellipsoid_mask(shape, spacing, c, r)

    hu = np.full(shape, -1000.0, np.float32)
    body_r = extent * np.array([0.47, 0.38, _INF]) * np.r_[rng.uniform(0.92, 1.0, 2), 1.0]
    body = blob(centre, body_r)
    hu[body] = -100.0  # subcutaneous fat
    inner = blob(centre, body_r - np.array([0.08, 0.08, 0.0]) * extent)
    hu[inner] = 40.0  # muscle and soft tissue
    # Liver: patient's right = image left (radiological view), anterior, upper part of the scan.
    liver_c = centre + extent * np.array([-0.17, -0.05, 0.12]) + rng.normal(0.0, 0.02, 3) * extent
    liver_r = extent * np.array([0.2, 0.22, 0.4]) * rng.uniform(0.85, 1.1, 3)
    liver = blob(liver_c, liver_r) & inner & ~blob(liver_c + np.array([liver_r[0], 0.0, 0.0]),
                                                   liver_r * 0.6)
    hu[liver] = 60.0
    labels = liver.astype(np.uint8)
    inside = np.argwhere(liver)
    for _ in range(int(rng.integers(0, 4)) if len(inside) else 0):
        c = inside[rng.integers(len(inside))] * spacing
        radii = rng.uniform(0.03, 0.08, 3) * extent.max()
        tumour = ellipsoid_mask(shape, spacing, c, radii) & liver
        hu[tumour] = rng.uniform(10.0, 35.0)  # hypodense lesion
        labels[tumour] = 2
    spine_c = centre + extent * np.array([0.0, 0.26, 0.0])
    hu[blob(spine_c, extent * np.array([0.07, 0.06, _INF])) & inner] = rng.uniform(400.0, 600.0)
    hu[blob(spine_c - extent * np.array([0.08, 0.1, 0.0]), extent * np.array([0.025, 0.025, _INF]))
       & inner] = 180.0  # aorta with contrast
    for side in (-1.0, 1.0):
        kidney_c = spine_c + extent * np.array([side * 0.2, -0.04, -0.2])
        hu[blob(kidney_c, extent * np.array([0.07, 0.09, 0.2])) & inner & ~liver] = 150.0
    for _ in range(int(rng.integers(2, 5))):  # bowel gas
        c = centre + extent * np.array([rng.uniform(0.02, 0.25), rng.uniform(-0.2, 0.1),
                                        rng.uniform(-0.4, 0.2)])
        hu[blob(c, rng.uniform(0.02, 0.06, 3) * extent.max()) & inner & ~liver] = -950.0
    image = finalize_intensities(hu, rng=rng, noise_std=12.0)
    image[~body] = np.clip(image[~body], -1024, -900)
    return image, labels


def make_abdomen_phantoms(out_dir, n: int = 6, seed: int = 0, *,
                          shape: Sequence[int] = (128, 128, 64),
                          spacing: Sequence[float] = (1.5, 1.5, 2.5), start: int = 0,
                          overwrite: bool = False) -> dict:
    """Write `n` LiTS-like cases `volume-{k}.nii` / `segmentation-{k}.nii` into `out_dir`.

    Args:
        out_dir: destination folder (created).
        n: number of cases.
        seed: case k draws from `np.random.default_rng((seed, k))`.
        shape: voxels (x, y, z); the default gives about 2 MB per volume.
        spacing: mm (LiTS: 0.6-1 mm in-plane, 0.7-5 mm slices).
        start: number of the first case (LiTS numbers its 131 cases from 0).
        overwrite: replace files of the same names (only the files this call writes).

    Returns:
        Summary dict: `out_dir`, `n_cases`, `cases` (`(volume, segmentation)` paths), `seed`,
        `shape`, `generator`.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"`n` must be a positive integer. Received: n={n!r}.")
    check_output_dir(out_dir, name="out_dir")
    cases = range(int(start), int(start) + int(n))
    if not overwrite:
        refuse_to_replace([os.path.join(out_dir, f"{kind}-{k}.nii") for k in cases
                           for kind in ("volume", "segmentation")], where=out_dir,
                          what="phantom files")
    os.makedirs(out_dir, exist_ok=True)
    written = []
    origin = (-0.5 * shape[0] * spacing[0], -0.5 * shape[1] * spacing[1],
              -float(shape[2] * spacing[2]))
    for k in cases:
        hu, labels = draw_abdomen(shape, spacing, rng=np.random.default_rng((seed, k)))
        paths = (os.path.join(out_dir, f"volume-{k}.nii"),
                 os.path.join(out_dir, f"segmentation-{k}.nii"))
        write_volume(hu, paths[0], spacing=spacing, origin=origin)
        write_volume(labels, paths[1], spacing=spacing, origin=origin)
        written.append(paths)
    return {"out_dir": os.fspath(out_dir), "n_cases": len(written), "cases": written,
            "seed": int(seed), "shape": list(shape), "generator": __name__}
