"""A run killed at any moment resumes bit-identically: backup, CSV log and counters.

The killed runs are subprocesses ended by real SIGKILLs at chosen points: in the middle of
writing the backup's weight file, after the weight file was renamed but before the backup's commit
(the CSV row of that epoch already written), and in the middle of an epoch. Resumed, the run must
end with exactly the weights (model and optimizer), the CSV log and the callbacks' counters of a
run never interrupted (here, in-process: the same machine and thread settings).
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from models_genesis.config import PretrainConfig
from models_genesis.training.pretrain import pretrain
from models_genesis.training.resume import EpochLog, RunBackup, read_backup
from tests.helpers import write_cubes

EPOCHS = 6
# Early stopping (patience 3) ends this run after epoch 5 on this data; the plateau halves the
# learning rate every 2 epochs (no val_loss improves by lr_min_delta): both counters matter.
SETTINGS = dict(cube_shape=(16, 16, 16), n_base_filters=2, depth=2, batch_size=2, epochs=EPOCHS,
                steps_per_epoch=2, validation_steps=1, lr_patience=2, lr_min_delta=1.0,
                patience=3, tensorboard=False, figures=False, sample_every=0, workers=0, seed=3)

# argv: data_dir out_dir kill settings; kill: "weights:E" (the backup's weight file of epoch E
# half-written), "commit:E" (weight file renamed, backup.json not written; the CSV row of epoch E
# is already written), "batch:E:B" (in the middle of epoch E). Epochs count from 0.
_KILLED_RUN = textwrap.dedent("""
    import json, os, signal, sys
    import keras
    from models_genesis.config import PretrainConfig
    from models_genesis.training import resume
    from models_genesis.training.pretrain import pretrain

    data, out, kill, settings = sys.argv[1], sys.argv[2], sys.argv[3].split(":"), sys.argv[4]
    at = int(kill[1])

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if kill[0] == "weights":
        original = keras.Model.save_weights
        def save_weights(self, filepath, *args, **kwargs):
            original(self, filepath, *args, **kwargs)
            if os.path.basename(filepath) == f"epoch_{at + 1:05d}.tmp.weights.h5":
                with open(filepath, "r+b") as f:
                    f.truncate(os.path.getsize(filepath) // 2)
                die()
        keras.Model.save_weights = save_weights
    elif kill[0] == "commit":
        original_write = resume.write_json
        def write_json(path, values, **kw):
            if values.get("epoch") == at + 1:
                die()
            return original_write(path, values, **kw)
        resume.write_json = write_json

    class KillInBatch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
        def on_train_batch_end(self, batch, logs=None):
            if kill[0] == "batch" and self.epoch == at and batch == int(kill[2]):
                die()

    config = PretrainConfig(data_dir=data, out_dir=out, **json.loads(settings))
    pretrain(config, callbacks=[KillInBatch()], verbose=0)
""")


def _killed_run(data, out, kill):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, data, str(out), kill,
                           json.dumps(SETTINGS)], env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == -9, (kill, proc.returncode, proc.stderr[-3000:])


def _run(data, out):
    return pretrain(PretrainConfig(data_dir=data, out_dir=str(out), **SETTINGS), verbose=0)


def _h5_arrays(path):
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if hasattr(obj, "shape")
                     else None)
    return out


def _final_state(out):
    backup = read_backup(os.path.join(out, "backup"))
    with open(os.path.join(out, "training_log.csv"), encoding="utf-8") as f:
        log = f.read()
    return backup, _h5_arrays(backup["weights_path"]), _h5_arrays(
        os.path.join(out, "best.weights.h5")), log


@pytest.fixture(scope="module")
def cube_dir(tmp_path_factory):
    return write_cubes(tmp_path_factory.mktemp("cubes"), np.random.default_rng(0))


@pytest.mark.large
def test_killed_anywhere_resumes_bit_identically(cube_dir, tmp_path, capsys):
    whole = tmp_path / "whole"
    _run(cube_dir, whole)
    ref_backup, ref_weights, ref_best, ref_log = _final_state(str(whole))
    assert ref_backup["epoch"] >= 5 and len(ref_weights) > 20  # model and optimizer variables

    run = tmp_path / "killed"
    reached = []
    for kill in ("weights:1", "commit:2", "batch:3:1"):  # real SIGKILLs, in subprocesses
        _killed_run(cube_dir, run, kill)
        reached.append((kill, read_backup(run / "backup")["epoch"],
                        sorted(os.listdir(run / "backup"))))
    # Each kill lost only the epoch it hit; a half-written or uncommitted file is never used.
    assert [r[1] for r in reached] == [1, 2, 3], reached
    assert "epoch_00002.tmp.weights.h5" in reached[0][2]  # the half-written file, ignored
    assert {"epoch_00002.weights.h5", "epoch_00003.weights.h5"} <= set(reached[1][2])
    capsys.readouterr()
    _run(cube_dir, run)
    assert f"Resuming the run from epoch 4 of {EPOCHS}" in capsys.readouterr().out

    backup, weights, best, log = _final_state(str(run))
    assert (backup["epoch"], backup["stopped"]) == (ref_backup["epoch"], ref_backup["stopped"])
    assert sorted(os.listdir(run / "backup")) == sorted(os.listdir(whole / "backup"))  # no stale
    assert log == ref_log
    assert backup["callbacks"] == ref_backup["callbacks"]  # early stopping, plateau, best
    assert weights.keys() == ref_weights.keys() and best.keys() == ref_best.keys()
    for name in ref_weights:
        assert np.array_equal(weights[name], ref_weights[name]), name
    for name in ref_best:
        assert np.array_equal(best[name], ref_best[name]), name


class _Model:
    """Just enough of a Keras model for `RunBackup` and `EpochLog` to run without training."""

    def __init__(self):
        import keras

        self.net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        self.net.compile(keras.optimizers.SGD(0.1), "mse")
        self.net.fit(np.ones((2, 2)), np.zeros((2, 1)), verbose=0)


def test_unreadable_backup_names_the_file_to_delete(tmp_path):
    folder = tmp_path / "backup"
    folder.mkdir()
    (folder / "backup.json").write_text('{"epoch": 3, "weights": "epoch_00003.weights.h5"}')
    with pytest.raises(ValueError, match="epoch_00003.weights.h5.*missing.*Delete the folder"):
        read_backup(folder)
    (folder / "backup.json").write_text('{"epoch": 3, "wei')
    with pytest.raises(ValueError, match="unreadable.*Delete the folder"):
        read_backup(folder)


def test_backup_restores_weights_optimizer_and_counters_in_process(tmp_path):
    import keras

    model = _Model().net
    early = keras.callbacks.EarlyStopping(patience=5)
    backup = RunBackup(tmp_path / "b", stateful=[early], learning_rate=0.1)
    backup.set_model(model)
    early.wait, early.best = 2, 0.5
    model.optimizer.learning_rate = 0.05  # as ReduceLROnPlateau would
    backup.on_epoch_end(6)
    saved = [keras.ops.convert_to_numpy(v) for v in model.weights + model.optimizer.variables]

    other = _Model().net
    early2 = keras.callbacks.EarlyStopping(patience=5)
    restore = RunBackup(tmp_path / "b", stateful=[early2], learning_rate=0.1)
    restore.set_model(other)
    restore.set_params({"epochs": 10})
    restore.on_train_begin()
    early2.on_train_begin()  # resets its counters, as in fit
    restore.on_epoch_begin(7)
    assert other._initial_epoch == 7 and (early2.wait, early2.best) == (2, 0.5)
    for a, b in zip(saved, [keras.ops.convert_to_numpy(v)
                            for v in other.weights + other.optimizer.variables]):
        assert np.array_equal(a, b)


def test_epoch_log_drops_rows_of_epochs_trained_again(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("epoch,loss\n0,0.5\n1,0.25\n2,0.125\n3,0.1")  # last row cut by a kill
    log = EpochLog(path)
    log.on_epoch_begin(2)
    log.on_epoch_end(2, {"loss": 0.2, "val_loss": 0.3})
    assert path.read_text().splitlines() == ["epoch,loss,val_loss", "0,0.5,NA", "1,0.25,NA",
                                             "2,0.2,0.3"]
    assert not os.path.exists(str(path) + ".tmp")


def _restore(folder, capsys, **kwargs):
    import keras

    model, early = _Model().net, keras.callbacks.EarlyStopping(patience=5)
    backup = RunBackup(folder, stateful=[early], **kwargs)
    backup.set_model(model)
    backup.set_params({"epochs": 10})
    capsys.readouterr()
    backup.on_train_begin()
    early.on_train_begin()
    backup.on_epoch_begin(model._initial_epoch)
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    return model, early, lr, capsys.readouterr().out


def test_learning_rate_on_resume_is_kept_or_the_changed_one_applied(tmp_path, capsys):
    model = _Model().net
    backup = RunBackup(tmp_path / "b", learning_rate=0.1)
    backup.set_model(model)
    model.optimizer.learning_rate = 0.05  # reduced by ReduceLROnPlateau during the run
    backup.on_epoch_end(3)
    _, _, lr, out = _restore(tmp_path / "b", capsys, learning_rate=0.1)
    assert lr == pytest.approx(0.05) and "Learning rate 0.05, as saved" in out
    assert "Resuming the run from epoch 5 of 10" in out
    _, _, lr, out = _restore(tmp_path / "b", capsys, learning_rate=0.02)
    assert lr == pytest.approx(0.02)
    assert "changed from 0.1 to 0.02: applied from epoch 5 (the saved rate was 0.05)" in out


def test_a_run_that_stopped_early_stays_stopped_unless_continued(tmp_path, capsys):
    import keras

    model = _Model().net
    early = keras.callbacks.EarlyStopping(patience=2)
    backup = RunBackup(tmp_path / "b", stateful=[early])
    backup.set_model(model)
    early.wait, early.stopped_epoch, model.stop_training = 2, 4, True
    backup.on_epoch_end(4)
    model, early, _, out = _restore(tmp_path / "b", capsys)
    assert model._initial_epoch == 10 and "nothing more to train" in out  # fit runs no epoch
    model, early, _, out = _restore(tmp_path / "b", capsys, continue_stopped=True)
    assert model._initial_epoch == 5 and (early.wait, early.stopped_epoch) == (0, 0)
    assert "trains further" in out
