"""Paired flip: data augmentation applied to the input and the target alike
(docs/release_reference.md, 'Transformations', step 1).

While a draw is below `prob`, at most `max_flips` times, the release flips the axis
`random.choice([0, 1, 2])` of a sample shaped (1, rows, cols, deps): axis 0 is the channel, so a
third of the draws change nothing, the others flip rows or cols, and depth is never flipped
(docs/release_reference.md, 'Transformations': rows are flipped in 15.3% of pairs, cols in 15.3%,
depth in none, and the target equals the input cube in 72.9%; `tests/transformations/test_flip.py`
derives these exactly and measures them). `FLIP_CHOICES` matches this by default;
`choices=(0, 1, 2)` flips any of the three spatial axes instead. A flip is not a transformation the network learns
to undo: the restoration target is flipped with the input (STYLE rule 4: one draw, applied to
both arrays).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from models_genesis.transformations._checks import as_cube, check_count, check_prob, restore_channel

# The release's values (docs/release_reference.md, 'Transformations'); `TransformConfig` reads them
# from here.
FLIP_PROB = 0.4
MAX_FLIPS = 3
# What each draw picks from, uniformly: None is the release's channel axis (a flip that changes
# nothing), 0 rows, 1 cols; depth (2) is never drawn.
FLIP_CHOICES: Tuple[Optional[int], ...] = (None, 0, 1)


def sample_flip_params(rng: np.random.Generator, shape: Sequence[int], *,
                       prob: float = FLIP_PROB, max_flips: int = MAX_FLIPS,
                       choices: Sequence[Optional[int]] = FLIP_CHOICES) -> Tuple[int, ...]:
    """Draw the axes to flip, in order.

    Args:
        rng: random generator.
        shape: spatial shape, `(rows, cols)` or `(rows, cols, deps)`.
        prob: probability of each further draw (release: 0.4).
        max_flips: most draws (release: 3).
        choices: what each draw picks from, uniformly: spatial axes, or None for the release's
            channel-axis draw that flips nothing (default `FLIP_CHOICES`, the release's).

    Returns:
        Tuple of the axes flipped (repeats allowed; flipping an axis twice undoes it); draws of
        None are left out.

    Raises:
        ValueError: `choices` is empty or names an axis that `shape` does not have.
    """
    prob = check_prob(prob, "prob")
    max_flips = check_count(max_flips, "max_flips")
    choices = tuple(choices)
    valid = [c is None or (isinstance(c, (int, np.integer)) and not isinstance(c, bool)
                           and 0 <= c < len(shape)) for c in choices]
    if not choices or not all(valid):
        raise ValueError(f"`choices` must be a non-empty list of axes of a {len(shape)}-D sample "
                         f"(0..{len(shape) - 1}) or None (no flip). Received: choices={choices!r}.")
    axes = []
    for _ in range(max_flips):
        if rng.random() >= prob:
            break
        choice = choices[int(rng.integers(0, len(choices)))]
        if choice is not None:
            axes.append(int(choice))
    return tuple(axes)


def apply_flip(x: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Flip `x` along `axes` (each flip toggles its axis); returns a new float32 array."""
    x = np.asarray(x, dtype=np.float32)
    odd = tuple(a for a in range(x.ndim) if sum(1 for b in axes if b == a) % 2 == 1)
    return np.ascontiguousarray(np.flip(x, axis=odd) if odd else x.copy())


def flip(x, y, *, rng: np.random.Generator, prob: float = FLIP_PROB, max_flips: int = MAX_FLIPS,
         choices: Sequence[Optional[int]] = FLIP_CHOICES) -> Tuple[np.ndarray, np.ndarray]:
    """Flip an input and its target alike (paired augmentation).

    Args:
        x: input, `(rows, cols[, deps])` in [0, 1] (a trailing channel of size 1 is kept).
        y: target, same shape as `x`.
        rng: random generator.
        prob, max_flips, choices: see `sample_flip_params`.

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
    axes = sample_flip_params(rng, xa.shape, prob=prob, max_flips=max_flips, choices=choices)
    return restore_channel(apply_flip(xa, axes), ch), restore_channel(apply_flip(ya, axes), ch)
