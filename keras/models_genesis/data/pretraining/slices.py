"""Axial slices for Genesis Chest CT 2D: the 2D proxy-task data (paper Sec. 3.1, Table 1).

"Our Models Genesis 2D are self-supervised pre-trained from LUNA 2016 ... using 2D CT slices in an
axial view" (Sec. 3.1). The slices are cut from the same scans, with the same machinery, as the
cubes (`data.pretraining.cubes`): a slice is a crop one voxel deep, `(rows, cols, 1)`, drawn away from
the borders, and written as a cube file `bat_{scale}_s_{rows}x{cols}x1_{subset}.npy` holding
`(N, rows, cols, 1)` in [0, 1] (memory-mapped when read, like the cubes).

The tissue filter, adapted to slices: the release's filter weighs each voxel by the first of the
next `lookahead` slices that holds tissue (>= -150 HU). A slice has no depth of its own, so the
filter looks at the slice itself (`lookahead=2`): its weight sum is the number of its pixels at or
above the threshold, and a slice is rejected when more than `tissue_fraction` (15%) of its pixels
are tissue (and, as for cubes, when it is one constant value). The slice size of the paper's 2D
models is not stated; the default here is 64 x 64, the in-plane size of the cubes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np

from models_genesis.data.io.cube_files import open_cubes
from models_genesis.data.pretraining.cubes import ExtractionConfig, tissue_fractions

SLICE_SHAPE = (64, 64)
SLICE_LOOKAHEAD = 2  # the slice's own pixels only


def slice_config(slice_shape: Sequence[int] = SLICE_SHAPE, *, demo: bool = False,
                 **overrides) -> ExtractionConfig:
    """An `ExtractionConfig` for axial slices `(rows, cols)`: crops one voxel deep, the in-slice
    tissue filter; `demo=True` takes the phantoms' borders (`ExtractionConfig.demo`).

    Raises:
        ValueError: `slice_shape` is not two positive sizes, or overrides make crops deeper.
    """
    shape = tuple(int(v) for v in np.asarray(slice_shape).reshape(-1))
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"`slice_shape` must be 2 positive sizes (rows, cols). "
                         f"Received: slice_shape={slice_shape!r}.")
    values = dict(cube_shape=(*shape, 1), lookahead=SLICE_LOOKAHEAD, **overrides)
    config = ExtractionConfig.demo(**values) if demo else ExtractionConfig(**values)
    check_slice_config(config)
    return config


def check_slice_config(config: ExtractionConfig) -> None:
    """Raise `ValueError` unless `config` cuts slices (crops of depth 1)."""
    if config.cube_shape[2] != 1:
        raise ValueError("Slices are crops one voxel deep: `cube_shape` must be (rows, cols, 1). "
                         f"Received: cube_shape={config.cube_shape}.")


def open_slices(path) -> np.ndarray:
    """Open a slice file memory-mapped; return the `(N, rows, cols)` view (no copy).

    Raises:
        FileNotFoundError, ValueError: missing file, or a file of cubes deeper than one slice
            (named, with its shape).
    """
    cubes = open_cubes(path)
    if cubes.shape[-1] != 1:
        raise ValueError(f"{os.fspath(path)!r} holds cubes {tuple(cubes.shape[1:])}, not 2D slices "
                         "(N, rows, cols, 1): cut slices with `extract_slices` (or "
                         "`models-genesis extract-cubes --slices`).")
    return cubes[..., 0]


def slice_tissue_fraction(slice_hu: np.ndarray, config: Optional[ExtractionConfig] = None) -> float:
    """The filter's value for one slice `(rows, cols)` in HU: its share of tissue pixels.

    Equal to `cubes.tissue_fractions` of the slice as a one-voxel-deep crop (tested).
    """
    config = config or slice_config(np.shape(slice_hu))

    array = np.asarray(slice_hu)[..., None]
    return float(tissue_fractions(array, np.zeros((1, 3), np.int64),
                                  config=dataclasses.replace(config, cube_shape=array.shape))[0])
