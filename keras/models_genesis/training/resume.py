"""Resuming a run after a crash or a kill: a backup and a CSV log that are never half-written.

`RunBackup` is Keras' `BackupAndRestore` made crash-safe and exact. At the end of every epoch,
after every other callback of the run has updated its state and written its files, it

1. writes the weights (model and optimizer: slots, iteration count, current learning rate) to
   `epoch_{n:05d}.weights.h5` under a temporary name, then renames it;
2. commits the backup by writing `backup.json` atomically (temporary name, then rename): the
   epoch reached, the weight file's name, the learning rate of the config, whether training had
   stopped, and the state of the stateful callbacks (EarlyStopping and ReduceLROnPlateau: `wait`,
   `best`, ...; `BestWeights`: `best`);
3. deletes the previous weight file.

A kill at any moment leaves `backup.json` naming a complete weight file: the run resumes from the
last committed epoch, bit-identical to a run that was never interrupted (the pairs of epoch e come
from (seed, e); `fit` must not reshuffle: pass `shuffle=False`). `EpochLog` is Keras'
`CSVLogger` made crash-safe the same way: the whole log is rewritten at each epoch end to a
temporary file and renamed, and rows of epochs not in the backup are dropped on resume.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from typing import Dict, Optional, Sequence

import keras

from models_genesis.atomic import write_json

BACKUP_FORMAT = "models_genesis.backup/1"
# Attributes that make up a callback's state between epochs (Keras 3 names).
STATE_ATTRIBUTES = {
    "EarlyStopping": ("wait", "best", "best_epoch", "stopped_epoch"),
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
    "BestWeights": ("best", "best_epoch"),
}


def _plain(value):
    """A JSON value of a callback attribute (numpy and backend scalars become floats)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return float(keras.ops.convert_to_numpy(value))


def read_backup(backup_dir) -> Optional[Dict]:
    """The committed state of the backup in `backup_dir`, or None when there is none.

    Raises:
        ValueError: `backup.json` is unreadable or names a missing weight file (the message says
            which file, and to delete the folder to restart the run from its first epoch).
    """
    path = os.path.join(os.fspath(backup_dir), "backup.json")
    if not os.path.isfile(path):
        return None
    hint = (f"Delete the folder {os.fspath(backup_dir)!r} to restart this run from its first "
            "epoch (the other outputs stay).")
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        weights = os.path.join(os.fspath(backup_dir), state["weights"])
        int(state["epoch"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"The backup {path!r} is unreadable ({type(exc).__name__}: {exc}). "
                         f"{hint}") from exc
    if not os.path.isfile(weights):
        raise ValueError(f"The backup {path!r} names the weight file {weights!r}, which is "
                         f"missing. {hint}")
    return {**state, "weights_path": weights}


class RunBackup(keras.callbacks.BackupAndRestore):
    """Back up a run at each epoch end and restore it at the start of `fit` (see module docstring).

    Place it after every other callback of the run, so that the backup holds their state after
    the epoch (their files, e.g. the CSV log, are written before the backup commits).

    Args:
        backup_dir: folder of the backup (used by nothing else).
        stateful: callbacks whose state (`STATE_ATTRIBUTES`) is saved and restored.
        learning_rate: the learning rate of the run's config. When it differs from the one stored
            in the backup, the new value is applied to the optimizer on resume, and said aloud;
            otherwise the optimizer keeps its saved rate (e.g. as reduced by ReduceLROnPlateau).
        continue_stopped: a run that had stopped (early stopping) trains further; its
            early-stopping counter restarts from 0. When False, nothing more is trained.

    Raises:
        ValueError (at the start of `fit`): an unreadable backup (see `read_backup`).
    """

    def __init__(self, backup_dir, *, stateful: Sequence[keras.callbacks.Callback] = (),
                 learning_rate: Optional[float] = None, continue_stopped: bool = False):
        super().__init__(os.fspath(backup_dir), save_freq="epoch", delete_checkpoint=False)
        self.state_path = os.path.join(self.backup_dir, "backup.json")
        self.stateful = list(stateful)
        self.learning_rate = None if learning_rate is None else float(learning_rate)
        self.continue_stopped = bool(continue_stopped)
        self.resumed_epoch = 0
        self._pending: Dict[str, Dict] = {}

    # ----------------------------------------------------------------------------- restore
    def on_train_begin(self, logs=None):
        state = read_backup(self.backup_dir)
        if state is None:
            if os.path.isfile(self._weights_path):  # a backup of Keras' own BackupAndRestore
                super().on_train_begin(logs)
                self.resumed_epoch = int(self.model._initial_epoch or 0)
                print(f"Resuming from Keras' backup in {self.backup_dir!r} at epoch "
                      f"{self.resumed_epoch + 1} (callback counters start afresh).")
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(state["weights_path"])
        except (OSError, ValueError) as exc:
            raise ValueError(f"The backup weights {state['weights_path']!r} cannot be loaded "
                             f"({exc}). Delete the folder {self.backup_dir!r} to restart this run "
                             "from its first epoch.") from exc
        epoch = int(state["epoch"])
        self.resumed_epoch = epoch
        self._pending = dict(state.get("callbacks", {}))
        total = self.params.get("epochs") if self.params else None
        print(f"Resuming the run from epoch {epoch + 1}"
              f"{'' if total is None else f' of {total}'}: epochs 1-{epoch} are restored from "
              f"{state['weights_path']!r}.")
        self._apply_learning_rate(state)
        if state.get("stopped"):
            if self.continue_stopped:
                if "EarlyStopping" in self._pending:
                    self._pending["EarlyStopping"].update(wait=0, stopped_epoch=0)
                print("The run had stopped early; it trains further, with the early-stopping "
                      "counter restarted.")
            else:
                self.model._initial_epoch = max(epoch, int(total or epoch))
                print(f"The run had stopped early after epoch {epoch}: nothing more to train.")
                return
        self.model._initial_epoch = epoch

    def _apply_learning_rate(self, state) -> None:
        optimizer = self.model.optimizer
        saved = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        stored = state.get("learning_rate_config")
        if self.learning_rate is None or stored is None or float(stored) == self.learning_rate:
            print(f"Learning rate {saved:g}, as saved.")
            return
        optimizer.learning_rate = self.learning_rate
        print(f"The learning rate of the config changed from {float(stored):g} to "
              f"{self.learning_rate:g}: applied from epoch {int(state['epoch']) + 1} (the saved "
              f"rate was {saved:g}).")

    def on_epoch_begin(self, epoch, logs=None):
        # After every callback's on_train_begin (which resets their counters).
        pending, self._pending = self._pending, {}
        for callback in self.stateful:
            for name, value in pending.get(type(callback).__name__, {}).items():
                setattr(callback, name, value)

    # -------------------------------------------------------------------------------- save
    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._save_model()

    def on_train_batch_end(self, batch, logs=None):
        pass  # epoch-level backups only

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        epoch = int(self._current_epoch)
        name = f"epoch_{epoch:05d}.weights.h5"
        tmp = os.path.join(self.backup_dir, f"epoch_{epoch:05d}.tmp.weights.h5")
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, os.path.join(self.backup_dir, name))
        states = {type(cb).__name__: {a: _plain(getattr(cb, a, None))
                                      for a in STATE_ATTRIBUTES.get(type(cb).__name__, ())}
                  for cb in self.stateful}
        write_json(self.state_path, {
            "format": BACKUP_FORMAT, "epoch": epoch, "weights": name,
            "learning_rate_config": self.learning_rate,
            "stopped": bool(self.model.stop_training), "callbacks": states})  # the commit
        for path in glob.glob(os.path.join(self.backup_dir, "*")):
            if os.path.basename(path) not in (name, "backup.json") and os.path.isfile(path):
                os.remove(path)  # the previous epoch, temporary files, Keras' own backup


class EpochLog(keras.callbacks.Callback):
    """One CSV row per epoch (`epoch` then the logs' keys, sorted, like Keras' `CSVLogger`).

    The whole file is rewritten at every epoch end, to a temporary name then renamed, so a kill
    never leaves a half-written row. At the first epoch of `fit`, the rows of the file from
    that epoch on are dropped (they belong to epochs a resumed run trains again; a fresh run
    starting at epoch 0 starts a new log).

    Args:
        path: the CSV file.
    """

    def __init__(self, path):
        super().__init__()
        self.path = os.fspath(path)
        self.rows = None
        self.keys = []

    def _read(self, first_epoch: int) -> None:
        self.rows, self.keys = [], []
        if not os.path.isfile(self.path):
            return
        with open(self.path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            self.keys = [k for k in (reader.fieldnames or []) if k != "epoch"]
            rows = list(reader)
        for row in rows:
            complete = None not in row.values() and None not in row
            if complete and row.get("epoch", "").isdigit() and int(row["epoch"]) < first_epoch:
                self.rows.append(row)
        if len(self.rows) < len(rows):
            print(f"{self.path}: {len(rows) - len(self.rows)} rows from epoch "
                  f"{first_epoch + 1} on are dropped (trained again now).")

    def on_epoch_begin(self, epoch, logs=None):
        if self.rows is None:
            self._read(int(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if self.rows is None:
            self._read(int(epoch))
        values = {k: v if isinstance(v, str) else repr(float(keras.ops.convert_to_numpy(v)))
                  for k, v in (logs or {}).items()}
        self.keys += sorted(k for k in values if k not in self.keys)
        self.rows.append({"epoch": str(int(epoch)), **values})
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["epoch"] + sorted(self.keys), restval="NA")
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)


def epochs_done(history, backup: Optional[RunBackup]) -> int:
    """Epochs finished in all after `fit`: the last epoch of `history`, else the backup's."""
    if history is not None and history.epoch:
        return int(history.epoch[-1]) + 1
    return 0 if backup is None else int(backup.resumed_epoch)

