"""Shape primitives for synthetic phantoms: ellipsoids, tubes and vessel trees, noise, files.

Geometry is in millimetres measured from voxel (0, 0, 0) along the array axes (x, y, z), so a
shape keeps its physical size whatever the spacing. Masks are computed only inside the shape's
bounding box. Every random function takes `rng` (a `numpy.random.Generator`).
"""

from __future__ import annotations

import csv
import os
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np


def _box(shape, spacing, center_mm, half_mm):
    """Slices of the voxels within `half_mm` of `center_mm` and their mm coordinates."""
    slices, coords = [], []
    for n, s, c, h in zip(shape, spacing, center_mm, half_mm):
        lo = 0 if not np.isfinite(h) else int(np.clip(np.floor((c - h) / s), 0, n))
        hi = n if not np.isfinite(h) else int(np.clip(np.ceil((c + h) / s) + 1, 0, n))
        slices.append(slice(lo, hi))
        coords.append(np.arange(lo, hi) * s - c)
    return tuple(slices), coords


def ellipsoid_mask(shape: Sequence[int], spacing: Sequence[float], center_mm, radii_mm, *,
                   rotation: Optional[np.ndarray] = None, exponent: float = 2.0) -> np.ndarray:
    """Boolean mask of a (super-)ellipsoid `sum(|u_i / r_i| ** exponent) <= 1`.

    Args:
        shape: volume shape (x, y, z).
        spacing: voxel size in mm.
        center_mm: centre, mm from voxel (0, 0, 0).
        radii_mm: semi-axes in mm; `np.inf` makes a cylinder along that axis (no rotation).
        rotation: optional 3x3 matrix whose rows are the ellipsoid's axes in array coordinates.
        exponent: 2 for an ellipsoid, larger for boxier shapes.

    Returns:
        bool array of `shape`.
    """
    radii = np.asarray(radii_mm, dtype=float)
    half = radii if rotation is None else np.full(3, radii.max())
    mask = np.zeros(tuple(shape), bool)
    slices, (gx, gy, gz) = _box(shape, spacing, center_mm, half)
    if min(len(gx), len(gy), len(gz)) == 0:
        return mask
    grids = np.ix_(gx, gy, gz)
    if rotation is None:
        axes = grids
    else:
        rot = np.asarray(rotation, dtype=float)
        axes = [rot[i, 0] * grids[0] + rot[i, 1] * grids[1] + rot[i, 2] * grids[2] for i in range(3)]
    total = sum(np.abs(a / r) ** exponent for a, r in zip(axes, radii))
    mask[slices] = total <= 1.0
    return mask


def random_rotation(*, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def segment_points(p0, p1, r0, r1, step_mm: float) -> Tuple[np.ndarray, np.ndarray]:
    """Points every `step_mm` along segments `p0[i] -> p1[i]` `(n, 3)`, radii interpolated.

    Returns:
        `(points (m, 3), radii (m,))` in mm.
    """
    p0, p1 = np.atleast_2d(p0).astype(float), np.atleast_2d(p1).astype(float)
    r0, r1 = np.broadcast_to(r0, len(p0)).astype(float), np.broadcast_to(r1, len(p0)).astype(float)
    counts = np.maximum(np.ceil(np.linalg.norm(p1 - p0, axis=1) / step_mm).astype(int), 1) + 1
    seg = np.repeat(np.arange(len(p0)), counts)
    t = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)) / \
        np.repeat(counts - 1, counts)
    points = p0[seg] + t[:, None] * (p1[seg] - p0[seg])
    return points, r0[seg] + t * (r1[seg] - r0[seg])


def stamp_balls(shape: Sequence[int], spacing: Sequence[float], centers_mm, radii_mm,
                out: Optional[np.ndarray] = None, resolution_mm: float = 0.25) -> np.ndarray:
    """Union of balls (mm centres and radii) as a bool mask; radii grouped in `resolution_mm`.

    Vectorised: each radius group stamps all its balls with one scatter of precomputed offsets.
    """
    shape, spacing = tuple(shape), np.asarray(spacing, dtype=float)
    out = np.zeros(shape, bool) if out is None else out
    centers = np.asarray(centers_mm, dtype=float).reshape(-1, 3)
    radii = np.broadcast_to(np.asarray(radii_mm, dtype=float), len(centers))
    keys = np.round(radii / resolution_mm).astype(int)
    voxel = np.round(centers / spacing).astype(int)
    flat = out.reshape(-1)
    for key in np.unique(keys[keys > 0]):
        radius = key * resolution_mm
        reach = np.ceil(radius / spacing).astype(int)
        offs = np.stack(np.meshgrid(*[np.arange(-h, h + 1) for h in reach], indexing="ij"), -1)
        offs = offs[((offs * spacing) ** 2).sum(-1) <= radius ** 2]
        idx = (voxel[keys == key][:, None, :] + offs[None]).reshape(-1, 3)
        idx = idx[np.all((idx >= 0) & (idx < shape), axis=1)]
        flat[np.ravel_multi_index(idx.T, shape)] = True
    return out


def branching_tree(root_mm, direction, *, rng: np.random.Generator, length_mm: float,
                   radius_mm: float, depth: int, angle_deg: Tuple[float, float] = (20.0, 45.0),
                   length_ratio: float = 0.8, radius_ratio: float = 0.72):
    """Random bifurcating tree of straight segments (e.g. pulmonary vessels).

    Each branch splits into two children turned by an angle drawn from `angle_deg`, around a
    random axis, with length and radius scaled by `length_ratio` and `radius_ratio`.

    Returns:
        dict of arrays: `p0`, `p1` `(n, 3)` mm, `r0`, `r1` `(n,)` mm, `level` `(n,)` int.
    """
    segs = []
    stack = [(np.asarray(root_mm, float), np.asarray(direction, float), length_mm, radius_mm, 0)]
    while stack:  # a loop over branches (a few hundred), not over voxels
        start, d, length, radius, level = stack.pop()
        d = d / np.linalg.norm(d)
        end = start + d * length * rng.uniform(0.8, 1.2)
        segs.append((start, end, radius, radius * radius_ratio, level))
        if level + 1 < depth:
            for sign in (-1.0, 1.0):
                axis = np.cross(d, rng.standard_normal(3))
                axis /= np.linalg.norm(axis) + 1e-12
                angle = np.deg2rad(rng.uniform(*angle_deg)) * sign
                turned = d * np.cos(angle) + np.cross(axis, d) * np.sin(angle)
                stack.append((end, turned, length * length_ratio, radius * radius_ratio, level + 1))
    p0, p1, r0, r1, level = (np.array(v) for v in zip(*segs))
    return {"p0": p0, "p1": p1, "r0": r0, "r1": r1, "level": level}


def smooth_noise(shape: Sequence[int], *, rng: np.random.Generator, sigma_vox,
                 std: float = 1.0) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to standard deviation `std`, float32."""
    # scipy (0.8 s) on first use: `make-phantoms` / `prepare` import this Keras-free module.
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.standard_normal(tuple(shape), dtype=np.float32), sigma_vox)
    noise *= np.float32(std / (noise.std() + 1e-12))
    return noise


def finalize_intensities(image: np.ndarray, *, rng: np.random.Generator, blur_vox: float = 0.5,
                         noise_std: float = 20.0, noise_sigma_vox: float = 0.6,
                         value_range: Tuple[float, float] = (-1024.0, 3071.0),
                         dtype=np.int16) -> np.ndarray:
    """Partial-volume blur, correlated scanner noise, clip and round to `dtype`."""
    # scipy (0.8 s) on first use: `make-phantoms` / `prepare` import this Keras-free module.
    from scipy import ndimage

    out = ndimage.gaussian_filter(image.astype(np.float32), blur_vox) if blur_vox > 0 else \
        image.astype(np.float32)
    if noise_std > 0:
        out += smooth_noise(out.shape, rng=rng, sigma_vox=noise_sigma_vox, std=noise_std)
    np.clip(out, *value_range, out=out)
    return np.rint(out).astype(dtype)


def write_csv(path, header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """Write a CSV atomically (temporary name, then rename). Floats keep 4 decimals."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow([f"{v:.4f}" if isinstance(v, float) else v for v in row])
    os.replace(tmp, path)
    return path
