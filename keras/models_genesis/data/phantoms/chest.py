"""Synthetic chest-CT phantoms in the LUNA16 layout: the project's embedded default data set.

Each scan is a scaled-down chest in real Hounsfield units: air outside the body (-1000), a fat
layer (-100) around soft tissue (40), two lungs (-850 with texture and a gravity gradient)
holding branching vessels (40), trachea and main bronchi (air), ribs, spine and sternum
(cortical 700, marrow 250, discs 80), a heart in the mediastinum, a liver (60) below the right
lung, nodules of 3-30 mm and five shapes inside the lungs, partial-volume blur and correlated
scanner noise. Scans are int16, (x, y, z), with LUNA16-like spacing (0.7-0.9 mm in-plane,
1.25-2.5 mm slices) and a smaller field of view (about 150 mm) so a scan is a few MB.

`make_chest_phantoms` writes `subset{K}/{uid}.mhd/.raw`, `annotations.csv` and `candidates.csv`
(world mm, as LUNA16) and `masks/{uid}.mhd` (nodule labels 1..n, 0 elsewhere), for the proxy
task (docs/release_reference.md, 'Pre-training data': subsets 0-4 train, 5-6 validate, 7-9 test) and
the NCC/NCS target tasks.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from tqdm.auto import tqdm

from models_genesis.atomic import write_json
from models_genesis.data.phantoms import shapes
from models_genesis.data.io.volumes import write_volume
from models_genesis.outputs import check_output_dir, refuse_to_replace

CHEST_HU = {"air": -1000.0, "fat": -100.0, "soft_tissue": 40.0, "lung": -850.0, "blood": 40.0,
            "cortical_bone": 700.0, "marrow": 250.0, "disc": 80.0, "liver": 60.0}
NODULE_SHAPES = ("sphere", "ellipsoid", "lobulated", "spiculated", "part_solid")
DEFAULT_SHAPE = (192, 192, 96)


@dataclass(frozen=True)
class _Thorax:
    """The drawn outline of one chest, in mm from the scan's corner.

    Attributes:
        shape, spacing: the scan's voxels (x, y, z) and their size in mm.
        cx, cy: the body's axis; H: the scan's length along z.
        ax, ay: the body's semi-axes; fat, wall: the fat layer's and the chest wall's thickness.
    """

    shape: Tuple[int, int, int]
    spacing: np.ndarray
    cx: float
    cy: float
    H: float
    ax: float
    ay: float
    fat: float
    wall: float

    @property
    def qx(self) -> float:
        """The thoracic cavity's semi-axis along x."""
        return self.ax - self.fat - self.wall

    @property
    def qy(self) -> float:
        """The thoracic cavity's semi-axis along y."""
        return self.ay - self.fat - self.wall

    @property
    def zc(self) -> float:
        """The lungs' centre along z."""
        return 0.53 * self.H

    @property
    def rz(self) -> float:
        """The lungs' semi-axis along z."""
        return 0.41 * self.H

    def ellipsoid(self, center, radii, **kwargs) -> np.ndarray:
        """Voxels of an ellipsoid (mm) on the scan's grid (see `shapes.ellipsoid_mask`)."""
        return shapes.ellipsoid_mask(self.shape, self.spacing, center, radii, **kwargs)


def _draw_thorax(rng, shape, spacing) -> _Thorax:
    """Draw the body's axis, fat layer and chest wall of one scan."""
    W = np.asarray(shape) * spacing
    cx, cy, H = W[0] / 2, W[1] / 2 + rng.uniform(-2, 2), W[2]
    ax, ay, fat = 0.46 * W[0], 0.36 * W[1], rng.uniform(3.0, 7.0)
    wall = rng.uniform(6.0, 9.0)
    return _Thorax(shape, spacing, cx, cy, H, ax, ay, fat, wall)


def _anatomy(rng, shape, spacing):
    """Paint body, bones, organs, lungs, airways and vessels; return image, lungs, vessel tree."""
    t = _draw_thorax(rng, shape, spacing)
    image = np.full(shape, CHEST_HU["air"], np.float32)
    body = t.ellipsoid((t.cx, t.cy, 0), (t.ax, t.ay, np.inf))
    image[body] = CHEST_HU["fat"]
    tissue = t.ellipsoid((t.cx, t.cy, 0), (t.ax - t.fat, t.ay - t.fat, np.inf))
    image[tissue] = CHEST_HU["soft_tissue"]
    lungs, liver = _lungs_and_liver(t, tissue)
    image[liver] = CHEST_HU["liver"] + shapes.smooth_noise(shape, rng=rng, sigma_vox=2, std=6)[liver]
    bone, ribs, canal = _paint_skeleton(rng, image, t)
    lungs &= ~(bone | ribs | canal)

    # Lung parenchyma with texture and a gravity gradient (posterior, larger y, is denser).
    grad = (np.arange(shape[1]) * spacing[1] - t.cy)[None, :, None] / t.qy * 40.0
    parenchyma = CHEST_HU["lung"] + grad + shapes.smooth_noise(shape, rng=rng, sigma_vox=2.0,
                                                               std=25.0)
    image[lungs] = parenchyma[lungs]

    vessels, tree = _paint_vessels(rng, image, lungs, t)
    lungs &= ~_paint_airways(image, t)
    return image, body, lungs, vessels, tree


def _lungs_and_liver(t: _Thorax, tissue: np.ndarray):
    """The two lungs inside the thoracic cavity, clear of the liver, stomach and heart, and the
    liver below the right lung (masks)."""
    lungs = np.zeros(t.shape, bool)
    for side, rx in ((-1, 0.44), (1, 0.40)):  # image x grows to the patient's left (LPS)
        lungs |= t.ellipsoid((t.cx + side * 0.56 * t.qx, t.cy + 0.04 * t.qy, t.zc),
                             (rx * t.qx, 0.92 * t.qy, t.rz), exponent=2.6)
    lungs &= t.ellipsoid((t.cx, t.cy, 0), (t.qx, t.qy, np.inf))
    liver = t.ellipsoid((t.cx - 0.3 * t.qx, t.cy, 0.02 * t.H),
                        (0.8 * t.qx, 0.9 * t.qy, 0.3 * t.H)) & tissue
    lungs &= ~t.ellipsoid((t.cx - 0.3 * t.qx, t.cy, 0.02 * t.H),
                          (0.8 * t.qx + 3, 0.9 * t.qy + 3, 0.3 * t.H + 3))
    lungs &= ~t.ellipsoid((t.cx + 0.45 * t.qx, t.cy, 0.0),
                          (0.55 * t.qx, 0.75 * t.qy, 0.24 * t.H))  # stomach, spleen
    lungs &= ~t.ellipsoid((t.cx + 0.15 * t.qx, t.cy - 0.3 * t.qy, 0.33 * t.H),
                          (0.38 * t.qx, 0.45 * t.qy, 0.2 * t.H))
    return lungs, liver


def _paint_skeleton(rng, image: np.ndarray, t: _Thorax):
    """Paint the spine (vertebral bodies with discs, canal, arch, spinous process), sternum and
    ribs; return the bone, rib and spinal-canal masks."""
    r_vb = 0.17 * t.qx
    y_canal = t.cy + t.ay - t.fat - 2.2 * r_vb
    y_vb = y_canal - 1.55 * r_vb
    bone = t.ellipsoid((t.cx, y_vb, 0), (r_vb, 0.85 * r_vb, np.inf))
    marrow = t.ellipsoid((t.cx, y_vb, 0), (r_vb - 1.5, 0.85 * r_vb - 1.5, np.inf))
    arch = t.ellipsoid((t.cx, y_canal, 0), (0.55 * r_vb + 2.5, 0.5 * r_vb + 2.5, np.inf))
    canal = t.ellipsoid((t.cx, y_canal, 0), (0.55 * r_vb, 0.5 * r_vb, np.inf))
    bone |= arch | t.ellipsoid((t.cx, y_canal + 0.5 * r_vb + 6, 0), (2.5, 6.0, np.inf))
    bone |= t.ellipsoid((t.cx, t.cy - t.ay + t.fat + 5, t.zc), (9.0, 4.0, t.rz))  # sternum
    centers, rib_r = _rib_centers(rng, t)
    ribs = shapes.stamp_balls(t.shape, t.spacing, centers, rib_r)
    rib_marrow = shapes.stamp_balls(t.shape, t.spacing, centers, 0.55 * rib_r)
    image[bone | ribs] = CHEST_HU["cortical_bone"]
    image[(marrow & ~arch) | rib_marrow] = CHEST_HU["marrow"]
    z_mm = np.arange(t.shape[2]) * t.spacing[2]
    discs = marrow & ((z_mm + rng.uniform(0, 25)) % 25.0 < 5.0)[None, None, :]
    image[discs] = CHEST_HU["disc"]
    image[canal] = CHEST_HU["soft_tissue"] - 20
    return bone, ribs, canal


def _rib_centers(rng, t: _Thorax):
    """`(centers, radius)`: points (mm) along each pair of ribs, a drawn pitch apart in z, each
    rib dropping a drawn amount towards its front end, and the ribs' radius."""
    pitch, rib_r = rng.uniform(20.0, 26.0), min(t.wall / 2, 4.0)
    a_rib, b_rib = t.ax - t.fat - t.wall / 2, t.ay - t.fat - t.wall / 2
    phi = np.deg2rad(np.linspace(100, 245, 72))
    centers = []
    for z in np.arange(t.zc - t.rz + rng.uniform(0, pitch), t.zc + t.rz, pitch):
        drop = np.linspace(0, rng.uniform(8.0, 18.0), phi.size)
        for sign in (1, -1):
            centers.append(np.stack([t.cx + sign * a_rib * np.cos(phi),
                                     t.cy + b_rib * np.sin(phi), z - drop], 1))
    return (np.concatenate(centers) if centers else np.zeros((0, 3))), rib_r


def _paint_vessels(rng, image: np.ndarray, lungs: np.ndarray, t: _Thorax):
    """Paint pulmonary vessels, bifurcating trees from each hilum kept inside the lungs; return
    their mask and the tree's segments (`shapes.branching_tree`)."""
    trees, semi = [], np.array([0.42 * t.qx, 0.92 * t.qy, t.rz])
    for side in (-1, 1):
        hilum = np.array([t.cx + side * 0.32 * t.qx, t.cy + 0.05 * t.qy, 0.56 * t.H])
        for d in ((side, 0, 1.5), (side, -0.5, 0.6), (side, 0.5, 0.6), (side, 0, 0),
                  (side, -0.5, -0.8), (side, 0.5, -0.8), (side * 0.3, 0, -1.5)):
            d = np.add(d, rng.normal(0, 0.15, 3))
            reach = 1.0 / np.linalg.norm(d / np.linalg.norm(d) / semi)  # lung radius along d
            trees.append(shapes.branching_tree(hilum, d, rng=rng, length_mm=0.4 * reach,
                                               radius_mm=2.8, depth=7, angle_deg=(15.0, 40.0)))
    tree = {k: np.concatenate([tr[k] for tr in trees]) for k in trees[0]}
    points, radii = shapes.segment_points(tree["p0"], tree["p1"], tree["r0"], tree["r1"],
                                          step_mm=0.5 * min(t.spacing))
    vessels = shapes.stamp_balls(t.shape, t.spacing, points, radii) & lungs
    image[vessels] = CHEST_HU["blood"]
    return vessels, tree


def _paint_airways(image: np.ndarray, t: _Thorax) -> np.ndarray:
    """Paint the trachea and main bronchi (air lumen, soft-tissue wall) above the hila; return
    the lumen's mask."""
    cx, cy, qx, qy, H = t.cx, t.cy, t.qx, t.qy, t.H
    carina = np.array([cx, cy - 0.05 * qy, 0.66 * H])
    p0 = np.array([[cx, cy - 0.1 * qy, H + 5], carina, carina])
    p1 = np.array([carina, [cx - 0.3 * qx, cy, 0.58 * H], [cx + 0.3 * qx, cy, 0.58 * H]])
    pts, rad = shapes.segment_points(p0, p1, [7.0, 5.0, 5.0], [6.0, 4.0, 4.0],
                                     0.5 * min(t.spacing))
    image[shapes.stamp_balls(t.shape, t.spacing, pts, rad + 1.5)] = CHEST_HU["soft_tissue"]
    airway = shapes.stamp_balls(t.shape, t.spacing, pts, rad)
    image[airway] = CHEST_HU["air"]
    return airway


def _nodule_mask(rng, kind, shape, spacing, center, r):
    """Voxels of one nodule and of its solid part (ground glass is the rest)."""
    ball = lambda c, rr: shapes.ellipsoid_mask(shape, spacing, c, (rr, rr, rr))  # noqa: E731
    if kind == "sphere":
        mask = ball(center, r)
    elif kind == "ellipsoid":
        radii = r * np.array([1.0, rng.uniform(0.6, 1.0), rng.uniform(0.5, 0.9)])
        mask = shapes.ellipsoid_mask(shape, spacing, center, radii,
                                     rotation=shapes.random_rotation(rng=rng))
    elif kind == "lobulated":
        mask = ball(center, 0.6 * r)
        for u in rng.standard_normal((4, 3)):
            mask |= ball(center + 0.4 * r * u / np.linalg.norm(u), r * rng.uniform(0.45, 0.6))
    elif kind == "spiculated":
        tips = rng.standard_normal((int(rng.integers(6, 13)), 3))
        tips = center + tips / np.linalg.norm(tips, axis=1, keepdims=True) * \
            (r * rng.uniform(1.0, 1.5, (len(tips), 1)))
        pts, rad = shapes.segment_points(np.repeat(center[None], len(tips), 0), tips, 0.7, 0.3,
                                         0.5 * min(spacing))
        mask = ball(center, 0.75 * r) | shapes.stamp_balls(shape, spacing, pts, rad)
    elif kind == "part_solid":
        mask = ball(center, r)
        return mask, ball(center, 0.45 * r)
    else:
        raise ValueError(f"`kind` must be one of {NODULE_SHAPES}. Received: kind={kind!r}.")
    return mask, mask


def _place_nodules(rng, image, lungs, spacing, n, diameter_range):
    """Paint up to `n` nodules fully inside the lungs; return their labels and records."""
    # scipy (0.8 s) on first use: `make-phantoms` / `prepare` import this Keras-free module.
    from scipy import ndimage

    shape = image.shape
    depth = ndimage.distance_transform_edt(lungs[::2, ::2, :],
                                           sampling=(2 * spacing[0], 2 * spacing[1], spacing[2]))
    labels = np.zeros(shape, np.uint8)
    records = []
    log_lo, log_hi = np.log(diameter_range[0]), np.log(diameter_range[1])
    for _ in range(n):
        diameter, kind = float(np.exp(rng.uniform(log_lo, log_hi))), str(rng.choice(NODULE_SHAPES))
        while diameter >= diameter_range[0]:
            ok = depth >= diameter / 2 + 2.0
            idx = np.flatnonzero(ok)
            if idx.size:
                pick = np.array(np.unravel_index(idx[rng.integers(idx.size)], ok.shape))
                center = pick * [2 * spacing[0], 2 * spacing[1], spacing[2]]
                break
            diameter *= 0.8
        else:
            break  # the lungs have no room left
        mask, solid = _nodule_mask(rng, kind, shape, spacing, center, diameter / 2)
        mask &= lungs & (labels == 0)
        solid &= mask
        image[mask] = rng.uniform(-650.0, -450.0)  # ground glass (covered where solid)
        image[solid] = rng.uniform(-20.0, 80.0)
        labels[mask] = len(records) + 1
        records.append({"center_mm": center, "diameter_mm": diameter, "kind": kind,
                        "label": len(records) + 1})
        # Keep later nodules apart: mark this one's surroundings as taken.
        grid = np.ogrid[tuple(slice(0, s) for s in depth.shape)]
        dist2 = sum(((g * step) - c) ** 2 for g, step, c in
                    zip(grid, (2 * spacing[0], 2 * spacing[1], spacing[2]), center))
        depth[dist2 < (diameter / 2 + diameter_range[1] / 2 + 4.0) ** 2] = 0
    return labels, records


def _check_shape(shape) -> Tuple[int, int, int]:
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3 or min(shape[:2]) < 64 or shape[2] < 32:
        raise ValueError(f"`shape` must be 3 sizes of at least (64, 64, 32). Received: {shape}.")
    return shape


def make_chest_phantom(rng: np.random.Generator, *, shape: Sequence[int] = DEFAULT_SHAPE,
                       spacing: Optional[Sequence[float]] = None, n_nodules: Optional[int] = None,
                       n_false_positives: Optional[int] = None,
                       diameter_range: Tuple[float, float] = (3.0, 30.0),
                       noise_std: float = 20.0) -> dict:
    """Draw one synthetic chest CT.

    Args:
        rng: random generator (one per scan).
        shape: (x, y, z) voxels; at least (64, 64, 32).
        spacing: mm; default drawn: 0.7-0.9 in-plane, one of 1.25/1.5/2/2.5 mm slices.
        n_nodules: default drawn in 3..6.
        n_false_positives: vessel-like candidates (class 0); default drawn in 6..12.
        diameter_range: nodule diameters in mm (log-uniform; large ones shrink to fit the lungs).
        noise_std: scanner noise in HU.

    Returns:
        dict: `hu` int16 (x, y, z); `nodule_mask` uint8 (0, or the nodule's label);
        `lung_mask`, `body_mask` bool; `spacing`, `origin` (x, y, z) mm; `nodules` (list of dicts with world
        `center`, `diameter_mm`, `kind`, `label`); `false_positives` (world mm, `(m, 3)`).
    """
    shape = _check_shape(shape)
    if spacing is None:
        spacing = (rng.uniform(0.7, 0.9),) * 2 + (float(rng.choice([1.25, 1.5, 2.0, 2.5])),)
    spacing = np.asarray(spacing, dtype=float)
    W = np.asarray(shape) * spacing
    origin = np.array([-W[0] / 2, -W[1] / 2 - rng.uniform(0, 20), -W[2] - rng.uniform(50, 200)])
    image, body, lungs, vessels, tree = _anatomy(rng, shape, spacing)
    n_nodules = int(rng.integers(3, 7)) if n_nodules is None else int(n_nodules)
    labels, nodules = _place_nodules(rng, image, lungs, spacing, n_nodules, diameter_range)

    # False positives: vessel branch points (bifurcations) inside the lungs, away from nodules.
    n_fp = int(rng.integers(6, 13)) if n_false_positives is None else int(n_false_positives)
    pool = tree["p0"][(tree["level"] >= 1) & (tree["r0"] >= 0.8)]
    vox = np.round(pool / spacing).astype(int)
    inside = np.all((vox >= 0) & (vox < shape), axis=1)
    pool, vox = pool[inside], vox[inside]
    pool = pool[vessels[tuple(vox.T)] & (labels[tuple(vox.T)] == 0)]
    for nod in nodules:
        pool = pool[np.linalg.norm(pool - nod["center_mm"], axis=1) > nod["diameter_mm"] / 2 + 6]
    fps = pool[rng.permutation(len(pool))[:n_fp]]

    hu = shapes.finalize_intensities(image, rng=rng, noise_std=noise_std)
    for nod in nodules:
        nod["center"] = nod.pop("center_mm") + origin
    return {"hu": hu, "nodule_mask": labels, "lung_mask": lungs, "body_mask": body,
            "spacing": tuple(float(v) for v in spacing), "origin": tuple(float(v) for v in origin), "nodules": nodules, "false_positives": fps + origin}


def phantom_series_uid(seed: int, index: int) -> str:
    """A deterministic DICOM-style UID (`2.25.<integer>`) for phantom scan `index` of `seed`."""
    digest = hashlib.sha256(f"models-genesis chest phantom {seed} {index}".encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:15], "big"))


def subset_split(n_subsets: int) -> dict:
    """Train/validation/test subsets in the release's proportions (5:2:3 of LUNA16's 10).

    `subset_split(10)` is the release's split (0-4, 5-6, 7-9); fewer subsets keep every part
    non-empty from 3 subsets on (`subset_split(6)`: 0-2, 3, 4-5).
    """
    k = int(n_subsets)
    if k < 3:
        raise ValueError(f"A train/validation/test split needs at least 3 subsets. "
                         f"Received: n_subsets={n_subsets!r}.")
    n_val = max(1, round(0.2 * k))
    n_test = max(1, round(0.3 * k))
    n_train = k - n_val - n_test
    ids = [str(i) for i in range(k)]
    return {"train": ids[:n_train], "val": ids[n_train:n_train + n_val],
            "test": ids[n_train + n_val:]}


def make_chest_phantoms(out_dir, n: int = 20, seed: int = 0, n_subsets: Optional[int] = None, *,
                        shape: Sequence[int] = DEFAULT_SHAPE, progress: bool = True,
                        overwrite: bool = False, **phantom_kwargs) -> dict:
    """Write a LUNA16-shaped phantom data set; scan `i` goes to `subset{i % n_subsets}`.

    Files that exist are never replaced unless `overwrite` (then only the files this call writes
    are replaced; nothing else in `out_dir` is touched).

    Args:
        out_dir: output folder (created); files are written atomically.
        n: number of scans (>= n_subsets so that every subset holds one).
        seed: scan `i` is drawn with `numpy.random.default_rng([seed, i])`.
        n_subsets: number of subset folders; default 10 (the release's split), or `n` when
            there are fewer scans (`summary["split"]` then gives a split in the same proportions).
        shape: (x, y, z) voxels per scan.
        progress: show a tqdm bar.
        overwrite: replace files of the same names (an earlier phantom set).
        **phantom_kwargs: passed to `make_chest_phantom` (e.g. `noise_std`).

    Returns:
        Summary dict: `out_dir`, `n_scans`, `n_subsets`, `split` (train/val/test subsets, None
        below 3 subsets), `scans_per_subset`, `n_nodules`, `n_candidates`, `annotations`,
        `candidates`, `seed`, `shape`.

    Raises:
        ValueError: `n < n_subsets` or `n < 1`.
        FileExistsError: a file this call would write exists and `overwrite` is False.
        NotADirectoryError, PermissionError: `out_dir` is a file or not writable.
    """
    n_subsets = _check_counts(n, n_subsets)
    shape = _check_shape(shape)
    out_dir = os.fspath(out_dir)
    check_output_dir(out_dir, name="out_dir")
    if not overwrite:
        refuse_to_replace(_planned_files(out_dir, int(n), seed, int(n_subsets)), where=out_dir,
                          what="phantom files")
    # Scan i: drawn with its own generator, written to subset i % n_subsets.
    annotations, candidates, per_subset = [], [], {}
    for i in tqdm(range(int(n)), desc="make-phantoms", unit="scan", disable=not progress):
        scan = make_chest_phantom(np.random.default_rng([int(seed), i]), shape=shape,
                                  **phantom_kwargs)
        uid, subset = phantom_series_uid(seed, i), i % int(n_subsets)
        _write_scan(out_dir, subset, uid, scan)
        scan_annotations, scan_candidates = _table_rows(uid, scan)
        annotations += scan_annotations
        candidates += scan_candidates
        per_subset[subset] = per_subset.get(subset, 0) + 1
    shapes.write_csv(os.path.join(out_dir, "annotations.csv"),
                     ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"], annotations)
    shapes.write_csv(os.path.join(out_dir, "candidates.csv"),
                     ["seriesuid", "coordX", "coordY", "coordZ", "class"], candidates)
    summary = {"out_dir": out_dir, "n_scans": int(n), "n_subsets": int(n_subsets),
               "split": subset_split(n_subsets) if int(n_subsets) >= 3 else None,
               "scans_per_subset": per_subset,
               "n_nodules": len(annotations), "n_candidates": len(candidates),
               "annotations": os.path.join(out_dir, "annotations.csv"),
               "candidates": os.path.join(out_dir, "candidates.csv"), "seed": int(seed),
               "shape": list(shape), "generator": "models_genesis.data.phantoms.chest"}
    write_json(os.path.join(out_dir, "phantoms.json"), summary)
    return summary


def _check_counts(n, n_subsets):
    """`n_subsets`, defaulted to `min(10, n)`, once `n` and `n_subsets` are checked.

    Raises:
        ValueError: `n` not a positive integer, or fewer scans than subsets.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"`n` must be a positive integer. Received: n={n!r}.")
    if n_subsets is None:
        n_subsets = min(10, int(n))
    if int(n_subsets) < 1 or int(n) < int(n_subsets):
        raise ValueError(f"`n` must be at least `n_subsets` >= 1 so every subset gets a scan. "
                         f"Received: n={n}, n_subsets={n_subsets}.")
    return n_subsets


def _planned_files(out_dir: str, n: int, seed: int, n_subsets: int) -> list:
    """Every file `make_chest_phantoms` writes for `n` scans."""
    planned = [os.path.join(out_dir, name) for name in
               ("annotations.csv", "candidates.csv", "phantoms.json")]
    for i in range(n):
        uid = phantom_series_uid(seed, i)
        planned += [os.path.join(out_dir, f"subset{i % n_subsets}", f"{uid}.{ext}")
                    for ext in ("mhd", "raw")]
        planned += [os.path.join(out_dir, "masks", f"{uid}.{ext}") for ext in ("mhd", "zraw")]
    return planned


def _write_scan(out_dir: str, subset: int, uid: str, scan: dict) -> None:
    """Write one scan (`subset{K}/{uid}.mhd`) and its nodule mask (`masks/{uid}.mhd`)."""
    geometry = dict(spacing=scan["spacing"], origin=scan["origin"])
    write_volume(scan["hu"], os.path.join(out_dir, f"subset{subset}", f"{uid}.mhd"), **geometry)
    write_volume(scan["nodule_mask"], os.path.join(out_dir, "masks", f"{uid}.mhd"),
                 compress=True, **geometry)


def _table_rows(uid: str, scan: dict) -> Tuple[list, list]:
    """One scan's rows of `annotations.csv` (its nodules) and `candidates.csv` (its nodules,
    class 1, then its false positives, class 0), in world mm."""
    annotations, candidates = [], []
    for nod in scan["nodules"]:
        annotations.append([uid, *map(float, nod["center"]), float(nod["diameter_mm"])])
        candidates.append([uid, *map(float, nod["center"]), 1])
    candidates += [[uid, *map(float, p), 0] for p in scan["false_positives"]]
    return annotations, candidates
