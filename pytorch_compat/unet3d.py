"""The released PyTorch 3D U-Net (`Genesis_Chest_CT.pt`), module for module
(docs/release_reference.md, 'The PyTorch release').

The release's PyTorch model has the Keras model's block pattern (Conv3d 3x3x3, padding 1 ->
BatchNorm3d -> ReLU) and widths, but its decoder up-samples with ConvTranspose3d(2, stride 2)
keeping the channel count (512 -> 512, 256 -> 256, 128 -> 128) before concatenating
[up-sampled, skip]; its weights therefore do not fit the Keras topology (`KerasUNet3D` does).
The module names are the release's, so `UNet3D().state_dict()` has exactly the keys of the
released checkpoint (without the `module.` prefix DataParallel added):

    down_tr64.ops.{0,1}.conv1 / .bn1, down_tr128..., down_tr256..., down_tr512...,
    up_tr256.up_conv, up_tr256.ops.{0,1}..., up_tr128..., up_tr64..., out_tr.final_conv

The names count channels at `n_base_filters=32` (down_tr64 ends with 64 channels); they stay the
same for other widths. The release's BatchNorm normalises with batch statistics also at
inference; `batch_statistics=True` reproduces that, the default is ordinary `BatchNorm3d`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BatchStatisticsBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d that always normalises with the statistics of the current batch.

    This is the release's BatchNorm: in `eval()` mode it still uses batch statistics (so a
    batch of one volume is normalised by itself). The running statistics are updated in
    `train()` mode only, so inference leaves the state_dict untouched (the release also
    updated them at inference). Same state_dict entries as `nn.BatchNorm3d`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        track = self.training and self.track_running_stats
        if track:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            True,
            self.momentum,
            self.eps,
        )


class LUConv(nn.Module):
    """One block: Conv3d(3x3x3, padding 1, bias) -> BatchNorm3d -> ReLU (`conv1`, `bn1`)."""

    def __init__(self, in_channels: int, out_channels: int, batch_statistics: bool = False):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        norm = BatchStatisticsBatchNorm3d if batch_statistics else nn.BatchNorm3d
        self.bn1 = norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn1(self.conv1(x)))


def _two_blocks(in_channels: int, mid: int, out: int, batch_statistics: bool) -> nn.Sequential:
    return nn.Sequential(LUConv(in_channels, mid, batch_statistics), LUConv(mid, out, batch_statistics))


class DownTransition(nn.Module):
    """An encoder level: `ops` (two blocks), then MaxPool3d(2) unless it is the deepest level."""

    def __init__(self, in_channels: int, width: int, pool: bool, batch_statistics: bool = False):
        super().__init__()
        self.ops = _two_blocks(in_channels, width, 2 * width, batch_statistics)
        self.pool = pool

    def forward(self, x: torch.Tensor):
        """Return (output, skip): the pooled (or, at the deepest level, unpooled) features and
        the features before pooling."""
        skip = self.ops(x)
        return (F.max_pool3d(skip, 2) if self.pool else skip), skip


class UpTransition(nn.Module):
    """A decoder level: ConvTranspose3d(2, stride 2) (`up_conv`, channels kept), concatenate
    [up-sampled, skip], then `ops` (two blocks of the skip's width)."""

    def __init__(self, in_channels: int, skip_channels: int, batch_statistics: bool = False):
        super().__init__()
        self.up_conv = nn.ConvTranspose3d(in_channels, in_channels, kernel_size=2, stride=2)
        self.ops = _two_blocks(in_channels + skip_channels, skip_channels, skip_channels,
                               batch_statistics)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.ops(torch.cat((self.up_conv(x), skip), dim=1))


class OutputTransition(nn.Module):
    """Conv3d(n_class, 1x1x1) (`final_conv`) -> sigmoid."""

    def __init__(self, in_channels: int, n_class: int):
        super().__init__()
        self.final_conv = nn.Conv3d(in_channels, n_class, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.final_conv(x))


class UNet3D(nn.Module):
    """The released PyTorch Models Genesis U-Net (`Genesis_Chest_CT.pt`).

    Args:
        n_class: int. Output channels of `out_tr.final_conv`. Defaults to 1 (restoration).
        n_base_filters: int. Width of the first block; 32 in the release (19,073,665 parameters
            with the transposed convolutions). Module names do not change with it.
        batch_statistics: bool. Use the release's BatchNorm, which normalises with batch
            statistics also in `eval()` mode. Defaults to False (ordinary BatchNorm3d).

    Call:
        x: float tensor `(N, 1, rows, cols, deps)`, the release's channels_first layout, each
            spatial size divisible by 8. Returns sigmoid outputs `(N, n_class, rows, cols, deps)`
            in [0, 1].

    Example:
        >>> from pytorch_compat import UNet3D, load_checkpoint
        >>> model = load_checkpoint("pretrained_weights/Genesis_Chest_CT.pt", UNet3D())  # doctest: +SKIP
    """

    def __init__(self, n_class: int = 1, n_base_filters: int = 32, batch_statistics: bool = False):
        super().__init__()
        for arg, value in (("n_class", n_class), ("n_base_filters", n_base_filters)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}.")
        f = n_base_filters
        bs = batch_statistics
        # === Config ===
        self.n_class = n_class
        self.n_base_filters = n_base_filters
        self.batch_statistics = batch_statistics
        # === Layers (the release's names) ===
        self.down_tr64 = DownTransition(1, f, True, bs)
        self.down_tr128 = DownTransition(2 * f, 2 * f, True, bs)
        self.down_tr256 = DownTransition(4 * f, 4 * f, True, bs)
        self.down_tr512 = DownTransition(8 * f, 8 * f, False, bs)
        self.up_tr256 = UpTransition(16 * f, 8 * f, bs)
        self.up_tr128 = UpTransition(8 * f, 4 * f, bs)
        self.up_tr64 = UpTransition(4 * f, 2 * f, bs)
        self.out_tr = OutputTransition(2 * f, n_class)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or any(s % 8 for s in x.shape[2:]):
            raise ValueError(
                "`x` must be a 5D tensor (N, 1, rows, cols, deps) with spatial sizes divisible "
                f"by 8. Received: x.shape={tuple(x.shape)}."
            )
        x, skip64 = self.down_tr64(x)
        x, skip128 = self.down_tr128(x)
        x, skip256 = self.down_tr256(x)
        x, _ = self.down_tr512(x)
        x = self.up_tr256(x, skip256)
        x = self.up_tr128(x, skip128)
        x = self.up_tr64(x, skip64)
        return self.out_tr(x)
