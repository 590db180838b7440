"""The 2D U-Net of Models Genesis 2D (`unet_model_2d`): `unet_model_3d` with 2D layers.

Genesis Chest CT 2D and Genesis Chest X-ray (paper Table 1, Sec. 3.1) restore 2D images: axial CT
slices and radiographs. This builder keeps everything of `unet_model_3d` but the number of spatial
axes: conv blocks Conv2D(3x3, same) -> BatchNormalization -> ReLU named `depth_{i}_conv/_bn/_relu`,
MaxPooling2D(2) / UpSampling2D(2), the encoder output `depth_{2*depth-1}_relu` (`depth_7_relu` at
depth 4) and the decoder output `depth_{4*depth-3}_relu` (`depth_13_relu`) for the heads, the same
initialisers and BatchNormalization settings, and a final 1x1 conv named `conv2d_1` (by analogy
with the release's auto-named `conv3d_1`; the release publishes no 2D Keras file to copy a name
from). The body is `unet3d.unet_core(dims=2)`: one piece of code for both.

The paper's own 2D experiments used the U-Net of the Segmentation Models library with ImageNet
encoders (Sec. 3.3, footnote 6); `models.imagenet2d` builds that kind of network from keras-hub
backbones. A file written by `unet_model_2d` (e.g. our `Genesis_Chest_CT_2D.h5`) fills
`unet_model_2d` of the same depth and width, not the keras-hub network.

Computation is channels_last; `data_format="channels_first"` accepts `(N, 1, rows, cols)` arrays
at the edges (a transpose inside the model), as in 3D.
"""

from __future__ import annotations

import keras
from keras import layers

from models_genesis.models.unet3d import (
    BN_MOMENTUM,
    channel_edges,
    channels_last_to,
    check_divisible,
    resolve_initializer,
    spatial_input_shape,
    unet_core,
)

FINAL_CONV_NAME_2D = "conv2d_1"


def check_unet_args(depth, n_base_filters, n_labels, bn_momentum) -> None:
    """Raise `ValueError` for a non-positive size or a momentum outside [0, 1)."""
    for arg, value in (("depth", depth), ("n_base_filters", n_base_filters), ("n_labels", n_labels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}.")
    if isinstance(bn_momentum, bool) or not isinstance(bn_momentum, (int, float)) \
            or not 0 <= bn_momentum < 1:
        raise ValueError(f"`bn_momentum` must be a float in [0, 1). "
                         f"Received: bn_momentum={bn_momentum!r}.")


def unet_model_2d(input_shape=(64, 64, 1), n_labels: int = 1, depth: int = 4,
                  n_base_filters: int = 32, batch_normalization: bool = True,
                  activation_name: str = "sigmoid", data_format: str = "channels_last",
                  kernel_initializer="glorot_uniform", name: str = "unet_model_2d",
                  bn_momentum: float = BN_MOMENTUM) -> keras.Model:
    """Build the 2D U-Net of Models Genesis 2D (restoration of slices or radiographs).

    Args:
        input_shape: tuple. `(rows, cols, channels)` for channels_last (default `(64, 64, 1)`),
            `(channels, rows, cols)` for channels_first. Spatial sizes may be None or any
            multiple of `2**(depth-1)` (8 at depth 4). Channels: 1 for restoration, 3 for the
            slice-based and 2.5D inputs of `data.target_tasks.inputs2d`.
        n_labels: int. Output channels of the final 1x1 conv. Defaults to 1.
        depth: int. Encoder levels (4); blocks are numbered 0..4*depth-3 as in 3D.
        n_base_filters: int. Filters of the first block (32: 5,449,473 parameters at depth 4
            with one input channel).
        batch_normalization, activation_name, data_format, kernel_initializer, name,
            bn_momentum: as in `unet_model_3d`.

    Returns:
        A `keras.Model` `(B, rows, cols, channels) -> (B, rows, cols, n_labels)`.

    Raises:
        ValueError: bad shape, depth, filter count, data format or initializer.

    Example:
        >>> model = unet_model_2d((64, 64, 1))
        >>> model.load_weights("pretrained_weights/Genesis_Chest_CT_2D.h5")  # doctest: +SKIP
    """
    check_unet_args(depth, n_base_filters, n_labels, bn_momentum)
    cl_shape = spatial_input_shape(input_shape, data_format, dims=2)
    check_divisible(cl_shape[:2], depth)
    inputs, x = channel_edges(input_shape, data_format)
    body = unet_core(x, depth=depth, n_base_filters=n_base_filters,
                     batch_normalization=batch_normalization, kernel_initializer=kernel_initializer,
                     bn_momentum=float(bn_momentum), dims=2)
    out = layers.Conv2D(n_labels, 1, kernel_initializer=resolve_initializer(kernel_initializer),
                        name=FINAL_CONV_NAME_2D)(body["decoder"])
    out = layers.Activation(activation_name, name="output")(out)
    return keras.Model(inputs, channels_last_to(out, data_format), name=name)


def restoration_model_2d(slice_shape, *, n_base_filters: int = 32, depth: int = 4,
                         kernel_initializer="glorot_uniform", bn_momentum: float = BN_MOMENTUM):
    """`(unet, trainable)` for 2D pre-training (`pretrain --dims 2`): `unet_model_2d` on
    `(rows, cols, 1)` and the model that trains (the same layers with a float32 sigmoid under a
    mixed-precision policy, so outputs and loss are float32; `unet` itself otherwise)."""
    unet = unet_model_2d((*tuple(slice_shape)[:2], 1), depth=depth, n_base_filters=n_base_filters,
                         kernel_initializer=kernel_initializer, bn_momentum=float(bn_momentum))
    if keras.mixed_precision.global_policy().compute_dtype == "float32":
        return unet, unet
    logits = unet.get_layer(FINAL_CONV_NAME_2D).output
    out = layers.Activation("sigmoid", dtype="float32", name="output_float32")(logits)
    return unet, keras.Model(unet.input, out, name="restoration_2d_mixed_precision")
