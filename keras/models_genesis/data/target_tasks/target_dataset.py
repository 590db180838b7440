"""`TargetDataset`: batches of target-task crops and labels for fine-tuning (paper Sec. 3.2).

Serves `(x, y)` batches from in-memory arrays (e.g. a `TargetData` split): `x` is
`(B, rows, cols, deps, 1)` float32, `y` the labels `(B,)` or masks `(B, rows, cols, deps, 1)`.
With `augment=True` each batch goes through `augment_pair` (flips, transposes, rotations applied to
image and mask alike; Gaussian noise on the image only). Randomness is seeded per batch with
`np.random.default_rng((seed, epoch, index))` (STYLE rule 5), and the shuffled order per epoch with
`(seed, epoch)`, so batches are the same whatever the number of workers.
"""

from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np

from models_genesis.transformations.augmentation import augment_pair


def _channels_last(x: np.ndarray, name: str, data_format: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 4:
        return x[..., None]
    if x.ndim != 5:
        raise ValueError(f"`{name}` must be (N, rows, cols, deps[, 1]). Received: {name}.shape="
                         f"{x.shape}.")
    return np.moveaxis(x, 1, -1) if data_format == "channels_first" else x


class TargetDataset(keras.utils.PyDataset):
    """Fine-tuning batches over `(x, y)` arrays.

    Args:
        x: crops `(N, rows, cols, deps, 1)` (or `(N, rows, cols, deps)`; or `(N, 1, rows, cols,
            deps)` with `data_format="channels_first"`), values in [0, 1].
        y: labels `(N,)` (classification) or masks shaped like `x` (segmentation); batches
            serve them as float32.
        batch_size: samples per batch; the last batch may be smaller.
        shuffle: reshuffle the order every epoch (seeded by `(seed, epoch)`).
        augment: apply `augment_pair` with `augmentation` (an `AugmentationConfig`, None: defaults).
        seed: base seed of the order and the augmentation.
        data_format: layout of `x`/`y` masks: `"channels_last"` or `"channels_first"`.
        **kwargs: passed to `keras.utils.PyDataset` (`workers`, `use_multiprocessing`, ...).

    Example:
        >>> ds = TargetDataset(data.x_train, data.y_train, batch_size=16, augment=True, seed=0)
        >>> model.fit(ds, validation_data=TargetDataset(data.x_valid, data.y_valid, batch_size=16))
    """

    def __init__(self, x, y, *, batch_size: int, shuffle: bool = False, augment: bool = False,
                 augmentation=None, seed: int = 0, data_format: str = "channels_last", **kwargs):
        super().__init__(**kwargs)
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError("`data_format` must be 'channels_last' or 'channels_first'. "
                             f"Received: data_format={data_format!r}.")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer. Received: "
                             f"batch_size={batch_size!r}.")
        self.x = _channels_last(x, "x", data_format).astype(np.float32, copy=False)
        y = np.asarray(y)
        self.y = y if y.ndim == 1 else _channels_last(y, "y", data_format).astype(np.float32,
                                                                                   copy=False)
        if len(self.y) != len(self.x) or (self.y.ndim > 1 and self.y.shape[1:4] !=
                                          self.x.shape[1:4]):
            raise ValueError(f"`y` must hold one label per crop, or masks of the crops' spatial "
                             f"shape. Received: x.shape={self.x.shape}, y.shape={self.y.shape}.")
        if len(self.x) == 0:
            raise ValueError("`x` is empty: no crops to train on.")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.augment = bool(augment)
        self.augmentation = augmentation
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def order(self, epoch: Optional[int] = None) -> np.ndarray:
        """Sample order of `epoch` (the current one when None)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if not self.shuffle:
            return np.arange(len(self.x))
        return np.random.default_rng((self.seed, epoch)).permutation(len(self.x))

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index {index} out of range [0, {len(self)}).")
        idx = self.order()[index * self.batch_size:(index + 1) * self.batch_size]
        x, y = self.x[idx], self.y[idx]
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, int(index)))
            x, y_aug = augment_pair(x, y if y.ndim > 1 else None, rng=rng,
                                    config=self.augmentation)
            y = y if y.ndim == 1 else y_aug
        return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.float32)

    def on_epoch_end(self):
        self.epoch += 1
