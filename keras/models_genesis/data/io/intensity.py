"""Intensities to [0, 1]: the CT window and per-scan min-max (paper Sec. 3.1).

Intensity normalisation (`normalize_intensity`, the one definition every loader, `prepare` and
`predict-volume` use): `"ct"` clips to [-1000, 1000] HU and scales to [0, 1] (paper Sec. 3.1,
docs/release_reference.md, 'Pre-training data'); `"mri"` scales each patient's scan by its own
minimum and maximum (what BMS does on BraTS FLAIR, whose intensities have no physical unit). The
release's advice for MRI pre-training cubes, clipping to [0, 4000], is the explicit window
`normalize_intensity(x, (0, 4000))`.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np

CT_WINDOW = (-1000.0, 1000.0)
MODALITIES = ("ct", "mri", "minmax")  # "minmax" is another name for "mri"
# The per-scan percentiles an MR scan (no physical unit) is scaled by, for pre-training cubes and
# the channels of a custom task alike (as nnU-Net clips its intensities).
MR_PERCENTILES = (0.5, 99.5)


def intensity_window(x, modality: Union[str, Sequence[float]] = "ct") -> Tuple[float, float]:
    """The `(lo, hi)` intensities mapped to 0 and 1 for `x`.

    Args:
        x: the whole scan (the window of `"mri"` depends on it), any shape.
        modality: `"ct"` ([-1000, 1000] HU), `"mri"` or `"minmax"` (this scan's own min and max:
            per-patient min-max, as BMS), or an explicit `(lo, hi)` window with lo < hi.

    Returns:
        `(lo, hi)` floats; for a constant scan `lo == hi` (it then maps to zeros).
    """
    if isinstance(modality, str):
        if modality == "ct":
            return CT_WINDOW
        if modality in ("mri", "minmax"):
            x = np.asarray(x)
            return (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
        raise ValueError(f"`modality` must be one of {list(MODALITIES)} or a (lo, hi) window. "
                         f"Received: modality={modality!r}.")
    window = tuple(float(v) for v in np.asarray(modality, dtype=float).reshape(-1))
    if len(window) != 2 or not window[0] < window[1]:
        raise ValueError(f"An intensity window must be (lo, hi) with lo < hi. "
                         f"Received: modality={modality!r}.")
    return window


def percentile_window(x, percentiles: Tuple[float, float] = MR_PERCENTILES) -> Tuple[float, float]:
    """The `(lo, hi)` intensity percentiles of a scan: a window robust to a few outlier voxels.

    Args:
        x: the whole scan, any shape.
        percentiles: (low, high) in [0, 100], low < high.

    Returns:
        `(lo, hi)` floats (`lo == hi` for a constant scan, which then maps to zeros).
    """
    lo_p, hi_p = (float(v) for v in percentiles)
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ValueError(f"`percentiles` must be (low, high) with 0 <= low < high <= 100. "
                         f"Received: percentiles={percentiles!r}.")
    x = np.asarray(x)
    if not x.size:
        return (0.0, 1.0)
    lo, hi = np.percentile(x, [lo_p, hi_p])
    return float(lo), float(hi)


def scale_to_unit(x, window: Tuple[float, float]) -> np.ndarray:
    """Clip `x` to `window` and scale it linearly to [0, 1] (float32; zeros when lo == hi)."""
    lo, hi = window
    out = np.array(x, dtype=np.float32)  # a copy, an array even for a scalar
    if hi <= lo:
        return np.zeros(out.shape, np.float32)
    out -= np.float32(lo)
    out /= np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def normalize_intensity(x, modality: Union[str, Sequence[float]] = "ct") -> np.ndarray:
    """Scale a scan's intensities to [0, 1] (paper Sec. 3.1;
    docs/release_reference.md, 'Pre-training data').

    Args:
        x: array of any shape (HU for CT), the whole scan for `"mri"`.
        modality: `"ct"` (clip [-1000, 1000] HU), `"mri"` (= `"minmax"`: per-patient min-max, the
            BMS rule), or a `(lo, hi)` window (e.g. `(0, 4000)`, the release's MRI advice).

    Returns:
        float32 array of the same shape, values in [0, 1].
    """
    x = np.asarray(x)
    if x.dtype.kind == "f" and np.isnan(x).any():
        raise ValueError(f"Cannot normalise an array holding {int(np.isnan(x).sum())} NaN values.")
    return scale_to_unit(x, intensity_window(x, modality))
