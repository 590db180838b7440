"""2D target models: the 2D U-Net (or an ImageNet encoder) with a classification or segmentation
head, for the 2D and 2.5D approaches of paper Sec. 4.5 (Fig. 7, Table 4).

The heads are those of `models.heads` in 2D: classification `encoder -> GlobalAveragePooling2D ->
Dense(1024, relu) -> Dense(n_classes)`; segmentation `decoder -> Conv2D(n_classes, 1x1) ->
sigmoid/softmax`. Three initialisations, the columns of Table 4:

* `encoder="genesis"` with `weights=` a Genesis 2D file (`unet_model_2d`'s layout, e.g.
  `Genesis_Chest_CT_2D.h5` or `Genesis_Chest_Xray.h5` from `pretrain --dims 2`): the U-Net's
  `depth_*` layers are loaded by name. The 2D/2.5D inputs have 3 channels (adjacent or orthogonal
  slices) while the files are pre-trained on 1-channel images: the first kernel is then repeated
  over the channels and divided by their number, so a constant image gives the same response;
* `encoder="genesis"`, `weights=None`: scratch ("Random"), with `kernel_initializer`;
* `encoder="imagenet"`: a keras-hub backbone (`models.imagenet2d`), ImageNet weights when
  `backbone` is a preset name and `imagenet_weights=True`.
"""

from __future__ import annotations

import os
from typing import Optional

import keras
import numpy as np
from keras import layers

from models_genesis.models.heads import HEAD_KINDS, head_activation
from models_genesis.models.imagenet2d import DEFAULT_PRESET, imagenet_unet_body, keras_hub_backbone
from models_genesis.models.unet2d import check_unet_args
from models_genesis.models.unet3d import (
    channel_edges,
    channels_last_to,
    check_divisible,
    resolve_initializer,
    spatial_input_shape,
    unet_core,
)
from models_genesis.models.presets import resolve_weights
from models_genesis.models.weights import _check_and_assign, _match_by_name, read_keras2_weights

ENCODERS = ("genesis", "imagenet")


def target_model_2d(kind: str, input_shape=(64, 64, 3), n_classes: int = 1,
                    activation: Optional[str] = None, *, encoder: str = "genesis", weights=None,
                    backbone=None, imagenet_weights: bool = True, depth: int = 4,
                    n_base_filters: int = 32, kernel_initializer="glorot_uniform",
                    data_format: str = "channels_last", dense_units: int = 1024,
                    name: Optional[str] = None) -> keras.Model:
    """Build a 2D U-Net (Genesis 2D / scratch) or ImageNet U-Net with a target head.

    Args:
        kind: "classification" or "segmentation".
        input_shape: `(rows, cols, channels)` channels_last or `(channels, rows, cols)`
            channels_first; spatial sizes divisible by `2**(depth-1)` (genesis) or by the
            encoder's largest stride (imagenet: 32 for a ResNet).
        n_classes, activation, depth, n_base_filters, kernel_initializer, data_format,
            dense_units: as in `models.heads.target_model`.
        encoder: "genesis" (the 2D U-Net of `unet_model_2d`) or "imagenet" (keras-hub).
        weights: a Genesis 2D Keras 2 `.h5` file or preset name ("genesis_chest_ct_2d",
            "genesis_chest_xray") to initialise the U-Net from (genesis only).
        backbone: (imagenet) a keras-hub preset name (default "resnet_50_imagenet") or a built
            keras-hub Backbone.
        imagenet_weights: (imagenet, preset name) download and load the ImageNet weights.
        name: model name. Defaults to "genesis2d_{kind}" or "imagenet2d_{kind}".

    Returns:
        A `keras.Model`: `(B, n_classes)` or `(B, rows, cols, n_classes)` (channels_first:
        `(B, n_classes, rows, cols)`).

    Raises:
        ValueError: unknown kind, encoder or activation, bad shapes, weights of a 3D model.
        ImportError: encoder="imagenet" without keras-hub installed.
    """
    if kind not in HEAD_KINDS:
        raise ValueError(f"`kind` must be one of {HEAD_KINDS}. Received: kind={kind!r}.")
    if encoder not in ENCODERS:
        raise ValueError(f"`encoder` must be one of {ENCODERS}. Received: encoder={encoder!r}.")
    check_unet_args(depth, n_base_filters, n_classes, 0.0)
    activation = head_activation(activation, n_classes)
    cl_shape = spatial_input_shape(input_shape, data_format, dims=2)
    inputs, x = channel_edges(input_shape, data_format)
    if encoder == "genesis":
        check_divisible(cl_shape[:2], depth)
        body = unet_core(x, depth=depth, n_base_filters=n_base_filters,
                         kernel_initializer=kernel_initializer, dims=2)
    else:
        body = _imagenet_body(x, backbone, imagenet_weights, kernel_initializer, weights=weights)
    init = resolve_initializer(kernel_initializer)
    if kind == "classification":
        h = layers.GlobalAveragePooling2D(name="gap")(body["encoder"])
        h = layers.Dense(dense_units, activation="relu", kernel_initializer=init, name="fc1")(h)
        outputs = layers.Dense(n_classes, activation=activation, kernel_initializer=init,
                               name="classifier")(h)
    else:
        h = layers.Conv2D(n_classes, 1, kernel_initializer=init, name="segmentation_conv")(body["decoder"])
        outputs = channels_last_to(layers.Activation(activation, name="segmentation")(h), data_format)
    model = keras.Model(inputs, outputs, name=name or f"{'genesis2d' if encoder == 'genesis' else 'imagenet2d'}_{kind}")
    if weights is not None:
        init_from_genesis_2d(model, weights)
    return model


def _imagenet_body(x, backbone, imagenet_weights: bool, kernel_initializer, *, weights):
    """The U-Net body on a keras-hub encoder (`backbone`: a preset name, None or a Backbone).

    Raises:
        ValueError: `weights` given (a Genesis 2D file fits encoder="genesis" only).
    """
    if weights is not None:
        raise ValueError("`weights` (a Genesis 2D file) applies to encoder='genesis'; the "
                         f"ImageNet encoder takes its weights from `backbone`. Received: weights={weights!r}.")
    if backbone is None or isinstance(backbone, str):
        backbone = keras_hub_backbone(backbone or DEFAULT_PRESET, load_weights=imagenet_weights)
    return imagenet_unet_body(x, backbone, kernel_initializer=kernel_initializer)


def init_from_genesis_2d(model, path):
    """Fill the `depth_*` layers of a 2D target model from a Genesis 2D weight file by name.

    A first kernel pre-trained on `c0` channels is repeated to the model's `c` channels and scaled
    by `c0 / c` when `c` is a multiple of `c0` (1 -> 3 for the slice-based and 2.5D inputs).

    Returns:
        `{"loaded": [...], "initialised": [...]}` layer names, as `weights.init_from_genesis`.

    Raises:
        ValueError: a 3D file, or a layer that does not fit (named, with both shapes).
    """
    path = os.fspath(resolve_weights(path))
    file_layers = read_keras2_weights(path)
    body = [layer for layer in model.layers if layer.weights and layer.name.startswith("depth_")]
    if not body:
        raise ValueError(f"Model {model.name!r} has no `depth_*` layers to initialise from {path!r}.")
    first = file_layers.get("depth_0_conv")
    want = body[0].weights[0].shape
    if first is not None and first[0].ndim == len(want) == 4 and first[0].shape[2] != want[2] \
            and want[2] % first[0].shape[2] == 0:
        reps = want[2] // first[0].shape[2]
        file_layers["depth_0_conv"] = [np.tile(first[0], (1, 1, reps, 1)) / reps, *first[1:]]
    loaded = _check_and_assign(_match_by_name(body, file_layers, path), file_layers, path)
    rest = [layer.name for layer in model.layers if layer.weights and layer.name not in set(loaded)]
    return {"loaded": loaded, "initialised": rest}
