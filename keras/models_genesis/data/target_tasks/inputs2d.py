"""2D and 2.5D inputs for the target tasks: the reformatting of paper Sec. 4.5 (Fig. 7, Table 4).

"Two different methods to reformat 3D data into 2D input: the regular 2D representation obtained
by extracting adjacent axial slices, and the 2.5D representation composed of axial, coronal, and
sagittal slices" (Sec. 4.5). For classification (NCC, ECC) "the model predicts labels of slices
extracted from the center locations"; for segmentation (NCS, LCS, BMS) "the model predicts
segmentation mask slice by slice and form[s] the 3D segmentation volume by simply stacking the 2D
segmentation maps", which is then scored in 3D like the 3D models' output.

Everything works on the target tasks' crops `(N, rows, cols, deps)` (channels_last, candidate or
object at the centre voxel `(rows//2, cols//2, deps//2)`) and returns channels_last 2D batches
with 3 channels, the input of `models.heads2d.target_model_2d`:

* `slice_inputs`: the centre axial slice and its two neighbours -> `(N, rows, cols, 3)`;
* `orthogonal_inputs`: axial, coronal and sagittal planes through the centre voxel, each
  `size x size` (default: the smallest crop side) -> `(N, size, size, 3)`;
* `slicewise_inputs` / `stack_slices`: every axial slice with its neighbours (edge slices repeat
  the border slice) -> `(N * deps, rows, cols, 3)`, and the 2D predictions back to
  `(N, rows, cols, deps, k)`; `predict_slicewise` does both around a 2D model.

`axial_stack_at` cuts three adjacent axial slices from a whole scan at a voxel, refusing a slice
index outside the scan.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

N_CHANNELS = 3


def _crops(crops, name: str = "crops") -> np.ndarray:
    a = np.asarray(crops)
    if a.ndim == 5 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 4:
        raise ValueError(f"`{name}` must be (N, rows, cols, deps) or (N, rows, cols, deps, 1). "
                         f"Received: {name}.shape={a.shape}.")
    if a.shape[3] < N_CHANNELS:
        raise ValueError(f"`{name}` needs at least {N_CHANNELS} slices (deps). "
                         f"Received: {name}.shape={a.shape}.")
    return a


def slice_inputs(crops) -> np.ndarray:
    """The 2D slice-based input: axial slices `deps//2 - 1, deps//2, deps//2 + 1` as channels.

    Returns:
        `(N, rows, cols, 3)`, same dtype.
    """
    a = _crops(crops)
    z = a.shape[3] // 2
    return np.ascontiguousarray(a[:, :, :, z - 1:z + 2])


def orthogonal_inputs(crops, size: Optional[int] = None) -> np.ndarray:
    """The 2.5D input: axial, coronal and sagittal `size x size` planes through the centre voxel.

    Channel 0 is `crop[x0:x0+s, y0:y0+s, cz]` (axial), 1 is `crop[x0:x0+s, cy, z0:z0+s]` (coronal),
    2 is `crop[cx, y0:y0+s, z0:z0+s]` (sagittal), with `(cx, cy, cz)` the centre voxel and
    `x0 = cx - s//2` (likewise y0, z0).

    Args:
        crops: `(N, rows, cols, deps[, 1])`.
        size: plane side; default and maximum: the smallest crop side.

    Returns:
        `(N, size, size, 3)`.
    """
    a = _crops(crops)
    n, r, c, d = a.shape
    size = min(r, c, d) if size is None else int(size)
    if not 1 <= size <= min(r, c, d):
        raise ValueError(f"`size` must be in [1, {min(r, c, d)}] (the smallest crop side). "
                         f"Received: size={size}.")
    cx, cy, cz = r // 2, c // 2, d // 2
    xs, ys, zs = (slice(k - size // 2, k - size // 2 + size) for k in (cx, cy, cz))
    return np.stack([a[:, xs, ys, cz], a[:, xs, cy, zs], a[:, cx, ys, zs]], axis=-1)


def _neighbour_index(deps: int) -> np.ndarray:
    """`(deps, 3)` slice indices `z-1, z, z+1`, the edges repeating the border slice."""
    z = np.arange(deps)[:, None] + np.arange(-1, 2)[None, :]
    return np.clip(z, 0, deps - 1)


def slicewise_inputs(crops) -> np.ndarray:
    """Every axial slice with its two neighbours as channels: `(N * deps, rows, cols, 3)`, slice
    `z` of crop `i` at row `i * deps + z`."""
    a = _crops(crops)
    n, r, c, d = a.shape
    stacked = a[:, :, :, _neighbour_index(d)]  # (N, r, c, d, 3)
    return np.ascontiguousarray(np.moveaxis(stacked, 3, 1).reshape(n * d, r, c, N_CHANNELS))


def slicewise_targets(masks) -> np.ndarray:
    """Masks `(N, rows, cols, deps[, k])` as per-slice targets `(N * deps, rows, cols, k)`."""
    m = np.asarray(masks)
    if m.ndim == 4:
        m = m[..., None]
    if m.ndim != 5:
        raise ValueError(f"`masks` must be (N, rows, cols, deps[, k]). Received: masks.shape={m.shape}.")
    n, r, c, d, k = m.shape
    return np.ascontiguousarray(np.moveaxis(m, 3, 1).reshape(n * d, r, c, k))


def stack_slices(predictions, deps: int) -> np.ndarray:
    """2D predictions `(N * deps, rows, cols[, k])` stacked back to volumes `(N, rows, cols, deps, k)`."""
    p = np.asarray(predictions)
    if p.ndim == 3:
        p = p[..., None]
    if p.ndim != 4 or deps < 1 or len(p) % deps:
        raise ValueError(f"`predictions` must be (N * deps, rows, cols[, k]) with deps={deps}. "
                         f"Received: predictions.shape={p.shape}.")
    n = len(p) // deps
    return np.moveaxis(p.reshape(n, deps, *p.shape[1:]), 1, 3)


def predict_slicewise(model, crops, *, batch_size: int = 32) -> np.ndarray:
    """Segment crops slice by slice with a 2D model and stack the maps: `(N, rows, cols, deps, k)`."""
    a = _crops(crops)
    pred = model.predict(slicewise_inputs(a).astype(np.float32), batch_size=batch_size, verbose=0)
    return stack_slices(np.asarray(pred), a.shape[3])


def axial_stack_at(volume, center: Sequence[int], shape: Sequence[int] = (64, 64), *,
                   pad_value: float = 0.0) -> np.ndarray:
    """Three adjacent axial slices of a scan `(x, y, z)` around voxel `center`: `(rows, cols, 3)`.

    In-plane, the patch is centred on `center` (`x - rows//2 ...`) and padded with `pad_value`
    beyond the scan; slices `z-1, z, z+1` must exist.

    Raises:
        ValueError: a slice index outside the scan, or a centre outside it in-plane.
    """
    v = np.asarray(volume)
    if v.ndim != 3:
        raise ValueError(f"`volume` must be (x, y, z). Received: volume.shape={v.shape}.")
    x, y, z = (int(k) for k in center)
    if not (1 <= z <= v.shape[2] - 2):
        raise ValueError(f"Slice index z={z} is outside the scan for a 3-slice input: slices "
                         f"{z - 1}..{z + 1} of a scan with {v.shape[2]} slices (0..{v.shape[2] - 1}) "
                         f"are needed. Received: center={tuple(center)}.")
    if not (0 <= x < v.shape[0] and 0 <= y < v.shape[1]):
        raise ValueError(f"`center` {tuple(center)} is outside the scan of shape {v.shape}.")
    r, c = (int(s) for s in shape)
    out = np.full((r, c, N_CHANNELS), pad_value, dtype=np.result_type(v.dtype, np.float32))
    x0, y0 = x - r // 2, y - c // 2
    sx = slice(max(x0, 0), min(x0 + r, v.shape[0]))
    sy = slice(max(y0, 0), min(y0 + c, v.shape[1]))
    out[sx.start - x0:sx.stop - x0, sy.start - y0:sy.stop - y0] = v[sx, sy, z - 1:z + 2]
    return out
