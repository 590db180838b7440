"""3D Patch shuffling (paper App. A.4, after Chen et al. 2019a): restore swapped patches.

`T` times (10), two non-overlapping patches of the same random size are swapped; each side is
25% to 50% of the cube's (`min_size`, `max_size` as fractions). The 3D U-Net restores the
original with MSE. The voxel values are only moved, never changed, so their multiset is kept.
The whole U-Net is saved.

The two patches are made disjoint by construction: along one random axis they occupy two
non-overlapping intervals (random gaps), along the others independent random positions (a
side is at most half the cube's, so two always fit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np

from models_genesis.methods import _restoration
from models_genesis.methods._restoration import (  # noqa: F401  (the method interface)
    WRITES, build_model, callbacks, chance_level, dataset_maker, loss, metrics,
)
from models_genesis.transformations._checks import (
    box_slices, check_count, check_fraction, fraction_of,
)

NAME = "patch_shuffling"


MAX_SWAPS = 1000


@dataclass(frozen=True)
class Options:
    """Patch-shuffling parameters (App. A.4).

    Attributes:
        n_swaps: swaps per cube, T (10).
        min_size, max_size: patch side bounds as fractions `(num, den)` of each axis,
            `num*dim//den` ((1, 4) and (1, 2): 25% to 50%); `max_size` at most 1/2.
    """

    n_swaps: int = 10
    min_size: Tuple[int, int] = (1, 4)
    max_size: Tuple[int, int] = (1, 2)

    def __post_init__(self):
        check_count(self.n_swaps, "n_swaps")
        if self.n_swaps > MAX_SWAPS:  # (n_swaps, 3) int64 arrays per cube, a loop per swap
            raise ValueError(f"`n_swaps` must be at most {MAX_SWAPS} (the paper: 10). "
                             f"Received: n_swaps={self.n_swaps!r}.")
        for name in ("min_size", "max_size"):
            object.__setattr__(self, name, check_fraction(getattr(self, name), name))
        num, den = self.max_size
        if 2 * num > den:
            raise ValueError("`max_size` must be at most (1, 2): two patches must fit side by "
                             f"side. Received: max_size={self.max_size!r}.")


def sample_patch_swaps(rng: np.random.Generator, shape: Sequence[int],
                       options: Options) -> Dict[str, np.ndarray]:
    """Draw `n_swaps` pairs of equal-size, non-overlapping patches in a cube of `shape`.

    Returns:
        dict with `sizes`, `starts_a`, `starts_b`, each `(n_swaps, ndim)` int64.

    Raises:
        ValueError: patches of no voxel (a side `num*dim//den` of 0) for this shape.
    """
    dims = np.asarray(shape, dtype=np.int64)
    lo = fraction_of(shape, options.min_size)
    hi = fraction_of(shape, options.max_size)
    if np.any(lo < 1) or np.any(lo > hi):
        raise ValueError(f"Patch sides {lo.tolist()}..{hi.tolist()} (min_size={options.min_size}, "
                         f"max_size={options.max_size}) do not fit a cube of shape {tuple(shape)}: "
                         "each side must be at least 1 voxel.")
    n, ndim = options.n_swaps, len(shape)
    sizes = rng.integers(lo, hi + 1, size=(n, ndim))
    starts_a = rng.integers(0, dims - sizes + 1)
    starts_b = rng.integers(0, dims - sizes + 1)
    # Along one axis per swap, place the two intervals apart: gaps g1 <= g2 in [0, dim - 2s].
    axis = rng.integers(0, ndim, size=n)
    rows = np.arange(n)
    side, dim = sizes[rows, axis], dims[axis]
    gaps = np.sort(rng.integers(0, dim - 2 * side + 1, size=(2, n)), axis=0)
    first, second = gaps[0], gaps[1] + side
    a_first = rng.random(n) < 0.5
    starts_a[rows, axis] = np.where(a_first, first, second)
    starts_b[rows, axis] = np.where(a_first, second, first)
    return {"sizes": sizes, "starts_a": starts_a, "starts_b": starts_b}


def apply_patch_swaps(cube: np.ndarray, params: Dict[str, np.ndarray]) -> np.ndarray:
    """Swap the patches of `params` in order; returns a new float32 array."""
    out = np.array(cube, dtype=np.float32, copy=True)
    for size, a, b in zip(params["sizes"], params["starts_a"], params["starts_b"]):
        box_a, box_b = box_slices(a, size), box_slices(b, size)
        patch = out[box_a].copy()
        out[box_a] = out[box_b]
        out[box_b] = patch
    return out


def make_pairs(cubes: np.ndarray, rng: np.random.Generator, options: Options):
    """`(shuffled, original)` of cubes `(B, r, c, d)`."""
    x = np.empty_like(cubes)
    for k in range(len(cubes)):
        x[k] = apply_patch_swaps(cubes[k], sample_patch_swaps(rng, cubes.shape[1:], options))
    return x, cubes


def check(options: Options, cube_shape, n_train_cubes: int, *, depth=None) -> None:
    """Raise ValueError when the patches do not fit `cube_shape`."""
    _restoration.check_sample(make_pairs, options, cube_shape, "Patch-shuffling")


make_dataset = dataset_maker(make_pairs)
