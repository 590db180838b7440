"""What the restoration methods share (genesis, denoising, in-painting, patch shuffling; App. A).

They all train the whole `unet_model_3d` to restore the original cube from a transformed one, so
they share the model, the dataset machinery (`CubeBatchDataset`, seeded per batch) and the
empty callbacks; each method only brings its pair maker `make_pairs(cubes, rng, options)`.
"""

from __future__ import annotations

from typing import Callable, Optional

import keras
import numpy as np

from models_genesis.data.pretraining.restoration_dataset import CubeBatchDataset
from models_genesis.models.unet3d import FINAL_CONV_NAME, unet_model_3d

WRITES = "unet"


class PairDataset(CubeBatchDataset):
    """Batches `(x, y)` made by `make_pairs(cubes, rng, options)` from cubes `(B, r, c, d)`.

    `make_pairs` returns channel-less arrays `(B, r, c, d)`, or `(B, r, c, d, k)` for a target
    with k channels (in-painting: original and mask); a channel axis is added to 4D arrays
    (last for channels_last, second for channels_first, where a k-channel target is moved too).
    See `CubeBatchDataset` for the other arguments.
    """

    def __init__(self, cubes, batch_size: int = 6, *, make_pairs: Callable, options, **kwargs):
        super().__init__(cubes, batch_size, **kwargs)
        self.make_pairs, self.options = make_pairs, options

    def _channels(self, a: np.ndarray) -> np.ndarray:
        if a.ndim == 4:
            return self.add_channel(a)
        return a if self.data_format == "channels_last" else np.moveaxis(a, -1, 1)

    def make_batch(self, cubes: np.ndarray, rng: np.random.Generator):
        x, y = self.make_pairs(cubes, rng, self.options)
        return self._channels(x), self._channels(y)


def dataset_maker(make_pairs: Callable) -> Callable:
    """The `make_dataset` of a method whose pairs come from `make_pairs(cubes, rng, options)`."""

    def make_dataset(files, batch_size, *, options, cube_shape=None, seed=0, shuffle=True,
                     validation=False, samples_per_epoch: Optional[int] = None, **kwargs):
        """A `PairDataset` of the method's pairs over cube `files` (batch i of epoch e is made
        from `default_rng((seed, e, i))`); `cube_shape` is unused (the files fix it)."""
        return PairDataset(files, batch_size, make_pairs=make_pairs, options=options, seed=seed,
                           shuffle=shuffle, validation=validation,
                           samples_per_epoch=samples_per_epoch, **kwargs)

    return make_dataset


def build_model(cube_shape, options=None, *, n_base_filters=32, depth=4,
                kernel_initializer="glorot_uniform", bn_momentum=0.99, n_outputs: int = 1):
    """`(unet, trainable)`: `unet_model_3d` and the model that trains (the same layers with a
    float32 sigmoid under a mixed-precision policy, so outputs and loss are float32)."""
    unet = unet_model_3d((*tuple(cube_shape), 1), depth=depth, n_base_filters=n_base_filters,
                         kernel_initializer=kernel_initializer, bn_momentum=float(bn_momentum))
    if keras.mixed_precision.global_policy().compute_dtype == "float32":
        return unet, unet
    logits = unet.get_layer(FINAL_CONV_NAME).output
    out = keras.layers.Activation("sigmoid", dtype="float32", name="output_float32")(logits)
    return unet, keras.Model(unet.input, out, name="restoration_mixed_precision")


def loss(options=None):
    """MSE over the whole cube (App. A.1, A.4; the release's loss)."""
    return "mse"


def metrics(options=None) -> list:
    return []


def callbacks(options, saved, trainable, datasets) -> list:
    return []


def chance_level(options=None) -> dict:
    """Restoration's doing-nothing level depends on the data: it is the validation MSE of the
    identity (returning the transformed input), measured by
    `evaluation.restoration.evaluate_restoration`."""
    return {}


def check_sample(make_pairs: Callable, options, cube_shape, what: str) -> None:
    """Make one pair from a blank cube of `cube_shape`, so sizes that do not fit fail before
    training (with the transformation's ValueError, prefixed by `what`)."""
    cube = np.full((1,) + tuple(int(s) for s in cube_shape), 0.5, dtype=np.float32)
    try:
        make_pairs(cube, np.random.default_rng(0), options)
    except ValueError as exc:
        raise ValueError(f"{what} options do not fit cubes of shape {tuple(cube_shape)}: {exc}") \
            from exc
