"""Shared argument checks and helpers of the transformations (private)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import numpy as np

MARGIN = 3  # voxels every cutout box keeps from the border (release)


def as_cube(x, name: str = "x", check_values: bool = True) -> Tuple[np.ndarray, bool]:
    """Return `x` as a float32 spatial array `(rows, cols)` or `(rows, cols, deps)`.

    A trailing channel axis of size 1 (`(rows, cols, deps, 1)`) is dropped; the second value
    returned says whether it was, so callers can put it back with `restore_channel`.

    Raises:
        TypeError: `x` is not array-like of real numbers.
        ValueError: wrong rank, NaN, or values outside [0, 1] (when `check_values`).
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a type error here
        raise TypeError(f"`{name}` must be an array of floats in [0, 1]. Received: {type(x)}.") from exc
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"`{name}` must hold real numbers in [0, 1]. Received: dtype={arr.dtype}.")
    had_channel = arr.ndim == 4 and arr.shape[-1] == 1
    if had_channel:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"`{name}` must be a cube (rows, cols, deps), a slice (rows, cols), or a cube with a "
            f"trailing channel of size 1. Received: {name}.shape={np.shape(x)}."
        )
    if min(arr.shape) < 1:
        raise ValueError(f"`{name}` must not be empty. Received: {name}.shape={arr.shape}.")
    arr = np.asarray(arr, dtype=np.float32)
    if check_values:
        check_unit_range(arr, name)
    return arr, had_channel


def check_unit_range(arr: np.ndarray, name: str = "x") -> None:
    """Raise ValueError when `arr` holds NaN or values outside [0, 1] (two passes, no copy)."""
    lo, hi = np.min(arr), np.max(arr)
    if not (lo >= 0.0 and hi <= 1.0):  # NaN fails both comparisons
        raise ValueError(
            f"`{name}` must hold finite values in [0, 1] (normalise intensities first). "
            f"Received: min={lo}, max={hi}."
        )


def restore_channel(arr: np.ndarray, had_channel: bool) -> np.ndarray:
    return arr[..., None] if had_channel else arr


def apply_with_prob(x, rng: np.random.Generator, prob, sample: Callable, apply: Callable,
                    **params) -> np.ndarray:
    """Shared gate of the single transformations: with probability `prob`, sample then apply.

    Checks `x` (`as_cube`), draws one uniform number from `rng` and, when it is below `prob`,
    draws the parameters with `sample(rng, spatial_shape, **params)` and returns
    `apply(cube, drawn)`; otherwise returns a copy of `x`. A trailing channel of size 1 is kept.

    Args:
        x: `(rows, cols[, deps])` (optionally a trailing channel of size 1), values in [0, 1].
        rng: random generator (the gate draw comes first, then `sample`'s draws).
        prob: probability in [0, 1] of transforming at all.
        sample: `sample_<t>_params(rng, shape, **params) -> dict`.
        apply: `apply_<t>(cube, drawn) -> array` of the cube's shape.
        **params: passed to `sample`.

    Returns:
        New float32 array, same shape as `x`.
    """
    arr, ch = as_cube(x, "x")
    if rng.random() >= check_prob(prob, "prob"):
        return restore_channel(arr.copy(), ch)
    drawn = sample(rng, arr.shape, **params)
    return restore_channel(apply(arr, drawn), ch)


def check_prob(value, name: str) -> float:
    """Return `value` as a float in [0, 1] or raise ValueError naming `name`."""
    try:
        p = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be a probability in [0, 1]. Received: {name}={value!r}.") from exc
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"`{name}` must be a probability in [0, 1]. Received: {name}={value!r}.")
    return p


def check_count(value, name: str, minimum: int = 0, maximum: Optional[int] = None) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum
            or (maximum is not None and value > maximum)):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"`{name}` must be an integer {bounds}. Received: {name}={value!r}.")
    return int(value)


def check_fraction(value, name: str) -> Tuple[int, int]:
    """Check a size given as a fraction `(numerator, denominator)` of the axis length."""
    ok = (
        isinstance(value, (tuple, list)) and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
        and value[0] >= 0 and value[1] >= 1
    )
    if not ok:
        raise ValueError(
            f"`{name}` must be a fraction (numerator, denominator) of non-negative integers, e.g. "
            f"(1, 6) for dim // 6. Received: {name}={value!r}."
        )
    return int(value[0]), int(value[1])


def fraction_of(shape: Sequence[int], fraction: Tuple[int, int]) -> np.ndarray:
    """`numerator * dim // denominator` per axis, exactly as the release's integer arithmetic."""
    num, den = fraction
    return np.array([num * int(d) // den for d in shape], dtype=np.int64)


def box_count(rng: np.random.Generator, max_boxes: int, continue_prob: float) -> int:
    """Count boxes as the release does: go on while a draw is below `continue_prob`."""
    n = 0
    while n < max_boxes and rng.random() < continue_prob:
        n += 1
    return n


def draw_boxes(rng: np.random.Generator, shape: Sequence[int], n: int, side_lo, side_hi,
               margin: int, what: str) -> Tuple[np.ndarray, np.ndarray]:
    """Draw `n` boxes with sides in `[side_lo, side_hi]` per axis, `margin` voxels from the border.

    Returns:
        `(starts, sizes)`, each `(n, ndim)` int64.

    Raises:
        ValueError: the largest box plus margins does not fit in `shape`.
    """
    dims = np.array(shape, dtype=np.int64)
    lo = np.maximum(np.asarray(side_lo, dtype=np.int64), 1)
    hi = np.asarray(side_hi, dtype=np.int64)
    if np.any(lo > hi) or np.any(hi + 2 * margin > dims):
        raise ValueError(
            f"{what} boxes of sides {lo.tolist()}..{hi.tolist()} with a margin of {margin} voxels do "
            f"not fit in a cube of shape {tuple(shape)}. Use a larger cube or smaller sizes/margin."
        )
    sizes = rng.integers(lo, hi + 1, size=(n, len(shape)))
    starts = rng.integers(margin, dims - sizes - margin + 1)
    return starts.reshape(n, len(shape)), sizes.reshape(n, len(shape))


def box_slices(start, size) -> Tuple[slice, ...]:
    return tuple(slice(int(a), int(a) + int(b)) for a, b in zip(start, size))
