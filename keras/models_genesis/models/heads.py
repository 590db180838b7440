"""Target-task models: the Genesis U-Net with a classification or a segmentation head.

The release README's transfer recipes (REFERENCE 1), with the layer names fixed:

* classification (NCC, ECC): `depth_7_relu` (the encoder's output) -> GlobalAveragePooling3D ->
  Dense(1024, relu) -> Dense(n_classes, sigmoid or softmax);
* segmentation (NCS, LCS, BMS): `depth_13_relu` (the decoder's output) -> Conv3D(n_classes, 1x1x1)
  -> sigmoid or softmax over the channel axis.

Both build the U-Net body with `unet_core`, so scratch baselines only differ in
`kernel_initializer`, and `weights=` initialises the body from a Genesis weight file by layer name
(`init_from_genesis`: encoder layers for classification, the whole U-Net for segmentation).
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import layers

from models_genesis.models.unet3d import (
    channel_edges,
    channels_last_to,
    check_divisible,
    resolve_initializer,
    spatial_input_shape,
    unet_core,
)

HEAD_KINDS = ("classification", "segmentation")


def target_model(kind: str, input_shape=(64, 64, 32, 1), n_classes: int = 1,
                 activation: Optional[str] = None, *, weights=None, depth: int = 4,
                 n_base_filters: int = 32, kernel_initializer="glorot_uniform",
                 data_format: str = "channels_last", dense_units: int = 1024,
                 name: Optional[str] = None) -> keras.Model:
    """Build a U-Net with a target head.

    Args:
        kind: str. "classification" (head on the encoder) or "segmentation" (on the decoder).
        input_shape: tuple. `(rows, cols, deps, 1)` channels_last or `(1, rows, cols, deps)`
            channels_first; spatial sizes divisible by 8 at depth 4.
        n_classes: int. Output units (classification) or channels (segmentation). Defaults to 1.
        activation: str. "sigmoid" (default for 1 class) or "softmax" (default otherwise).
        weights: path of a Genesis weight file (Keras 2 HDF5 as released, or ours) to initialise
            the body from, matched by layer name; None keeps `kernel_initializer` (scratch).
        depth, n_base_filters: U-Net size (release: 4, 32).
        kernel_initializer: "uniform", "glorot_uniform", "he_uniform" (the paper's scratch
            baselines) or any Keras initializer; also used by the head's layers.
        data_format: layout of input and (segmentation) output; computation is channels_last.
        dense_units: width of the classification head's hidden Dense layer. Defaults to 1024.
        name: model name. Defaults to "genesis_{kind}".

    Returns:
        A `keras.Model`: classification output `(B, n_classes)`; segmentation output
        `(B, rows, cols, deps, n_classes)` (channels_first: `(B, n_classes, rows, cols, deps)`).

    Raises:
        ValueError: unknown kind or activation, bad shapes; see `init_from_genesis` for weights.
    """
    if kind not in HEAD_KINDS:
        raise ValueError(f"`kind` must be one of {HEAD_KINDS}. Received: kind={kind!r}.")
    if not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"`n_classes` must be a positive int. Received: n_classes={n_classes!r}.")
    activation = activation or ("sigmoid" if n_classes == 1 else "softmax")
    if activation not in ("sigmoid", "softmax"):
        raise ValueError(f"`activation` must be 'sigmoid' or 'softmax'. Received: activation={activation!r}.")
    check_divisible(spatial_input_shape(input_shape, data_format)[:3], depth)
    inputs, x = channel_edges(input_shape, data_format)
    body = unet_core(x, depth=depth, n_base_filters=n_base_filters,
                     kernel_initializer=kernel_initializer)
    init = resolve_initializer(kernel_initializer)
    if kind == "classification":
        x = layers.GlobalAveragePooling3D(name="gap")(body["encoder"])
        x = layers.Dense(dense_units, activation="relu", kernel_initializer=init, name="fc1")(x)
        outputs = layers.Dense(n_classes, activation=activation, kernel_initializer=init,
                               name="classifier")(x)
    else:
        x = layers.Conv3D(n_classes, 1, kernel_initializer=init, name="segmentation_conv")(body["decoder"])
        x = layers.Activation(activation, name="segmentation")(x)  # softmax: channel axis (-1)
        outputs = channels_last_to(x, data_format)
    model = keras.Model(inputs, outputs, name=name or f"genesis_{kind}")
    if weights is not None:
        from models_genesis.models.weights import init_from_genesis

        init_from_genesis(model, weights)
    return model


def classification_model(input_shape=(64, 64, 32, 1), n_classes: int = 1, activation=None, **kwargs):
    """U-Net encoder + GlobalAveragePooling3D -> Dense(1024) -> Dense(n_classes). See `target_model`."""
    return target_model("classification", input_shape, n_classes, activation, **kwargs)


def segmentation_model(input_shape=(64, 64, 32, 1), n_classes: int = 1, activation=None, **kwargs):
    """U-Net + Conv3D(n_classes, 1x1x1) -> sigmoid/softmax. See `target_model`."""
    return target_model("segmentation", input_shape, n_classes, activation, **kwargs)
