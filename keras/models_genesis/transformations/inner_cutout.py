"""Inner cutout, i.e. in-painting (paper Sec. 2.1; docs/release_reference.md, 'Transformations',
step 4).

Up to `max_boxes` boxes (release 5; the count goes on while a draw is below `continue_prob`,
0.95) are filled with uniform noise in [0, 1). Each side is random in `[dim//6, dim//3]` and every
box keeps `margin` (3) voxels from the border. The network must restore the hidden interior from
its surroundings.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from models_genesis.transformations._checks import (
    apply_with_prob, box_count, box_slices, check_count, check_fraction, check_prob, draw_boxes,
    MARGIN, fraction_of,
)

# The release's values (docs/release_reference.md, 'Transformations'); `TransformConfig` and
# in-painting read them from here.
MAX_BOXES = 5
CONTINUE_PROB = 0.95
MIN_SIZE = (1, 6)
MAX_SIZE = (1, 3)


def sample_inner_cutout_params(rng: np.random.Generator, shape: Sequence[int], *,
                               max_boxes: int = MAX_BOXES, continue_prob: float = CONTINUE_PROB,
                               min_size=MIN_SIZE, max_size=MAX_SIZE, margin: int = MARGIN) -> Dict[str, object]:
    """Draw the boxes and their noise.

    Args:
        rng: random generator.
        shape: spatial shape `(rows, cols[, deps])`.
        max_boxes: most boxes (release 5).
        continue_prob: probability of each further box (release 0.95; 0 boxes happen).
        min_size, max_size: box side bounds as fractions `(num, den)` of each axis,
            `num*dim//den` (release `(1, 6)` and `(1, 3)`).
        margin: voxels kept from every border (release 3).

    Returns:
        dict with `starts`, `sizes` (`(n, ndim)` int64) and `noise` (list of float32 boxes).

    Raises:
        ValueError: boxes that cannot fit, or bad parameters.
    """
    max_boxes = check_count(max_boxes, "max_boxes")
    margin = check_count(margin, "margin")
    continue_prob = check_prob(continue_prob, "continue_prob")
    lo = fraction_of(shape, check_fraction(min_size, "min_size"))
    hi = fraction_of(shape, check_fraction(max_size, "max_size"))
    n = box_count(rng, max_boxes, continue_prob)
    starts, sizes = draw_boxes(rng, shape, n, lo, hi, margin, "Inner-cutout")
    noise = [rng.random(tuple(int(s) for s in size), dtype=np.float32) for size in sizes]
    return {"starts": starts, "sizes": sizes, "noise": noise}


def apply_inner_cutout(x: np.ndarray, params: Dict[str, object]) -> np.ndarray:
    """Fill the boxes of `params` with their noise; returns a new float32 array."""
    out = np.array(x, dtype=np.float32, copy=True)
    for start, size, noise in zip(params["starts"], params["sizes"], params["noise"]):
        out[box_slices(start, size)] = noise
    return out


def inner_cutout(x, *, rng: np.random.Generator, prob: float = 1.0, **params) -> np.ndarray:
    """In-painting transformation of one cube or slice (paper Sec. 2.1).

    Args:
        x: `(rows, cols[, deps])` (optionally a trailing channel of size 1), values in [0, 1].
        rng: random generator.
        prob: probability of transforming at all (`0` returns a copy of `x`).
        **params: `max_boxes`, `continue_prob`, `min_size`, `max_size`, `margin`
            (see `sample_inner_cutout_params`).

    Returns:
        New float32 array, same shape as `x`, values in [0, 1].

    Example:
        >>> y = inner_cutout(cube, rng=np.random.default_rng(0), max_boxes=2)
    """
    return apply_with_prob(x, rng, prob, sample_inner_cutout_params, apply_inner_cutout, **params)
