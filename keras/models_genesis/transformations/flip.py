"""Paired flip: data augmentation applied to the input and the target alike (REFERENCE 4, step 1).

The release flips a random axis while a draw is below `prob`, at most `max_flips` times. A flip
is not a transformation the network learns to undo: the restoration target is flipped with the
input (STYLE rule 4: one draw, applied to both arrays).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from models_genesis.transformations._checks import as_cube, check_count, check_prob, restore_channel


def sample_flip_params(rng: np.random.Generator, shape: Sequence[int], *, prob: float = 0.4,
                       max_flips: int = 3) -> Tuple[int, ...]:
    """Draw the axes to flip, in order.

    Args:
        rng: random generator.
        shape: spatial shape, `(rows, cols)` or `(rows, cols, deps)`.
        prob: probability of each further flip (release: 0.4).
        max_flips: most flips (release: 3).

    Returns:
        Tuple of axes (repeats allowed; flipping an axis twice undoes it).
    """
    prob = check_prob(prob, "prob")
    max_flips = check_count(max_flips, "max_flips")
    axes = []
    while len(axes) < max_flips and rng.random() < prob:
        axes.append(int(rng.integers(0, len(shape))))
    return tuple(axes)


def apply_flip(x: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Flip `x` along `axes` (each flip toggles its axis); returns a new float32 array."""
    x = np.asarray(x, dtype=np.float32)
    odd = tuple(a for a in range(x.ndim) if sum(1 for b in axes if b == a) % 2 == 1)
    return np.ascontiguousarray(np.flip(x, axis=odd) if odd else x.copy())


def flip(x, y, *, rng: np.random.Generator, prob: float = 0.4,
         max_flips: int = 3) -> Tuple[np.ndarray, np.ndarray]:
    """Flip an input and its target alike (paired augmentation).

    Args:
        x: input, `(rows, cols[, deps])` in [0, 1] (a trailing channel of size 1 is kept).
        y: target, same shape as `x`.
        rng: random generator.
        prob, max_flips: see `sample_flip_params`.

    Returns:
        `(x_flipped, y_flipped)`, new float32 arrays.

    Raises:
        ValueError: `x` and `y` differ in shape, or either is not a cube in [0, 1].

    Example:
        >>> xf, yf = flip(cube, cube, rng=np.random.default_rng(0))
    """
    xa, ch = as_cube(x, "x")
    ya, _ = as_cube(y, "y")
    if xa.shape != ya.shape:
        raise ValueError(f"`x` and `y` must have the same shape. Received: {np.shape(x)} and {np.shape(y)}.")
    axes = sample_flip_params(rng, xa.shape, prob=prob, max_flips=max_flips)
    return restore_channel(apply_flip(xa, axes), ch), restore_channel(apply_flip(ya, axes), ch)
