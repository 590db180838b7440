"""Target-task models in PyTorch, mirroring `models_genesis.models.heads` layer for layer.

The release README's transfer recipes (docs/release_reference.md, 'Transfer recipes and input
sizes'), with the Keras layer names:

* `GenesisClassifier` (NCC, ECC): the encoder's `depth_{2*depth-1}_relu` -> global average pooling
  (`gap`) -> Linear(dense_units) + ReLU (`fc1`) -> Linear(n_classes) (`classifier`) -> activation;
* `GenesisSegmenter` (NCS, LCS, BMS): the decoder's `depth_{4*depth-3}_relu` -> Conv3d(n_classes,
  1x1x1) (`segmentation_conv`) -> activation over the channel axis.

The U-Net body is a `KerasUNet3D` under `unet`; `convert.load_keras_weights(model, source,
strict=False)` fills it from Genesis weights (a Keras model or HDF5 file) and keeps the head's
initialisation, so the converted weights can be fine-tuned in PyTorch. A whole Keras target model
converts with `strict=True` (the default).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from pytorch_compat.keras_unet3d import KerasUNet3D, apply_activation, check_activation


def _default_activation(activation: Optional[str], n_classes: int) -> str:
    """The Keras heads' rule: None -> sigmoid for one class, softmax otherwise."""
    if activation is None:
        return "sigmoid" if n_classes == 1 else "softmax"
    return check_activation(activation)


class GenesisClassifier(nn.Module):
    """U-Net encoder + global average pooling -> `fc1` (ReLU) -> `classifier`.

    Args:
        n_classes: int. Output units. Defaults to 1.
        activation: str. "sigmoid", "softmax", or "linear" for logits (e.g. for
            `BCEWithLogitsLoss`). None (default): sigmoid for 1 class, softmax otherwise, as Keras.
        in_channels, depth, n_base_filters: U-Net size (release: 1, 4, 32).
        dense_units: int. Width of `fc1`. Defaults to 1024.

    Call:
        x: `(N, in_channels, rows, cols, deps)`. Returns `(N, n_classes)`.
    """

    def __init__(self, n_classes: int = 1, activation: Optional[str] = None, *, in_channels: int = 1,
                 depth: int = 4, n_base_filters: int = 32, dense_units: int = 1024):
        super().__init__()
        self.unet = KerasUNet3D(in_channels, depth=depth, n_base_filters=n_base_filters,
                                include_decoder=False, include_top=False)
        for arg, value in (("n_classes", n_classes), ("dense_units", dense_units)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}.")
        # === Config ===
        self.n_classes = n_classes
        self.activation = _default_activation(activation, n_classes)
        # === Layers (Keras names; `gap` has no weights) ===
        self.fc1 = nn.Linear(self.unet.encoder_channels, dense_units)
        self.classifier = nn.Linear(dense_units, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.unet(x).mean(dim=(2, 3, 4))  # gap
        return apply_activation(self.classifier(F.relu(self.fc1(x))), self.activation)


class GenesisSegmenter(nn.Module):
    """U-Net + `segmentation_conv` (Conv3d(n_classes, 1x1x1)) -> activation over channels.

    Args:
        n_classes: int. Output channels. Defaults to 1.
        activation: str. "sigmoid", "softmax" (over axis 1), or "linear" for logits. None
            (default): sigmoid for 1 class, softmax otherwise, as Keras.
        in_channels, depth, n_base_filters: U-Net size (release: 1, 4, 32).

    Call:
        x: `(N, in_channels, rows, cols, deps)`. Returns `(N, n_classes, rows, cols, deps)`.
    """

    def __init__(self, n_classes: int = 1, activation: Optional[str] = None, *, in_channels: int = 1,
                 depth: int = 4, n_base_filters: int = 32):
        super().__init__()
        self.unet = KerasUNet3D(in_channels, depth=depth, n_base_filters=n_base_filters,
                                include_top=False)
        if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 1:
            raise ValueError(f"`n_classes` must be a positive int. Received: n_classes={n_classes!r}.")
        # === Config ===
        self.n_classes = n_classes
        self.activation = _default_activation(activation, n_classes)
        # === Layers (Keras names) ===
        self.segmentation_conv = nn.Conv3d(self.unet.out_channels, n_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_activation(self.segmentation_conv(self.unet(x)), self.activation)
