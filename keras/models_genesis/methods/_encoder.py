"""What the classification proxy tasks share (Jigsaw, Rubik's cube, DeepCluster; App. A.3, A.5, A.6).

They train the *encoder* of the 3D U-Net (blocks `depth_0` .. `depth_{2*depth-1}` of
`unet_model_3d`, the release's layer names) under a classification head that is thrown away, so
the file they write holds the encoder only and `finetune --init M --weights FILE` loads it into a
U-Net by layer name.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras

from models_genesis.models.unet3d import ENCODER_OUTPUT, unet_model_3d

WRITES = "encoder"


def unet_encoder(*, n_base_filters: int = 32, depth: int = 4, kernel_initializer="glorot_uniform",
                 bn_momentum: float = 0.99, name: str = "unet_encoder") -> keras.Model:
    """The encoder of `unet_model_3d`: `(rows, cols, deps, 1)` of any size -> its last block.

    Built from `unet_model_3d` itself (spatial sizes None), so its layers and names are exactly
    the U-Net's encoder layers (`depth_0_conv`, `depth_0_bn`, ..., `depth_{2*depth-1}_bn`) and the
    decoder's layers are not part of it. Its max-poolings floor odd sizes, so any input with every
    side at least `min_side(depth)` passes.

    Returns:
        A `keras.Model` mapping `(B, r, c, d, 1)` to `(B, r // 2**(depth-1), ..., n_base_filters *
        2**depth)`.
    """
    unet = unet_model_3d((None, None, None, 1), depth=depth, n_base_filters=n_base_filters,
                         kernel_initializer=kernel_initializer, bn_momentum=float(bn_momentum))
    out = unet.get_layer(ENCODER_OUTPUT.format(2 * depth - 1)).output
    return keras.Model(unet.input, out, name=name)


def min_side(depth: int) -> int:
    """Smallest side an encoder input may have: `2**(depth-1)` (one voxel after the poolings)."""
    return 2 ** (int(depth) - 1)


# Upper bound of a layer width or a count of an option: far above the paper's values (App. A),
# below what a model or a loop over it can hold.
MAX_UNITS = 65536


def check_positive_int(name: str, value, minimum: int = 1, maximum: int = MAX_UNITS) -> None:
    """Raise ValueError unless `value` is an int in [`minimum`, `maximum`] (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValueError(f"`{name}` must be an integer in [{minimum}, {maximum}]. "
                         f"Received: {name}={value!r}.")


def check_fraction(name: str, value) -> None:
    """Raise ValueError unless `value` is a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"`{name}` must be a number in (0, 1]. Received: {name}={value!r}.")


def check_cube_shape(cube_shape: Sequence[int]) -> tuple:
    """`cube_shape` as a tuple of 3 positive ints, or ValueError."""
    shape = tuple(cube_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                  for s in shape):
        raise ValueError(f"`cube_shape` must be 3 positive ints (rows, cols, deps). "
                         f"Received: cube_shape={cube_shape!r}.")
    return shape


def bernoulli_entropy(p: float) -> float:
    """Binary cross-entropy (nats) of predicting a label that is 1 with probability `p` by `p`."""
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def float32_dense(units: int, activation: str, name: str, kernel_initializer) -> keras.layers.Dense:
    """A Dense output layer computed in float32 (outputs and loss stay float32 under mixed
    precision)."""
    return keras.layers.Dense(units, activation=activation, dtype="float32", name=name,
                              kernel_initializer=kernel_initializer)
