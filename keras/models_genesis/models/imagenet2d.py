"""Models ImageNet for the 2D baselines: a U-Net on an ImageNet-pretrained keras-hub encoder.

The paper's 2D applications use the U-Net of the Segmentation Models library (Sec. 3.3, footnote
6: github.com/qubvel/segmentation_models) with encoders pre-trained on ImageNet ("Models
ImageNet", Table 1, Fig. 7, Table 4). Which encoder the paper used is not stated. This module
builds the same kind of network in Keras 3 from a keras-hub backbone: the backbone's
`pyramid_outputs` (P2..P5 of a ResNet, strides 4..32) are the skips; the decoder up-samples by 2,
concatenates the skip of that stride and applies two Conv2D(3x3) -> BatchNormalization -> ReLU
blocks, with Segmentation Models' default widths (256, 128, 64, 32, 16), until the input's
resolution. Inputs in [0, 1] with 3 channels are normalised with ImageNet's mean and standard
deviation inside the model.

keras-hub is optional (`pip install "models-genesis[2d]"`); it is imported only here, when such a
model is built. The ImageNet weights are the user's download (`keras_hub.models.Backbone.
from_preset("resnet_50_imagenet")` fetches them from Kaggle/Hugging Face on first use).
"""

from __future__ import annotations

from typing import Dict, Sequence

import keras
from keras import layers

from models_genesis.models.unet3d import BN_EPSILON, resolve_initializer

DEFAULT_PRESET = "resnet_50_imagenet"
DECODER_FILTERS = (256, 128, 64, 32, 16)  # segmentation_models.Unet's default decoder widths
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _keras_hub():
    try:
        # keras-hub is optional (extra `2d`): only the ImageNet encoder needs it.
        import keras_hub
    except ImportError as exc:
        raise ImportError(
            "The ImageNet encoder needs keras-hub: pip install 'models-genesis[2d]' "
            "(or pip install keras-hub)."
        ) from exc
    return keras_hub


def keras_hub_backbone(preset: str = DEFAULT_PRESET, *, load_weights: bool = True):
    """Return the keras-hub backbone `preset` (e.g. "resnet_50_imagenet"), with its ImageNet
    weights when `load_weights` (downloaded by keras-hub on first use)."""
    return _keras_hub().models.Backbone.from_preset(preset, load_weights=load_weights)


def _pyramid(backbone) -> Dict[int, object]:
    outputs = getattr(backbone, "pyramid_outputs", None)
    if not outputs:
        raise ValueError(
            f"Backbone {getattr(backbone, 'name', backbone)!r} has no `pyramid_outputs` "
            "(multi-scale features); use a keras-hub image backbone such as a ResNet.")
    return {int(str(k).lstrip("P")): v for k, v in outputs.items()}


def imagenet_unet_body(inputs, backbone, *, decoder_filters: Sequence[int] = DECODER_FILTERS,
                       kernel_initializer="glorot_uniform") -> Dict[str, object]:
    """Encoder (`backbone`) and U-Net decoder on a channels_last tensor `(B, rows, cols, 3)`.

    Returns:
        dict with `"encoder"` (the deepest pyramid level) and `"decoder"` (the last decoder block,
        at the input's resolution), like `unet3d.unet_core`.
    """
    pyramid = _pyramid(backbone)
    levels = sorted(pyramid)
    stages = levels[-1]  # the deepest level has stride 2**stages
    if len(decoder_filters) < stages:
        raise ValueError(f"`decoder_filters` needs {stages} widths for a stride-{2 ** stages} "
                         f"encoder. Received: decoder_filters={tuple(decoder_filters)}.")
    features = keras.Model(backbone.inputs, [pyramid[k] for k in levels], name="imagenet_encoder")
    x = layers.Normalization(mean=IMAGENET_MEAN, variance=[s ** 2 for s in IMAGENET_STD],
                             name="imagenet_normalization")(inputs)
    maps = dict(zip(levels, features(x)))
    init = resolve_initializer(kernel_initializer)
    x = encoder = maps[levels[-1]]
    for stage, level in enumerate(range(stages - 1, -1, -1)):
        x = layers.UpSampling2D(2, name=f"decoder_{stage}_up")(x)
        if level in maps:
            x = layers.Concatenate(axis=-1, name=f"decoder_{stage}_concat")([x, maps[level]])
        for j in range(2):
            x = layers.Conv2D(decoder_filters[stage], 3, padding="same", use_bias=False,
                              kernel_initializer=init, name=f"decoder_{stage}_conv{j}")(x)
            x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"decoder_{stage}_bn{j}")(x)
            x = layers.Activation("relu", name=f"decoder_{stage}_relu{j}")(x)
    return {"encoder": encoder, "decoder": x}
