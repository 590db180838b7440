"""Callbacks of a pre-training run (docs/release_reference.md, 'Pre-training schedule'): the
release's schedule plus resumability.

`restoration_callbacks` returns, in order: the data epoch setter, `BestWeights` (best val_loss, in
Keras 3's `.weights.h5` and in the release's Keras 2 HDF5 layout), `EarlyStopping`,
`ReduceLROnPlateau`, `EpochLog` (the CSV log, continued by a resumed run), `TerminateOnNaN`,
`TensorBoard`, `SamplePairs` (PNGs of input / restoration / original) and, last, `RunBackup`
(`models_genesis.training.resume`: a crash-safe backup of the weights, the optimizer and the
counters of the callbacks above, so a rerun resumes exactly where the last finished epoch left).
With `schedule="fixed"` (DeepCluster's, `config.METHOD_TRAINING`) there is no EarlyStopping or
ReduceLROnPlateau and `BestWeights` keeps the last epoch's weights.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from typing import Dict, List, Optional

import keras
import numpy as np

from models_genesis.atomic import write_json
from models_genesis.models.weights import save_keras2_weights
from models_genesis.training.restoration_figures import plot_restoration_rows
from models_genesis.training.resume import EpochLog, RunBackup


class BestWeights(keras.callbacks.Callback):
    """Save `target`'s weights whenever `monitor` improves, in both weight formats, atomically.

    The best value is kept in `state_path` (JSON) so that a resumed run never replaces a better
    checkpoint by a worse one.

    Args:
        target: the model whose weights are written (the plain U-Net, also when training runs
            through a wrapper model with a float32 output).
        weights_path: Keras 3 file, ending in `.weights.h5`.
        keras2_path: the same weights in the Keras 2 HDF5 layout (`Genesis_Chest_CT.h5`); None:
            not written.
        state_path: JSON holding `{"monitor", "best", "epoch"}`; None: not written (the best
            value starts afresh).
        monitor: the log entry to minimise. Defaults to `"val_loss"`.
        keep: `"best"` (the epoch with the lowest `monitor`) or `"last"` (every finished epoch
            with a finite `monitor` replaces the file: a `fixed` schedule, DeepCluster's).
    """

    def __init__(self, target, weights_path: str, keras2_path: Optional[str] = None,
                 state_path: Optional[str] = None, monitor: str = "val_loss", keep: str = "best"):
        super().__init__()
        if not str(weights_path).endswith(".weights.h5"):
            raise ValueError(f"`weights_path` must end in .weights.h5. Received: {weights_path!r}.")
        if keep not in ("best", "last"):
            raise ValueError(f"`keep` must be 'best' or 'last'. Received: keep={keep!r}.")
        self.target, self.monitor, self.keep = target, monitor, keep
        self.weights_path, self.keras2_path, self.state_path = weights_path, keras2_path, state_path
        self.best, self.best_epoch = math.inf, None
        if state_path is not None and os.path.isfile(state_path) and os.path.isfile(weights_path):
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
            self.best, self.best_epoch = float(state["best"]), state.get("epoch")

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not np.isfinite(value) or (self.keep == "best" and value >= self.best):
            return
        self.best, self.best_epoch = float(value), int(epoch)
        tmp = self.weights_path[: -len(".weights.h5")] + ".tmp.weights.h5"
        self.target.save_weights(tmp, overwrite=True)
        os.replace(tmp, self.weights_path)
        if self.keras2_path is not None:
            save_keras2_weights(self.target, self.keras2_path)
        if self.state_path is not None:
            write_json(self.state_path, {"monitor": self.monitor, "best": self.best,
                                          "epoch": self.best_epoch})


class EpochSetter(keras.callbacks.Callback):
    """Tell the pair generators which epoch starts, so batch i of epoch e depends on (seed, e, i)."""

    def __init__(self, *datasets):
        super().__init__()
        self.datasets = [d for d in datasets if hasattr(d, "set_epoch")]

    def on_epoch_begin(self, epoch, logs=None):
        for dataset in self.datasets:
            dataset.set_epoch(int(epoch))


class SamplePairs(keras.callbacks.Callback):
    """Every `every` epochs, draw input / restoration / original of fixed validation pairs.

    The restoration is the output of the model being trained.

    Args:
        transformed, original: arrays `(B, r, c, d, 1)` in [0, 1]; the first 4 are drawn.
        out_dir: folder of `epoch_{n:04d}.png` (n counts from 1).
        every: period in epochs (>= 1).
    """

    def __init__(self, transformed: np.ndarray, original: np.ndarray, out_dir: str,
                 every: int = 1):
        super().__init__()
        self.out_dir, self.every = out_dir, int(every)
        self.transformed = np.asarray(transformed[:4], np.float32)
        self.original = np.asarray(original[:4], np.float32)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return

        restored = keras.ops.convert_to_numpy(self.model(self.transformed, training=False))
        rows = [(f"val {i}", [self.transformed[i], restored[i], self.original[i]])
                for i in range(len(self.transformed))]
        os.makedirs(self.out_dir, exist_ok=True)
        plot_restoration_rows(rows, ["input", "restoration", "original"],
                              os.path.join(self.out_dir, f"epoch_{epoch + 1:04d}.png"),
                              title=f"epoch {epoch + 1}, val_loss {(logs or {}).get('val_loss', float('nan')):.5f}")


def tensorboard_callback(log_dir: str) -> Optional[keras.callbacks.Callback]:
    """Keras' TensorBoard callback writing to `log_dir` (pre-training and fine-tuning runs), or
    None (said aloud) without TensorFlow and TensorBoard."""
    missing = [m for m in ("tensorflow", "tensorboard") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"TensorBoard logs are off: Keras' TensorBoard callback needs {missing} installed "
              "(pip install tensorflow tensorboard); the CSV log is written regardless.")
        return None
    return keras.callbacks.TensorBoard(log_dir=log_dir)


def restoration_callbacks(config, paths: Dict[str, str], *, target, datasets=(),
                          samples=None, continue_stopped: bool = False
                          ) -> List[keras.callbacks.Callback]:
    """Return the pre-training callbacks of `config` (a `PretrainConfig`), writing to `paths`.

    Args:
        config: the run's `PretrainConfig` (patience, LR schedule, TensorBoard, samples).
        paths: from `models_genesis.training.run_folder.run_paths`.
        target: the U-Net whose best weights are saved.
        datasets: pair generators given `set_epoch(e)` at each epoch start.
        samples: `(transformed, original)` arrays for `SamplePairs`; None switches it off.
        continue_stopped: a resumed run that had stopped early trains further (`RunBackup`).
    """
    config = config.with_method_training()
    fixed = config.schedule == "fixed"  # all epochs at one rate, the last weights kept
    best = BestWeights(target, paths["best_weights"], paths["keras2_weights"], paths["best_state"],
                       keep="last" if fixed else "best")
    stateful = [best]
    if not fixed:
        stateful.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                                      mode="min", verbose=1))
        stateful.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=config.lr_factor, patience=config.lr_patience, mode="min",
            min_delta=config.lr_min_delta, min_lr=config.min_lr, verbose=1))
    callbacks = [EpochSetter(*datasets), *stateful, EpochLog(paths["csv_log"]),
                 keras.callbacks.TerminateOnNaN()]
    if config.tensorboard:
        board = tensorboard_callback(paths["tensorboard"])
        if board is not None:
            callbacks.append(board)
    if samples is not None and config.sample_every:
        callbacks.append(SamplePairs(samples[0], samples[1], paths["samples"],
                                     every=config.sample_every))
    # Last: the backup commits an epoch once every callback above has finished it.
    callbacks.append(RunBackup(paths["backup"], stateful=tuple(stateful),
                               learning_rate=config.learning_rate,
                               continue_stopped=continue_stopped))
    return callbacks
