"""CTPA-like phantoms with pulmonary-embolism candidates, for the ECC target task (Sec. 3.2.3).

The PE-CAD data are not public, so ECC reads a generic candidate format (see
`models_genesis.data.target_tasks.ecc`); these phantoms are written in it: `{patient}.nii.gz`
(int16 HU) and one `candidates.csv` (`seriesuid, coordX, coordY, coordZ, class`, world mm).

Anatomy of a contrast-enhanced chest CT: air (-1000), soft tissue (about 40) and fat, two lungs
(about -850) holding two branching pulmonary-artery trees filled with contrast (about 350), a
vertebral body (about 500) and scanner noise. Emboli are dark filling defects (about 50 HU) inside
artery branches; a candidate at each is a true positive (class 1). False positives (class 0), as a
PE detector produces them, lie on contrast-filled arteries without a clot, in the lung next to a
vessel, and in the soft tissue; about 8 per true one (the paper's data: 687 / 5,568).
Case k draws from `np.random.default_rng((seed, k))`.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from models_genesis.data.phantoms.shapes import (branching_tree, ellipsoid_mask,
                                                 finalize_intensities, segment_points, stamp_balls,
                                                 write_csv)
from models_genesis.data.io.volumes import write_volume
from models_genesis.outputs import check_output_dir, refuse_to_replace

CANDIDATE_HEADER = ("seriesuid", "coordX", "coordY", "coordZ", "class")


def draw_ctpa(shape: Sequence[int], spacing: Sequence[float], *, rng: np.random.Generator,
              n_emboli: int = 3, fp_per_tp: int = 8):
    """Draw one CTPA scan and its candidates.

    Returns:
        `(hu, candidates_mm, classes)`: int16 `(X, Y, Z)`, `(M, 3)` mm from voxel (0, 0, 0), and
        `(M,)` int labels (1 embolus, 0 false positive).
    """
    shape, spacing = tuple(int(s) for s in shape), np.asarray(spacing, dtype=float)
    extent = (np.asarray(shape) - 1) * spacing
    centre = extent / 2.0
    inf = np.inf
    hu = np.full(shape, -1000.0, np.float32)
    body = ellipsoid_mask(shape, spacing, centre, extent * np.array([0.47, 0.36, inf]))
    hu[body] = -90.0
    inner = ellipsoid_mask(shape, spacing, centre, extent * np.array([0.42, 0.31, inf]))
    hu[inner] = 40.0
    lungs = np.zeros(shape, bool)
    roots = []
    for side in (-1.0, 1.0):
        c = centre + extent * np.array([side * 0.2, -0.02, 0.0])
        lungs |= ellipsoid_mask(shape, spacing, c, extent * np.array([0.17, 0.25, 0.46])) & inner
        roots.append((centre + extent * np.array([side * 0.06, 0.0, 0.05]), side))
    hu[lungs] = -850.0
    hu[ellipsoid_mask(shape, spacing, centre + extent * np.array([0.0, 0.24, 0.0]),
                      extent * np.array([0.06, 0.05, inf])) & inner] = 500.0
    points, radii = [], []
    for root, side in roots:
        heading = np.array([side, rng.uniform(-0.3, 0.3), rng.uniform(-0.8, 0.8)])
        tree = branching_tree(root, heading,
                              rng=rng, length_mm=0.12 * extent.max(), radius_mm=6.0, depth=5)
        p, r = segment_points(tree["p0"], tree["p1"], tree["r0"], tree["r1"], step_mm=1.0)
        points.append(p)
        radii.append(r)
    points, radii = np.concatenate(points), np.concatenate(radii)
    inside = np.all((points >= 0) & (points <= extent), axis=1)
    points, radii = points[inside], radii[inside]
    vessels = stamp_balls(shape, spacing, points, radii) & inner
    hu[vessels] = 350.0
    # Emboli: filling defects in branches of radius >= 2.5 mm.
    usable = np.flatnonzero(radii >= 2.5)
    picks = rng.choice(usable, size=min(n_emboli, len(usable)), replace=False)
    clots = stamp_balls(shape, spacing, points[picks], radii[picks] * 0.85)
    hu[clots] = rng.uniform(30.0, 70.0)
    tp = points[picks]
    # False positives: clot-free arteries, lung beside vessels, soft tissue.
    n_fp = fp_per_tp * max(len(tp), 1)
    free = np.setdiff1d(np.arange(len(points)), picks)
    far = np.min(np.linalg.norm(points[free][:, None] - tp[None], axis=2), axis=1) > 10.0 \
        if len(tp) else np.ones(len(free), bool)
    on_vessel = points[rng.choice(free[far], size=n_fp // 2, replace=False)]
    beside = points[rng.choice(free, size=n_fp // 4)] + rng.normal(0.0, 1.0, (n_fp // 4, 3)) * 6.0
    tissue_vox = np.argwhere(inner & ~lungs & ~vessels)
    tissue = tissue_vox[rng.integers(len(tissue_vox), size=n_fp - n_fp // 2 - n_fp // 4)] * spacing
    fp = np.clip(np.concatenate([on_vessel, beside, tissue]), 0.0, extent)
    image = finalize_intensities(hu, rng=rng, noise_std=15.0)
    candidates = np.concatenate([tp, fp])
    classes = np.r_[np.ones(len(tp), int), np.zeros(len(fp), int)]
    return image, candidates, classes


def make_pe_phantoms(out_dir, n: int = 6, seed: int = 0, *, shape: Sequence[int] = (128, 128, 80),
                     spacing: Sequence[float] = (2.0, 2.0, 2.0), n_emboli: int = 3,
                     fp_per_tp: int = 8, ids: Optional[Sequence[str]] = None,
                     overwrite: bool = False) -> dict:
    """Write `n` CTPA-like scans `{id}.nii.gz` and `candidates.csv` into `out_dir`.

    Args:
        out_dir: destination folder (created).
        n: number of scans (ignored when `ids` is given).
        seed: scan k draws from `np.random.default_rng((seed, k))`.
        shape, spacing: voxels (x, y, z) and mm per voxel.
        n_emboli: emboli (true candidates) per scan.
        fp_per_tp: false-positive candidates per true one.
        ids: patient ids (file names); default `Patient{10000 + k}`.
        overwrite: replace files of the same names (only the files this call writes).

    Returns:
        Summary dict: `out_dir`, `n_cases`, `cases` (ids), `n_candidates`, `n_positives`,
        `candidates` (the CSV path), `seed`, `shape`, `generator`.
    """
    ids = [f"Patient{10000 + k}" for k in range(int(n))] if ids is None else list(ids)
    if not ids:
        raise ValueError(f"`n` must be a positive integer. Received: n={n!r}.")
    check_output_dir(out_dir, name="out_dir")
    if not overwrite:
        refuse_to_replace([os.path.join(os.fspath(out_dir), f"{pid}.nii.gz") for pid in ids]
                          + [os.path.join(os.fspath(out_dir), "candidates.csv")],
                          where=out_dir, what="phantom files")
    origin = np.array([-0.5 * shape[0] * spacing[0], -0.5 * shape[1] * spacing[1], -200.0])
    rows = []
    for k, pid in enumerate(ids):
        hu, cand_mm, classes = draw_ctpa(shape, spacing, rng=np.random.default_rng((seed, k)),
                                         n_emboli=n_emboli, fp_per_tp=fp_per_tp)
        write_volume(hu, os.path.join(os.fspath(out_dir), f"{pid}.nii.gz"), spacing=spacing,
                     origin=tuple(origin))
        world = cand_mm + origin  # identity direction: world = origin + mm from voxel 0
        rows += [(pid, *(float(v) for v in w), int(c)) for w, c in zip(world, classes)]
    csv_path = write_csv(os.path.join(os.fspath(out_dir), "candidates.csv"), CANDIDATE_HEADER, rows)
    return {"out_dir": os.fspath(out_dir), "n_cases": len(ids), "cases": ids,
            "n_candidates": len(rows), "n_positives": sum(r[-1] for r in rows),
            "candidates": csv_path, "seed": int(seed), "shape": list(shape), "generator": __name__}
