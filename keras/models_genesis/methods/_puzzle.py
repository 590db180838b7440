"""Puzzles of patches: the pieces Jigsaw (App. A.3) and Rubik's cube (App. A.6) share.

* `maximal_hamming_permutations`: the permutation set, chosen greedily so that its permutations
  are far apart in Hamming distance (Noroozi & Favaro 2016, Alg. 1; Zhuang et al. 2019).
* `patch_shape`, `sample_patch_starts`, `crop_patches`: a `grid x grid x grid` grid of cells over a
  cube and one patch per cell, smaller than its cell and placed at a random offset inside it (the
  random gap that keeps a network from solving the puzzle by matching the voxels along the cut).
* `siamese_features`: the U-Net encoder applied to every patch with shared weights.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Sequence, Tuple

import keras
import numpy as np

from models_genesis.methods._encoder import check_cube_shape, min_side
from models_genesis.methods.keras_objects import MergePatches, SplitPatches

# Enumerate all n! permutations up to this n (9! = 362,880, as Noroozi & Favaro did for 3x3).
ENUMERATE_UP_TO = 9


def hamming_distances(perms: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Hamming distance (positions that differ) of each row of `perms` `(M, n)` to `perm` `(n,)`."""
    return np.count_nonzero(perms != perm, axis=1)


def min_hamming_distance(perms: np.ndarray) -> int:
    """Smallest Hamming distance between two different rows of `perms` `(P, n)`."""
    perms = np.asarray(perms)
    d = np.count_nonzero(perms[:, None, :] != perms[None, :, :], axis=-1)
    d[np.diag_indices(len(perms))] = perms.shape[1] + 1
    return int(d.min())


def maximal_hamming_permutations(n_items: int, n_permutations: int, *, seed: int = 0,
                                 n_candidates: int = 10000) -> np.ndarray:
    """A set of permutations of `n_items` that are far apart (the maximal-Hamming-distance set).

    Greedy, as Noroozi & Favaro's Alg. 1: start from a random candidate, then repeatedly add the
    candidate whose *minimal* Hamming distance to the chosen set is largest (ties: the largest
    summed distance, which is Alg. 1's own criterion; then the first candidate). The candidates are
    all `n_items!` permutations for `n_items <= 9` (8 cubes of Rubik's cube: 40,320), and
    otherwise `n_candidates` random permutations drawn from `default_rng(seed)` (27 patches of
    Jigsaw: 27! cannot be enumerated; the greedy choice runs over this sample). The result is
    deterministic given its arguments and cached.

    Returns:
        int array `(n_permutations, n_items)`, read-only; row `l` is the permutation of label `l`.

    Raises:
        ValueError: bad counts, or more permutations asked for than candidates.
    """
    for name, value, low in (("n_items", n_items, 2), ("n_permutations", n_permutations, 1),
                             ("seed", seed, 0), ("n_candidates", n_candidates, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value!r}.")
    return _maximal_hamming(int(n_items), int(n_permutations), int(seed), int(n_candidates))


@functools.lru_cache(maxsize=16)
def _maximal_hamming(n_items: int, n_permutations: int, seed: int, n_candidates: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if n_items <= ENUMERATE_UP_TO:
        candidates = np.array(list(itertools.permutations(range(n_items))), dtype=np.int8)
    else:
        candidates = rng.permuted(np.tile(np.arange(n_items, dtype=np.int8), (n_candidates, 1)),
                                  axis=1)
        candidates = np.unique(candidates, axis=0)  # duplicates: practically never for n > 9
    if n_permutations > len(candidates):
        raise ValueError(f"`n_permutations` must be at most the {len(candidates)} candidate "
                         f"permutations of {n_items} items. Received: n_permutations={n_permutations}.")
    first = int(rng.integers(len(candidates)))
    chosen = [first]
    min_d = hamming_distances(candidates, candidates[first])
    sum_d = min_d.astype(np.int64)
    for _ in range(n_permutations - 1):
        score = min_d.astype(np.int64) * (n_items * n_permutations + 1) + sum_d
        score[chosen] = -1
        best = int(np.argmax(score))
        chosen.append(best)
        d = hamming_distances(candidates, candidates[best])
        np.minimum(min_d, d, out=min_d)
        sum_d += d
    perms = candidates[chosen].astype(np.int64)
    perms.setflags(write=False)
    return perms


def patch_shape(cube_shape: Sequence[int], grid: int, fraction: float) -> Tuple[int, int, int]:
    """Side of the patch cut from each cell: `floor(cell * fraction)`, cell = `cube // grid`."""
    return tuple(int(math.floor((int(s) // grid) * fraction + 1e-9)) for s in cube_shape)


def min_cube_side(grid: int, fraction: float, smallest_patch: int) -> int:
    """Smallest cube side whose patches have at least `smallest_patch` voxels a side."""
    if not 0 < fraction <= 1:
        raise ValueError(f"`patch_fraction` must be in (0, 1]. Received: patch_fraction={fraction!r}.")
    # The smallest cell with floor(cell * fraction) >= smallest_patch, in closed form (a count
    # up to it would take ~1e9 steps for patch_fraction=1e-9), then at most two corrections
    # for the rounding.
    cell = max(int(smallest_patch), math.ceil((smallest_patch - 1e-9) / fraction) - 1)
    for _ in range(3):
        if math.floor(cell * fraction + 1e-9) >= smallest_patch:
            break
        cell += 1
    return grid * cell


def check_grid(cube_shape, grid: int, fraction: float, depth, method: str) -> None:
    """Raise ValueError unless every patch of the grid passes the encoder's `depth-1` poolings
    (`depth` None: unless every patch has at least one voxel)."""
    shape = check_cube_shape(cube_shape)
    smallest = 1 if depth is None else min_side(depth)
    side = min_cube_side(grid, fraction, smallest)
    if min(patch_shape(shape, grid, fraction)) < smallest:
        why = ("non-empty patches" if depth is None else f"patches of at least {smallest} voxels "
               f"a side for the {depth - 1} poolings of a depth-{depth} encoder")
        raise ValueError(
            f"Method {method!r} needs cubes of at least {side} voxels a side for its "
            f"{grid}x{grid}x{grid} grid of patches (patch_fraction={fraction}: {why}). "
            f"Received: cube_shape={shape}.")


def sample_patch_starts(n: int, cube_shape: Sequence[int], grid: int, patch: Sequence[int], *,
                        rng: np.random.Generator) -> np.ndarray:
    """Corners of the patches of `n` cubes: a random grid offset per cube (when the cube is not a
    multiple of `grid`) plus a random offset of each patch inside its cell.

    Returns:
        int array `(n, grid**3, 3)`; patch `j` of cube `b` is `cube[b][start : start + patch]`,
        cells in C order (row-major over the grid's rows, cols, deps).
    """
    shape, patch = np.asarray(cube_shape), np.asarray(patch)
    cell = shape // grid
    origin = rng.integers(0, shape - grid * cell + 1, size=(n, 1, 3))
    cells = np.stack(np.meshgrid(*[np.arange(grid)] * 3, indexing="ij"), -1).reshape(-1, 3)
    jitter = rng.integers(0, cell - patch + 1, size=(n, grid ** 3, 3))
    return origin + cells * cell + jitter


def crop_patches(cubes: np.ndarray, starts: np.ndarray, patch: Sequence[int]) -> np.ndarray:
    """Cut patches `(n, G, pr, pc, pd)` at `starts` `(n, G, 3)` from cubes `(n, r, c, d)`
    (one fancy-indexing gather)."""
    pr, pc, pd = (int(p) for p in patch)
    rows = starts[..., 0, None] + np.arange(pr)
    cols = starts[..., 1, None] + np.arange(pc)
    deps = starts[..., 2, None] + np.arange(pd)
    b = np.arange(len(cubes))[:, None, None, None, None]
    return cubes[b, rows[:, :, :, None, None], cols[:, :, None, :, None], deps[:, :, None, None, :]]


def shuffle_patches(patches: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Position `j` of puzzle `b` gets patch `perms[b, j]`: `(n, G, ...)` with `perms` `(n, G)`."""
    index = perms.reshape(perms.shape + (1,) * (patches.ndim - 2))
    return np.take_along_axis(patches, index, axis=1)


def unshuffle_patches(shuffled: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Inverse of `shuffle_patches`: the patches back in their original cells."""
    out = np.empty_like(shuffled)
    out[np.arange(len(perms))[:, None], perms] = shuffled
    return out


def siamese_features(patches, encoder: keras.Model, units: int, kernel_initializer):
    """Encode every patch of `patches` `(B, G, pr, pc, pd, 1)` with the same `encoder` (a Siamese
    network with G branches: the G patches of each puzzle go through it as one batch), flatten,
    apply a shared Dense(units, relu) and put the G results side by side.

    (One reshape rather than `TimeDistributed(encoder)`, which TensorFlow traced 5x slower.)

    Returns:
        The tensor `(B, G * units)`.
    """
    n_patches = int(patches.shape[1])
    x = encoder(MergePatches(name="merge_patches")(patches))
    x = keras.layers.Flatten(name="patch_flatten")(x)
    x = keras.layers.Dense(units, activation="relu", kernel_initializer=kernel_initializer,
                           name="patch_fc")(x)
    return SplitPatches(n_patches, name="concat_patches")(x)
