"""Shared by the tests of the restoration methods: smooth tiny cubes written as cube files."""

import os

import numpy as np
from scipy import ndimage

from models_genesis.data.io.cube_files import cube_file_name, save_cubes

SHAPE = (16, 16, 16)


def smooth_cubes(n, rng, shape=SHAPE, sigma=2.0):
    """Cubes `(n, r, c, d)` in [0, 1]: Gaussian-smoothed noise, min-max scaled per cube, so a
    voxel is predictable from its neighbours (something to restore)."""
    pad = 4
    big = rng.standard_normal((n, *[s + 2 * pad for s in shape]))
    f = ndimage.gaussian_filter(big, sigma=(0, sigma, sigma, sigma))
    f = f[(slice(None),) + tuple(slice(pad, pad + s) for s in shape)]
    lo = f.min(axis=(1, 2, 3), keepdims=True)
    return ((f - lo) / np.ptp(f, axis=(1, 2, 3), keepdims=True)).astype(np.float32)


def write_cube_files(folder, rng, n=8, shape=SHAPE, subsets=range(7)):
    """Cube files `bat_{n}_s_..._{subset}.npy` of smooth cubes; returns the folder."""
    for s in subsets:
        save_cubes(os.path.join(folder, cube_file_name(n, shape, s)), smooth_cubes(n, rng, shape))
    return str(folder)
