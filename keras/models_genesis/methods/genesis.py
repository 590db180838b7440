"""Models Genesis: restore the original cube from one transformed by the unified scheme (Sec. 2).

The options are the scheme's `TransformConfig` (every probability, size and count), so any
scheme of Fig. 3 (`--scheme nonlinear`), a composed one (`nonlinear+local_shuffling`) and
App. C.3's cutout-size sweep (`--option outer_min_cut=2,7`) run through the same command. The
whole U-Net is trained with MSE (the release) and saved.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from models_genesis.data.pretraining.restoration_dataset import RestorationDataset
from models_genesis.methods import _restoration
from models_genesis.methods._restoration import (  # noqa: F401  (the method interface)
    WRITES, build_model, callbacks, chance_level, loss, metrics,
)
from models_genesis.transformations.unified import TransformConfig, genesis_transform

NAME = "genesis"
Options = TransformConfig


def options_for_scheme(scheme: str = "genesis", preset: str = "release",
                       **values) -> TransformConfig:
    """`TransformConfig.for_scheme(scheme, **values)`: a named or composed scheme, overridden,
    starting from the sizes and counts of `preset` (`TRANSFORM_PRESETS`: `release`, the default,
    or `paper_text`; `--option preset=paper_text`)."""
    base = TransformConfig.preset(preset)
    sizes = {k: v for k, v in dataclasses.asdict(base).items()
             if not k.endswith(("_prob", "_rate"))}
    return TransformConfig.for_scheme(scheme, **{**sizes, **values})


def make_pairs(cubes: np.ndarray, rng: np.random.Generator, options: TransformConfig):
    """`(transformed, original)` of cubes `(B, r, c, d)`, one `genesis_transform` per cube."""
    x, y = np.empty_like(cubes), np.empty_like(cubes)
    for k in range(len(cubes)):
        x[k], y[k] = genesis_transform(cubes[k], rng=rng, config=options, check=False)
    return x, y


def check(options: TransformConfig, cube_shape, n_train_cubes: int, *, depth=None) -> None:
    """Raise ValueError when the scheme's sizes do not fit `cube_shape` (e.g. cutout boxes)."""
    every = dataclasses.replace(options, local_prob=1.0, nonlinear_prob=1.0, paint_prob=1.0)
    for inpaint_rate in (0.0, 1.0):  # outer, then inner cutout
        _restoration.check_sample(make_pairs, dataclasses.replace(every, inpaint_rate=inpaint_rate),
                                  cube_shape, "genesis")


def make_dataset(files, batch_size, *, options, cube_shape=None, seed=0, shuffle=True,
                 validation=False, samples_per_epoch=None, **kwargs) -> RestorationDataset:
    """A `RestorationDataset` of the scheme `options` over cube `files` (seeded per batch)."""
    return RestorationDataset(files, batch_size, config=options, seed=seed, shuffle=shuffle,
                              validation=validation, samples_per_epoch=samples_per_epoch,
                              **kwargs)
