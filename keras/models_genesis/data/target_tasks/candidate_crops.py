"""Candidate crops read lazily: NCC and ECC at LUNA16 scale (paper Sec. 3.2.1, 3.2.3).

LUNA16's `candidates_V2.csv` lists 754,975 candidates; cut into 64x64x32 float32 crops they would
take about 370 GiB. `models-genesis prepare` writes each scan's crops once to a crop file
(`models_genesis.data.io.crop_files`) and a table of every crop; training never holds more than one
batch of crops:

- `CandidateDataset` is a `keras.utils.PyDataset` over rows of the table with per-epoch negative
  sampling: every positive, plus `negative_ratio` negatives per positive drawn afresh each epoch
  from `default_rng((seed, epoch, 1))` (the same on any number of workers). The default ratio,
  10, is ours: the paper does not give one; the ECC data have 8.1 false candidates per true one
  (5,568 / 687), so 10 keeps them all, while LUNA16 (about 490 per true one) is undersampled;
- `predict_candidates` scores a split batch by batch (the test AUC over every candidate).
"""

from __future__ import annotations

import math
from typing import Optional

import keras
import numpy as np
from tqdm.auto import tqdm

from models_genesis.data.io.crop_files import CropReader
from models_genesis.transformations.augmentation import augment_pair

DEFAULT_NEGATIVE_RATIO = 10.0


def epoch_rows(labels: np.ndarray, negative_ratio: Optional[float], *, seed: int, epoch: int,
               shuffle: bool) -> np.ndarray:
    """The rows of one epoch: every positive and `negative_ratio` negatives per positive.

    The negatives are drawn without replacement from `default_rng((seed, epoch, 1))`, the order
    from `default_rng((seed, epoch, 2))`: the same on any number of workers. `negative_ratio`
    None keeps every negative.
    """
    labels = np.asarray(labels)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)
    if negative_ratio is not None:
        k = min(len(neg), int(round(float(negative_ratio) * max(len(pos), 1))))
        neg = np.sort(np.random.default_rng((seed, epoch, 1)).choice(neg, size=k, replace=False))
    rows = np.concatenate([pos, neg])
    if shuffle:
        rows = rows[np.random.default_rng((seed, epoch, 2)).permutation(len(rows))]
    return rows


class CandidateDataset(keras.utils.PyDataset):
    """Fine-tuning batches `(x (B, r, c, d, 1), y (B,))` read lazily from crop files.

    Args:
        paths: crop file of each candidate `(N,)`.
        indices: index of each candidate's crop in its file `(N,)`.
        labels: `(N,)` in {0, 1}.
        batch_size: candidates per batch.
        negative_ratio: negatives per positive in each epoch (fresh draw per epoch); None: all.
        resample_each_epoch: draw new negatives every epoch (training); False keeps epoch 0's
            (validation: the same subset every epoch).
        shuffle: shuffle each epoch's rows.
        augment: apply `augment_pair` (flips, transposes, rotations, noise) to the crops.
        seed: base seed of the sampling, order and augmentation.
        reader: a `CropReader` (shared); a new one when None.
        **kwargs: passed to `keras.utils.PyDataset` (`workers`, `use_multiprocessing`, ...).
    """

    def __init__(self, paths, indices, labels, *, batch_size: int,
                 negative_ratio: Optional[float] = DEFAULT_NEGATIVE_RATIO,
                 resample_each_epoch: bool = True, shuffle: bool = True, augment: bool = False,
                 augmentation=None, seed: int = 0, reader: Optional[CropReader] = None, **kwargs):
        super().__init__(**kwargs)
        self.paths = np.asarray(paths, dtype=object)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        if not len(self.paths) == len(self.indices) == len(self.labels) or not len(self.labels):
            raise ValueError(f"`paths`, `indices` and `labels` must be non-empty and of one "
                             f"length. Received: {len(self.paths)}, {len(self.indices)}, "
                             f"{len(self.labels)}.")
        if negative_ratio is not None and not float(negative_ratio) > 0:
            raise ValueError(f"`negative_ratio` must be > 0 or None. "
                             f"Received: negative_ratio={negative_ratio!r}.")
        self.batch_size = int(batch_size)
        self.negative_ratio = negative_ratio
        self.resample_each_epoch = bool(resample_each_epoch)
        self.shuffle = bool(shuffle)
        self.augment = bool(augment)
        self.augmentation = augmentation
        self.seed = int(seed)
        self.reader = reader or CropReader()
        self.epoch = 0
        self._rows = {}

    def rows(self, epoch: Optional[int] = None) -> np.ndarray:
        """Table rows served in `epoch` (the current one when None)."""
        epoch = (self.epoch if epoch is None else int(epoch)) if self.resample_each_epoch else 0
        if epoch not in self._rows:
            self._rows = {epoch: epoch_rows(self.labels, self.negative_ratio, seed=self.seed,
                                            epoch=epoch, shuffle=self.shuffle)}
        return self._rows[epoch]

    def __len__(self) -> int:
        return math.ceil(len(self.rows(0)) / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index {index} out of range [0, {len(self)}).")
        rows = self.rows()[index * self.batch_size:(index + 1) * self.batch_size]
        x = self.reader.read(self.paths[rows], self.indices[rows])[..., None]
        y = self.labels[rows].astype(np.float32)
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, int(index)))
            x, _ = augment_pair(x, None, rng=rng, config=self.augmentation)
        return np.ascontiguousarray(x, dtype=np.float32), y

    def on_epoch_end(self):
        self.epoch += 1


def predict_candidates(model, paths, indices, *, batch_size: int = 24,
                       reader: Optional[CropReader] = None, progress: bool = False) -> np.ndarray:
    """Probabilities `(N,)` of every candidate, read and predicted one batch at a time."""
    reader = reader or CropReader()
    paths, indices = np.asarray(paths, dtype=object), np.asarray(indices, dtype=np.int64)
    out = np.empty(len(paths), np.float32)
    for start in tqdm(range(0, len(paths), int(batch_size)), desc="scoring candidates",
                      unit="batch", disable=not progress):
        sl = slice(start, start + int(batch_size))
        x = reader.read(paths[sl], indices[sl])[..., None]
        out[sl] = np.asarray(model.predict_on_batch(x), dtype=np.float32).reshape(len(x), -1)[:, 0]
    return out
