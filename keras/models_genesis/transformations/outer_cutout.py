"""Outer cutout, i.e. out-painting (paper Sec. 2.1; docs/release_reference.md, 'Transformations',
step 4).

The cube is replaced by uniform noise in [0, 1) except inside one box whose side is
`dim - randint(3*dim//7, 4*dim//7)` per axis and up to `max_extra_boxes` (4) more boxes of the
same law (each further box while a draw is below `continue_prob`, 0.95), all `margin` (3) voxels
from the border. The original survives exactly where a box reveals it; the network must
extrapolate the outside.

The paper says both cutouts hide under 1/4 of the sub-volume. The release's inner cutout does
(at most 5 boxes of (dim//3)^3, about 6 % hidden on average on 64x64x32), but its outer cutout
hides 54-91 % (median 67 %, measured over 2,000 draws): these defaults follow the release; smaller
`min_cut`/`max_cut` fractions reveal more.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from models_genesis.transformations._checks import (
    apply_with_prob, box_count, box_slices, check_count, check_fraction, check_prob, draw_boxes,
    MARGIN, fraction_of,
)

# The release's values (docs/release_reference.md, 'Transformations'); `TransformConfig` reads them
# from here.
MAX_EXTRA_BOXES = 4
CONTINUE_PROB = 0.95
MIN_CUT = (3, 7)
MAX_CUT = (4, 7)


def sample_outer_cutout_params(rng: np.random.Generator, shape: Sequence[int], *,
                               max_extra_boxes: int = MAX_EXTRA_BOXES,
                               continue_prob: float = CONTINUE_PROB, min_cut=MIN_CUT,
                               max_cut=MAX_CUT, margin: int = MARGIN) -> Dict[str, object]:
    """Draw the revealed boxes and the noise cube.

    Args:
        rng: random generator.
        shape: spatial shape `(rows, cols[, deps])`.
        max_extra_boxes: most boxes after the first (release 4).
        continue_prob: probability of each further box (release 0.95).
        min_cut, max_cut: a box side is `dim - randint(min_cut*dim, max_cut*dim)`, the cuts given as
            fractions `(num, den)`, `num*dim//den` (release `(3, 7)` and `(4, 7)`).
        margin: voxels kept from every border (release 3).

    Returns:
        dict with `starts`, `sizes` (`(n, ndim)` int64, n >= 1) and `noise` (float32, `shape`).

    Raises:
        ValueError: boxes that cannot fit, or bad parameters.
    """
    max_extra_boxes = check_count(max_extra_boxes, "max_extra_boxes")
    margin = check_count(margin, "margin")
    continue_prob = check_prob(continue_prob, "continue_prob")
    dims = np.array(shape, dtype=np.int64)
    cut_lo = fraction_of(shape, check_fraction(min_cut, "min_cut"))
    cut_hi = fraction_of(shape, check_fraction(max_cut, "max_cut"))
    noise = rng.random(tuple(int(d) for d in shape), dtype=np.float32)
    n = 1 + box_count(rng, max_extra_boxes, continue_prob)
    starts, sizes = draw_boxes(rng, shape, n, dims - cut_hi, dims - cut_lo, margin, "Outer-cutout")
    return {"starts": starts, "sizes": sizes, "noise": noise}


def apply_outer_cutout(x: np.ndarray, params: Dict[str, object]) -> np.ndarray:
    """Noise everywhere except inside the boxes of `params`; returns a new float32 array."""
    x = np.asarray(x, dtype=np.float32)
    out = np.array(params["noise"], dtype=np.float32, copy=True)
    if out.shape != x.shape:
        raise ValueError(f"Outer-cutout noise of shape {out.shape} does not match x.shape={x.shape}.")
    for start, size in zip(params["starts"], params["sizes"]):
        box = box_slices(start, size)
        out[box] = x[box]
    return out


def outer_cutout(x, *, rng: np.random.Generator, prob: float = 1.0, **params) -> np.ndarray:
    """Out-painting transformation of one cube or slice (paper Sec. 2.1).

    Args:
        x: `(rows, cols[, deps])` (optionally a trailing channel of size 1), values in [0, 1].
        rng: random generator.
        prob: probability of transforming at all (`0` returns a copy of `x`).
        **params: `max_extra_boxes`, `continue_prob`, `min_cut`, `max_cut`, `margin`
            (see `sample_outer_cutout_params`).

    Returns:
        New float32 array, same shape as `x`, values in [0, 1].

    Example:
        >>> y = outer_cutout(cube, rng=np.random.default_rng(0))
    """
    return apply_with_prob(x, rng, prob, sample_outer_cutout_params, apply_outer_cutout, **params)
