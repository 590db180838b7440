"""Local pixel shuffling (paper Sec. 2.1, "local pixel shuffling"; docs/release_reference.md,
'Transformations', step 2).

Many small windows are drawn at random positions; the voxels of each window, read from the
*original* cube, are randomly permuted and written to the output, later windows overwriting
earlier ones. The release uses 10,000 windows (the paper text says 1,000), each of a random size
1..dim//10 per axis. Global intensities and shapes survive; local texture is destroyed.

Speed: the window loop runs in a small numba kernel (compiled once, cached on disk). The kernel
permutes each window with a Fisher-Yates shuffle driven by a splitmix64 stream started from one
64-bit seed drawn from `rng`, so the result depends only on `rng`, never on a global state.
"""

from __future__ import annotations

import functools
from typing import Dict, Sequence

import numpy as np

from models_genesis.transformations._checks import (
    apply_with_prob, check_count, check_fraction, fraction_of,
)

# The release's values (docs/release_reference.md, 'Transformations'); `TransformConfig` reads them
# from here.
N_WINDOWS = 10000
MAX_WINDOW = (1, 10)
MIN_WINDOW = 1


def _window_limits(shape, max_window, min_window):
    shape3 = tuple(shape) + (1,) * (3 - len(shape))
    hi = np.maximum(fraction_of(shape, max_window), 1)
    lo = np.full(len(shape), int(min_window), dtype=np.int64)
    if np.any(lo > hi) or np.any(hi > np.array(shape)):
        raise ValueError(
            f"Shuffling windows must fit in the cube: sizes {lo.tolist()}..{hi.tolist()} per axis "
            f"for a cube of shape {tuple(shape)}. Received: min_window={min_window}, "
            f"max_window={max_window}."
        )
    return shape3, lo, hi


def sample_local_shuffling_params(rng: np.random.Generator, shape: Sequence[int], *,
                                  n_windows: int = N_WINDOWS, max_window=MAX_WINDOW,
                                  min_window: int = MIN_WINDOW) -> Dict[str, np.ndarray]:
    """Draw the windows and their permutation seeds.

    Args:
        rng: random generator.
        shape: spatial shape `(rows, cols[, deps])`.
        n_windows: number of windows (release 10,000; paper text 1,000).
        max_window: largest window side as a fraction `(num, den)` of each axis, `num*dim//den`
            (release `(1, 10)`, i.e. dim // 10, at least 1).
        min_window: smallest window side (release 1).

    Returns:
        dict with `starts` and `sizes` (`(n_windows, 3)` int64; a slice gets depth 1) and `seed`
        (int, starts the permutation stream).

    Raises:
        ValueError: a window larger than the cube, or bad counts.
    """
    n_windows = check_count(n_windows, "n_windows")
    min_window = check_count(min_window, "min_window", minimum=1)
    max_window = check_fraction(max_window, "max_window")
    shape3, lo, hi = _window_limits(shape, max_window, min_window)
    nd = len(shape)
    sizes = np.ones((n_windows, 3), dtype=np.int64)
    starts = np.zeros((n_windows, 3), dtype=np.int64)
    u = rng.random((2, n_windows, nd))  # one draw for all windows: uniform integers by scaling
    sizes[:, :nd] = lo + (u[0] * (hi - lo + 1)).astype(np.int64)
    starts[:, :nd] = (u[1] * (np.array(shape) - sizes[:, :nd] + 1)).astype(np.int64)
    seed = int(rng.integers(0, 2**63, dtype=np.int64))
    return {"starts": starts, "sizes": sizes, "seed": seed}


@functools.lru_cache(maxsize=None)
def _kernel():
    """Compile (or load from numba's on-disk cache) the window-shuffling kernel."""
    # numba (0.85 s) at the first shuffle: this module is on `--help`'s import path (via config).
    import numba

    @numba.njit(cache=True, nogil=True)
    def shuffle_windows(src, out, starts, sizes, seed):
        big = 1
        for k in range(sizes.shape[0]):
            big = max(big, sizes[k, 0] * sizes[k, 1] * sizes[k, 2])
        buf = np.empty(big, dtype=src.dtype)
        state = np.uint64(seed)
        golden = np.uint64(0x9E3779B97F4A7C15)
        m1 = np.uint64(0xBF58476D1CE4E5B9)
        m2 = np.uint64(0x94D049BB133111EB)
        s27, s30, s31, s32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)
        for k in range(sizes.shape[0]):
            a0, a1, a2 = starts[k, 0], starts[k, 1], starts[k, 2]
            b0, b1, b2 = sizes[k, 0], sizes[k, 1], sizes[k, 2]
            m = 0
            for i in range(b0):
                for j in range(b1):
                    for l in range(b2):
                        buf[m] = src[a0 + i, a1 + j, a2 + l]
                        m += 1
            for i in range(m - 1, 0, -1):  # Fisher-Yates on a splitmix64 stream
                state = state + golden
                z = state
                z = (z ^ (z >> s30)) * m1
                z = (z ^ (z >> s27)) * m2
                z = z ^ (z >> s31)
                j = np.intp(((z >> s32) * np.uint64(i + 1)) >> s32)  # uniform in [0, i]
                tmp = buf[i]
                buf[i] = buf[j]
                buf[j] = tmp
            m = 0
            for i in range(b0):
                for j in range(b1):
                    for l in range(b2):
                        out[a0 + i, a1 + j, a2 + l] = buf[m]
                        m += 1

    return shuffle_windows


def apply_local_shuffling(x: np.ndarray, params: Dict[str, np.ndarray]) -> np.ndarray:
    """Shuffle the windows in `params` (deterministic). Returns a new float32 array, shape of `x`."""
    src = np.ascontiguousarray(x, dtype=np.float32)
    src3 = src.reshape(src.shape + (1,) * (3 - src.ndim))
    out = src3.copy()
    starts = np.ascontiguousarray(params["starts"], dtype=np.int64)
    sizes = np.ascontiguousarray(params["sizes"], dtype=np.int64)
    if len(sizes) and (np.any(starts < 0) or np.any(starts + sizes > np.array(src3.shape))):
        raise ValueError(f"Shuffling windows fall outside the cube of shape {src.shape}.")
    if len(sizes):
        _kernel()(src3, out, starts, sizes, np.uint64(params["seed"]))
    return out.reshape(src.shape)


def local_pixel_shuffling(x, *, rng: np.random.Generator, prob: float = 1.0,
                          n_windows: int = N_WINDOWS, max_window=MAX_WINDOW,
                          min_window: int = MIN_WINDOW) -> np.ndarray:
    """Local pixel shuffling of one cube or slice (paper Sec. 2.1).

    Args:
        x: `(rows, cols[, deps])` (optionally a trailing channel of size 1), values in [0, 1].
        rng: random generator.
        prob: probability of shuffling at all (`0` returns a copy of `x`).
        n_windows, max_window, min_window: see `sample_local_shuffling_params`.

    Returns:
        New float32 array, same shape and value range as `x`.

    Raises:
        ValueError: bad cube (rank, NaN, range) or windows larger than the cube.

    Example:
        >>> y = local_pixel_shuffling(cube, rng=np.random.default_rng(0), n_windows=1000)
    """
    return apply_with_prob(x, rng, prob, sample_local_shuffling_params, apply_local_shuffling,
                           n_windows=n_windows, max_window=max_window, min_window=min_window)
