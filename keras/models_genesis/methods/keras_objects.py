"""The Keras objects the methods' models are saved with: registered for `.keras` files.

`masked_mse` is the in-painting loss on the cutout voxels (App. C.2); `MergePatches` and
`SplitPatches` carry the puzzle patches through the shared encoder of Jigsaw and Rubik's cube
(App. A); `OrientationLoss` is Rubik's cube's loss on its 16 orientation outputs. They live in this module, which imports Keras alone, so that `models_genesis.saving`
can register them whichever module of the package happens to import Keras first.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="models_genesis")
def masked_mse(y_true, y_pred):
    """Per-cube MSE on the cutout voxels: `sum(mask * (pred - original)**2) / sum(mask)`.

    Args:
        y_true: `(B, r, c, d, 2)`, channel 0 the original, channel 1 the mask (channels_last).
        y_pred: `(B, r, c, d, 1)`.

    Returns:
        `(B,)` losses (a cube without cutout voxels counts 0).
    """
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    target, mask = y_true[..., :1], y_true[..., 1:]
    axes = tuple(range(1, len(y_pred.shape)))
    err = keras.ops.sum(mask * keras.ops.square(y_pred - target), axis=axes)
    return err / keras.ops.maximum(keras.ops.sum(mask, axis=axes), 1.0)


@keras.saving.register_keras_serializable(package="models_genesis")
class MergePatches(keras.layers.Layer):
    """`(B, G, *shape)` -> `(B * G, *shape)`: the G patches of every puzzle as one batch."""

    def call(self, x):
        return keras.ops.reshape(x, (-1,) + tuple(x.shape[2:]))

    def compute_output_shape(self, input_shape):
        batch, groups = input_shape[:2]
        return (None if None in (batch, groups) else batch * groups,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="models_genesis")
class SplitPatches(keras.layers.Layer):
    """`(B * G, F)` -> `(B, G * F)`: the features of each puzzle's G patches side by side."""

    def __init__(self, n_patches: int, **kwargs):
        super().__init__(**kwargs)
        self.n_patches = int(n_patches)

    def call(self, x):
        return keras.ops.reshape(x, (-1, self.n_patches * int(x.shape[-1])))

    def compute_output_shape(self, input_shape):
        # the batch of puzzles is unknown here (JAX traces it symbolically): only (B, G * F)
        batch = input_shape[0]
        return (None if batch is None else batch // self.n_patches,
                self.n_patches * int(input_shape[-1]))

    def get_config(self):
        return {**super().get_config(), "n_patches": self.n_patches}


@keras.saving.register_keras_serializable(package="models_genesis")
class OrientationLoss(keras.losses.Loss):
    """Binary cross-entropy of the 16 orientation outputs, summed (or averaged) over them and
    multiplied by `weight`; per sample, then averaged over the batch."""

    def __init__(self, weight: float = 1.0, reduction_over_outputs: str = "sum",
                 name: str = "orientation_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight, self.reduction_over_outputs = float(weight), reduction_over_outputs

    def call(self, y_true, y_pred):
        bce = keras.losses.binary_crossentropy(y_true, y_pred)  # mean over the outputs: (B,)
        scale = self.weight * (int(y_pred.shape[-1]) if self.reduction_over_outputs == "sum" else 1)
        return bce * scale

    def get_config(self):
        return {**super().get_config(), "weight": self.weight,
                "reduction_over_outputs": self.reduction_over_outputs}
