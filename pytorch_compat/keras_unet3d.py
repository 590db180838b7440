"""The Keras 3D U-Net (`unet_model_3d`, docs/release_reference.md, 'U-Net topology') as a PyTorch
module.

Same topology as the Keras model, so Genesis weights convert both ways (`pytorch_compat.convert`):
conv blocks Conv3d(3x3x3, padding 1, bias) -> BatchNorm3d -> ReLU; MaxPool3d(2) between encoder
levels; the decoder up-samples with nearest-neighbour Upsample(2) (UpSampling3D, no transposed
conv), concatenates [up-sampled, skip] on the channel axis and applies two blocks of the skip's
width; a Conv3d(n_labels, 1x1x1) and the activation close it. BatchNorm uses Keras' epsilon
1e-3 and its momentum 0.99 (PyTorch counts momentum the other way round: 0.01).

Every module carries the Keras layer's name (`depth_{i}_conv`, `depth_{i}_bn`, `conv3d_1`), so
`state_dict()` keys read `depth_0_conv.weight`, `depth_0_bn.running_mean`, ... The input is
channels_first `(N, C, rows, cols, deps)` (Keras' channels_last `(N, rows, cols, deps, C)`
transposed), and a Keras kernel `(k1, k2, k3, in, out)` is the PyTorch weight transposed by
`(4, 3, 0, 1, 2)` with no spatial flip.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn
from torch.nn import functional as F

KERAS_BN_EPSILON = 1e-3
KERAS_BN_MOMENTUM = 1.0 - 0.99  # Keras momentum 0.99 = PyTorch momentum 0.01
FINAL_CONV_NAME = "conv3d_1"
ACTIVATIONS = ("sigmoid", "softmax", "linear")


def apply_activation(x: torch.Tensor, activation: str) -> torch.Tensor:
    """Apply "sigmoid", "softmax" (over the channel axis 1) or "linear" (identity: logits)."""
    if activation == "sigmoid":
        return torch.sigmoid(x)
    if activation == "softmax":
        return torch.softmax(x, dim=1)
    return x


def check_activation(activation) -> str:
    """Map None to "linear" and reject names other than `ACTIVATIONS`."""
    activation = "linear" if activation is None else activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {ACTIVATIONS} or None. "
                         f"Received: activation={activation!r}.")
    return activation


def _positive_int(arg: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}.")


class KerasUNet3D(nn.Module):
    """`unet_model_3d` in PyTorch, layer names and all, for exchanging weights with Keras.

    Args:
        in_channels: int. Input channels. Defaults to 1.
        n_labels: int. Output channels of `conv3d_1`. Defaults to 1.
        depth: int. Encoder levels. Defaults to 4 (blocks depth_0..depth_13).
        n_base_filters: int. Filters of the first block. Defaults to 32: 16,320,257 parameters
            plus 4,672 BatchNorm running statistics, which Keras counts too (16,324,929).
        batch_normalization: bool. BatchNorm3d after each conv. Defaults to True.
        activation: str. "sigmoid" (default), "softmax" (channel axis) or "linear"/None.
        include_decoder: bool. Build the decoder. False keeps the encoder only (blocks
            `depth_0..depth_{2*depth-1}`), as Keras' classification model does. Defaults to True.
        include_top: bool. Build `conv3d_1` and apply `activation`; needs the decoder. False
            returns the last block's features. Defaults to True.

    Call:
        x: float tensor `(N, in_channels, rows, cols, deps)`, spatial sizes divisible by
            `2**(depth-1)`. Returns `(N, n_labels, rows, cols, deps)` with the top; without it
            the decoder's `(N, 2*n_base_filters, rows, cols, deps)` or the encoder's
            `(N, n_base_filters*2**depth, rows/2**(depth-1), ...)` features.

    Example:
        >>> from pytorch_compat import KerasUNet3D, keras_to_torch
        >>> model = keras_to_torch("pretrained_weights/Genesis_Chest_CT.h5")  # doctest: +SKIP
    """

    def __init__(self, in_channels: int = 1, n_labels: int = 1, depth: int = 4,
                 n_base_filters: int = 32, batch_normalization: bool = True,
                 activation: Optional[str] = "sigmoid", include_decoder: bool = True,
                 include_top: bool = True):
        super().__init__()
        for arg, value in (("in_channels", in_channels), ("n_labels", n_labels), ("depth", depth),
                           ("n_base_filters", n_base_filters)):
            _positive_int(arg, value)
        if include_top and not include_decoder:
            raise ValueError("`include_top=True` needs the decoder. Received: include_top=True, "
                             "include_decoder=False.")
        # === Config ===
        self.in_channels = in_channels
        self.n_labels = n_labels
        self.depth = depth
        self.n_base_filters = n_base_filters
        self.batch_normalization = batch_normalization
        self.activation = check_activation(activation)
        self.include_decoder = include_decoder
        self.include_top = include_top
        # === Layers (Keras names) ===
        channels, index, self.skip_channels = in_channels, 0, []
        for level in range(depth):
            width = n_base_filters * 2 ** level
            self._add_block(index, channels, width)
            self._add_block(index + 1, width, 2 * width)
            channels, index = 2 * width, index + 2
            if level < depth - 1:
                self.skip_channels.append(channels)
        self.encoder_channels = channels
        if include_decoder:
            for level in range(depth - 2, -1, -1):
                skip = self.skip_channels[level]
                self._add_block(index, channels + skip, skip)
                self._add_block(index + 1, skip, skip)
                channels, index = skip, index + 2
        self.n_blocks = index
        self.out_channels = channels
        if include_top:
            self.add_module(FINAL_CONV_NAME, nn.Conv3d(channels, n_labels, kernel_size=1))
            self.out_channels = n_labels

    def _add_block(self, index: int, in_channels: int, out_channels: int) -> None:
        self.add_module(f"depth_{index}_conv", nn.Conv3d(in_channels, out_channels, 3, padding=1))
        if self.batch_normalization:
            self.add_module(f"depth_{index}_bn", nn.BatchNorm3d(
                out_channels, eps=KERAS_BN_EPSILON, momentum=KERAS_BN_MOMENTUM))

    def _block(self, x: torch.Tensor, index: int) -> torch.Tensor:
        x = getattr(self, f"depth_{index}_conv")(x)
        if self.batch_normalization:
            x = getattr(self, f"depth_{index}_bn")(x)
        return F.relu(x)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise `ValueError` unless `x` is `(N, in_channels, r, c, d)` with divisible sizes."""
        factor = 2 ** (self.depth - 1)
        if x.dim() != 5 or x.shape[1] != self.in_channels or any(s % factor for s in x.shape[2:]):
            raise ValueError(
                f"`x` must be a 5D tensor (N, {self.in_channels}, rows, cols, deps) with spatial "
                f"sizes divisible by {factor}. Received: x.shape={tuple(x.shape)}."
            )

    def features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Return `{"encoder": depth_{2*depth-1}_relu, "decoder": depth_{4*depth-3}_relu}`
        (the decoder only with `include_decoder`), channels_first."""
        self.check_input(x)
        skips, index = [], 0
        for level in range(self.depth):
            x = self._block(self._block(x, index), index + 1)
            index += 2
            if level < self.depth - 1:
                skips.append(x)
                x = F.max_pool3d(x, 2)
        out = {"encoder": x}
        if self.include_decoder:
            for level in range(self.depth - 2, -1, -1):
                x = torch.cat((F.interpolate(x, scale_factor=2, mode="nearest"), skips[level]), 1)
                x = self._block(self._block(x, index), index + 1)
                index += 2
            out["decoder"] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.features(x)
        if not self.include_decoder:
            return feats["encoder"]
        if not self.include_top:
            return feats["decoder"]
        return apply_activation(getattr(self, FINAL_CONV_NAME)(feats["decoder"]), self.activation)
