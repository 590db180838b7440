"""The batches of a whole training run as one sequence, so `fit` reads them through one iterator.

Without `steps_per_epoch`, Keras 3 (checked on 3.15, `trainers/epoch_iterator.py`) builds a new
`tf.data` iterator over a finite `PyDataset` at every epoch start (and a spare one at every epoch
end): its prefetching restarts each epoch. `RunBatches` lists the batches of all the run's epochs,
`fit(RunBatches(train, epochs), steps_per_epoch=len(train), ...)` then keeps one iterator for the
whole run, and its prefetching crosses epoch boundaries.

Batch `j` is batch `j % S` of epoch `first_epoch + j // S` of the dataset (S = `len(dataset)`):
the epoch comes from the index, never from a counter, so a batch prefetched before its epoch
starts is still the right one. `first_epoch` is the epoch `fit` starts at (0, or the epoch a
resumed run restarts at); the first `set_epoch` call fixes it. Keras calls `set_epoch` (through
`training.callbacks.EpochSetter`, at `on_epoch_begin`) before it creates the iterator: the
iterator is made at the first step of the first epoch (`EpochIterator._enumerate_iterator`).
What Keras reads earlier (batches 0 and 1, for the output signature; with a distribution
strategy, one batch to build the model, from an iterator it then discards) changes nothing.

Only for datasets whose batch `i` of epoch `e` depends on `(seed, e, i)` alone: not for data that
change between epochs (DeepCluster's labels, set from the weights trained so far).
"""

from __future__ import annotations

import keras
import numpy as np


class RunBatches(keras.utils.PyDataset):
    """All batches of `epochs` epochs of `dataset`, epoch after epoch (see the module docstring).

    It has no workers of its own: `fit` reads it through one `tf.data` iterator, whose
    prefetching runs ahead of training (on the other backends, Keras' own iterator).

    Args:
        dataset: a `CubeBatchDataset` (`pairs(index, epoch)`, `set_epoch`, `__len__`) that has no
            enqueuer (`workers <= 1`, no multiprocessing).
        epochs: epochs of the run (`fit`'s `epochs`); a run resumed at epoch b reads the first
            `S * (epochs - b)` batches.

    Raises:
        ValueError: `epochs` is not a positive integer, or `dataset` is empty.
    """

    def __init__(self, dataset, epochs: int):
        super().__init__()
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ValueError(f"`epochs` must be a positive integer. Received: epochs={epochs!r}.")
        self.dataset, self.epochs = dataset, int(epochs)
        self.steps_per_epoch = len(dataset)
        if self.steps_per_epoch < 1:
            raise ValueError(f"The dataset has no batches. Received: len(dataset)="
                             f"{self.steps_per_epoch}.")
        self.first_epoch = None  # fixed by the first `set_epoch`

    def __len__(self):
        return self.steps_per_epoch * self.epochs

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch`: the first call fixes `first_epoch`; the dataset is told too (its
        `on_epoch_end` draws the epoch's sample PNG)."""
        self.dataset.set_epoch(epoch)
        if self.first_epoch is None:
            self.first_epoch = int(epoch)

    def locate(self, index: int):
        """`(epoch, step)` of batch `index`."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"Batch index {index} out of range for {len(self)} batches.")
        epoch, step = divmod(index, self.steps_per_epoch)
        return (self.first_epoch or 0) + epoch, step

    def __getitem__(self, index):
        epoch, step = self.locate(index)
        return self.dataset.pairs(step, epoch)

    def on_epoch_begin(self):
        self.dataset.on_epoch_begin()

    def on_epoch_end(self):
        self.dataset.on_epoch_end()
