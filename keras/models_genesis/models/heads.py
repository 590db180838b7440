"""Target-task models: the Genesis U-Net with a classification or a segmentation head.

The release README's transfer recipes (docs/release_reference.md, 'Transfer recipes and input
sizes'), with the layer names fixed:

* classification (NCC, ECC): `depth_7_relu` (the encoder's output) -> GlobalAveragePooling3D ->
  Dense(1024, relu) -> Dense(n_classes, sigmoid or softmax);
* segmentation (NCS, LCS, BMS): `depth_13_relu` (the decoder's output) -> Conv3D(n_classes, 1x1x1)
  -> sigmoid or softmax over the channel axis.

Transfer scenario 1 of Sec. 3.2 (the cheap probe of what pre-training learned): `head="linear"`
replaces the classification head by a linear classifier on the encoder's pooled features
(GlobalAveragePooling3D -> Dense(n_classes) -> sigmoid/softmax: logistic regression), and
`freeze_blocks` fixes chosen `depth_{i}` blocks (their conv weights and BatchNorm statistics;
`encoder_blocks(depth)` for the whole encoder, depth_0..7 at depth 4).

Both build the U-Net body with `unet_core`, so scratch baselines only differ in
`kernel_initializer`, and `weights=` initialises the body from a Genesis weight file by layer name
(`init_from_genesis`: encoder layers for classification, the whole U-Net for segmentation).
"""

from __future__ import annotations

import numbers
from typing import Optional

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
from models_genesis.models.weights import init_from_genesis

HEAD_KINDS = ("classification", "segmentation")
HEADS = ("release", "linear")


def encoder_blocks(depth: int = 4) -> tuple:
    """Indices `i` of the encoder's `depth_{i}` blocks: 0..2*depth-1 (0..7 for the release)."""
    return tuple(range(2 * int(depth)))


def freeze_blocks(model: keras.Model, blocks) -> list:
    """Make the `depth_{i}` blocks of `model` not trainable (transfer scenario 1, Sec. 3.2).

    A frozen block keeps its conv kernel and bias, and its BatchNormalization runs in inference
    mode (Keras 3: a non-trainable BatchNormalization normalises with its moving mean and
    variance and does not update them), so the block computes the same function during training.
    Call it before `compile`.

    Args:
        model: a model with the U-Net's `depth_{i}_conv` (and `depth_{i}_bn`) layers.
        blocks: iterable of block indices, e.g. `encoder_blocks(4)` for depth_0..7.

    Returns:
        The names of the layers frozen.

    Raises:
        ValueError: an index that is not an int >= 0 or a block the model does not have.
    """
    frozen = []
    for i in blocks:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0:
            raise ValueError(f"Block indices must be ints >= 0. Received: blocks={blocks!r}.")
        names = [n for n in (f"depth_{i}_conv", f"depth_{i}_bn")
                 if any(layer.name == n for layer in model.layers)]
        if not names:
            present = sorted({int(layer.name.split("_")[1]) for layer in model.layers
                              if layer.name.startswith("depth_") and layer.name.endswith("_conv")})
            raise ValueError(f"Model {model.name!r} has no block depth_{i} to freeze; its blocks "
                             f"are {present}. Received: blocks={list(blocks)!r}.")
        for name in names:
            model.get_layer(name).trainable = False
        frozen.extend(names)
    return frozen


def target_model(kind: str, input_shape=(64, 64, 32, 1), n_classes: int = 1,
                 activation: Optional[str] = None, *, weights=None, depth: int = 4,
                 n_base_filters: int = 32, kernel_initializer="glorot_uniform",
                 data_format: str = "channels_last", dense_units: int = 1024,
                 head: str = "release", frozen_blocks=(), bn_momentum: float = BN_MOMENTUM,
                 name: Optional[str] = None) -> keras.Model:
    """Build a U-Net with a target head.

    Args:
        kind: str. "classification" (head on the encoder) or "segmentation" (on the decoder).
        input_shape: tuple. `(rows, cols, deps, 1)` channels_last or `(1, rows, cols, deps)`
            channels_first; spatial sizes divisible by 8 at depth 4.
        n_classes: int. Output units (classification) or channels (segmentation). Defaults to 1.
        activation: str. "sigmoid" (default for 1 class) or "softmax" (default otherwise).
        weights: path of a Genesis weight file (Keras 2 HDF5 as released, or ours) or a preset
            name of `models.presets.PRETRAINED_WEIGHTS` ("genesis_chest_ct", resolved as the
            CLI's `--weights`) to initialise the body from, matched by layer name; None keeps
            `kernel_initializer` (scratch).
        depth, n_base_filters: U-Net size (release: 4, 32).
        kernel_initializer: "uniform", "glorot_uniform", "he_uniform" (the paper's scratch
            baselines) or any Keras initializer; also used by the head's layers.
        data_format: layout of input and (segmentation) output; computation is channels_last.
        dense_units: width of the classification head's hidden Dense layer. Defaults to 1024.
        head: "release" (the heads above) or "linear": for classification, GlobalAveragePooling3D
            -> Dense(n_classes) (no hidden layer: a linear classifier, transfer scenario 1); for
            segmentation the release's 1x1x1 conv head is already linear, so both are the same.
        frozen_blocks: `depth_{i}` blocks made not trainable after any `weights` are loaded (see
            `freeze_blocks`); `encoder_blocks(depth)` freezes the encoder.
        bn_momentum: momentum of the body's BatchNormalization moving statistics (release
            0.99); loaded weights keep their statistics, this sets how fast they then move.
        name: model name. Defaults to "genesis_{kind}".

    Returns:
        A `keras.Model`: classification output `(B, n_classes)`; segmentation output
        `(B, rows, cols, deps, n_classes)` (channels_first: `(B, n_classes, rows, cols, deps)`).

    Raises:
        ValueError: unknown kind or activation, bad shapes, an unknown preset name (the
            message lists the presets); see `init_from_genesis` for weights.

    Example:
        >>> model = segmentation_model((64, 64, 32, 1), weights="genesis_chest_ct")
    """
    _check_head(kind, head, n_classes)
    activation = head_activation(activation, n_classes)
    check_divisible(spatial_input_shape(input_shape, data_format)[:3], depth)
    inputs, x = channel_edges(input_shape, data_format)
    body = unet_core(x, depth=depth, n_base_filters=n_base_filters,
                     kernel_initializer=kernel_initializer, bn_momentum=bn_momentum)
    init = resolve_initializer(kernel_initializer)
    if kind == "classification":
        outputs = _classification_head(body["encoder"], n_classes, activation, init,
                                       hidden_units=dense_units if head == "release" else None)
    else:
        outputs = channels_last_to(
            _segmentation_head(body["decoder"], n_classes, activation, init), data_format)
    model = keras.Model(inputs, outputs, name=name or f"genesis_{kind}")
    if weights is not None:
        init_from_genesis(model, weights)
    freeze_blocks(model, frozen_blocks)
    return model


def _check_head(kind: str, head: str, n_classes: int) -> None:
    """Raise `ValueError` for an unknown `kind` or `head`, or `n_classes` < 1."""
    if kind not in HEAD_KINDS:
        raise ValueError(f"`kind` must be one of {HEAD_KINDS}. Received: kind={kind!r}.")
    if head not in HEADS:
        raise ValueError(f"`head` must be one of {HEADS}. Received: head={head!r}.")
    if not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"`n_classes` must be a positive int. Received: n_classes={n_classes!r}.")


def head_activation(activation: Optional[str], n_classes: int) -> str:
    """The output activation: `activation`, or by default sigmoid for 1 class, else softmax.

    Raises:
        ValueError: an activation other than "sigmoid" or "softmax".
    """
    activation = activation or ("sigmoid" if n_classes == 1 else "softmax")
    if activation not in ("sigmoid", "softmax"):
        raise ValueError(f"`activation` must be 'sigmoid' or 'softmax'. Received: activation={activation!r}.")
    return activation


def _classification_head(features, n_classes: int, activation: str, init,
                         hidden_units: Optional[int]):
    """Encoder output (`depth_7_relu`) -> GlobalAveragePooling3D [-> Dense(hidden_units, relu)]
    -> Dense(n_classes).

    `hidden_units=None` leaves out the hidden layer (the linear head, transfer scenario 1).
    """
    x = layers.GlobalAveragePooling3D(name="gap")(features)
    if hidden_units is not None:
        x = layers.Dense(hidden_units, activation="relu", kernel_initializer=init, name="fc1")(x)
    # float32 outputs (and so loss) under a mixed-precision policy; the same under float32.
    return layers.Dense(n_classes, activation=activation, kernel_initializer=init,
                        dtype="float32", name="classifier")(x)


def _segmentation_head(features, n_classes: int, activation: str, init):
    """Decoder output (`depth_13_relu`) -> Conv3D(n_classes, 1x1x1) -> activation, channels_last."""
    x = layers.Conv3D(n_classes, 1, kernel_initializer=init, name="segmentation_conv")(features)
    # softmax: channel axis (-1); float32 under a mixed-precision policy, like the classifier.
    return layers.Activation(activation, dtype="float32", name="segmentation")(x)


def classification_model(input_shape=(64, 64, 32, 1), n_classes: int = 1, activation=None, **kwargs):
    """U-Net encoder + GlobalAveragePooling3D -> Dense(1024) -> Dense(n_classes). See `target_model`."""
    return target_model("classification", input_shape, n_classes, activation, **kwargs)


def segmentation_model(input_shape=(64, 64, 32, 1), n_classes: int = 1, activation=None, **kwargs):
    """U-Net + Conv3D(n_classes, 1x1x1) -> sigmoid/softmax. See `target_model`."""
    return target_model("segmentation", input_shape, n_classes, activation, **kwargs)
