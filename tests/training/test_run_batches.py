"""`fit` reads a pre-training run through one iterator (`data.pretraining.run_batches.RunBatches`).

What reaches the train step is observed, not inferred: `ChecksumModel` adds checksums of each
batch it trains on to the step's logs (computed inside `train_step`, on the tensors that reach
it), and they must equal those of `pairs(step, epoch)` for every step of every epoch, for a fresh
run and for a run resumed at epoch 2. The iterators are counted at the generator each one starts
(`PyDatasetAdapter._get_iterator`, called by `tf.data.Dataset.from_generator` per iterator).
"""

import os

import keras
import numpy as np
import pytest

from models_genesis.config import PretrainConfig
from models_genesis.data.io.cube_files import cube_file_name, save_cubes
from models_genesis.data.pretraining.restoration_dataset import RestorationDataset
from models_genesis.data.pretraining.run_batches import RunBatches
from models_genesis.training import pretrain as pretrain_module
from models_genesis.training.callbacks import EpochSetter
from models_genesis.training.pretrain import (
    _datasets, _training_data, find_pretraining_cubes, pretrain, resolve_method,
)
from keras.src.trainers.data_adapters import py_dataset_adapter

SHAPE = (16, 16, 16)
STEPS = 3


def _checksums(x, y):
    """Sums of x and y, and of x weighted by the cube's place in the batch (order matters)."""
    place = keras.ops.arange(1, keras.ops.shape(x)[0] + 1, dtype="float64")
    x, y = keras.ops.cast(x, "float64"), keras.ops.cast(y, "float64")
    per_cube = keras.ops.sum(keras.ops.reshape(x, (keras.ops.shape(x)[0], -1)), axis=1)
    return {"x_sum": keras.ops.sum(x), "y_sum": keras.ops.sum(y),
            "x_order": keras.ops.sum(per_cube * place)}


def _expected(pairs):
    return {k: float(keras.ops.convert_to_numpy(v)) for k, v in _checksums(*pairs).items()}


class ChecksumModel(keras.Model):
    """A functional model whose train-step logs carry checksums of the batch it trained on."""

    def train_step(self, data):
        logs = dict(super().train_step(data))
        logs.update(_checksums(data[0], data[1]))
        return logs


class _Trained(keras.callbacks.Callback):
    """(epoch, step, checksums) of every batch that reached the train step."""

    def __init__(self):
        super().__init__()
        self.seen, self.epoch = [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = int(epoch)

    def on_train_batch_end(self, batch, logs=None):
        sums = {k: float(np.asarray(logs[k])) for k in ("x_sum", "y_sum", "x_order")}
        self.seen.append((self.epoch, int(batch), sums))


@pytest.fixture
def recorded(monkeypatch):
    """Record each training generator start (= one iterator) with its dataset's type (those of
    validation datasets are left out), and every batch `RunBatches` makes: (first_epoch fixed?,
    epoch, step)."""
    starts, made = [], []
    start = py_dataset_adapter.PyDatasetAdapter._get_iterator
    getitem = RunBatches.__getitem__

    def counted_start(self):
        if not getattr(self.py_dataset, "validation", False):
            starts.append(type(self.py_dataset).__name__)
        return start(self)

    def logged_getitem(self, index):
        made.append((self.first_epoch is not None, *self.locate(index)))
        return getitem(self, index)

    monkeypatch.setattr(py_dataset_adapter.PyDatasetAdapter, "_get_iterator", counted_start)
    monkeypatch.setattr(RunBatches, "__getitem__", logged_getitem)
    return starts, made


def _model():
    inputs = keras.Input((*SHAPE, 1))
    outputs = keras.layers.Conv3D(1, 3, padding="same", activation="sigmoid")(inputs)
    model = ChecksumModel(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def _check_trained(trained, dataset, epochs):
    assert [(e, s) for e, s, _ in trained.seen] == [(e, s) for e in epochs for s in range(STEPS)]
    for epoch, step, sums in trained.seen:
        expected = _expected(dataset.pairs(step, epoch))
        assert sums == pytest.approx(expected, rel=1e-9), (epoch, step)


def test_run_batches_index_epoch_and_forwarding(tmp_path, rng):
    ds = RestorationDataset(rng.random((5, *SHAPE), dtype=np.float32), batch_size=2, seed=4,
                            sample_dir=tmp_path)
    run = RunBatches(ds, 4)
    assert len(run) == 3 * 4
    before = [run[i] for i in range(2)]  # Keras' output-signature peek: fixes nothing
    assert run.first_epoch is None and ds.epoch == 0
    run.set_epoch(2)
    run.set_epoch(3)  # later epochs do not move the first one
    assert run.first_epoch == 2 and ds.epoch == 3
    for j in (0, 2, 3, 7, 11):
        got, want = run[j], ds.pairs(j % 3, 2 + j // 3)
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), j
    assert not np.array_equal(before[0][0], run[0][0])  # epoch 2, not 0
    with pytest.raises(IndexError):
        run[12]
    run.on_epoch_begin()
    run.on_epoch_end()  # forwarded: the dataset draws its sample PNG and advances its epoch
    assert os.listdir(tmp_path) == ["pairs_epoch_0003.png"] and ds.epoch == 4
    with pytest.raises(ValueError, match="epochs"):
        RunBatches(ds, 0)


def test_fit_reads_the_whole_run_through_one_iterator(tmp_path, rng, recorded):
    starts, made = recorded
    ds = RestorationDataset(rng.random((5, *SHAPE), dtype=np.float32), batch_size=2, seed=1,
                            sample_dir=tmp_path)
    run, trained, epochs = RunBatches(ds, 3), _Trained(), 3
    _model().fit(run, epochs=epochs, steps_per_epoch=len(ds), shuffle=False, verbose=0,
                 callbacks=[EpochSetter(run), trained])
    _check_trained(trained, ds, range(epochs))
    assert starts == ["RunBatches"]  # one iterator for the run (no spare one at its end)
    assert all(epoch < epochs for _, epoch, _ in made)
    assert made[:2] == [(False, 0, 0), (False, 0, 1)]  # the signature peek, before set_epoch
    assert {(e, s) for fixed, e, s in made if fixed} == {(e, s) for e in range(3) for s in range(3)}
    assert sorted(os.listdir(tmp_path)) == [f"pairs_epoch_{e:04d}.png" for e in range(epochs)]


def test_the_counter_sees_a_new_iterator_per_epoch_without_run_batches(rng, recorded):
    """The check above can fail: a dataset given to `fit` as is starts a generator per epoch."""
    starts, _ = recorded
    ds = RestorationDataset(rng.random((5, *SHAPE), dtype=np.float32), batch_size=2, seed=1)
    trained = _Trained()
    _model().fit(ds, epochs=3, shuffle=False, verbose=0, callbacks=[EpochSetter(ds), trained])
    _check_trained(trained, ds, range(3))  # the same batches, through more iterators
    assert len(starts) >= 3 and set(starts) == {"RestorationDataset"}


@pytest.fixture(scope="module")
def cube_dir(tmp_path_factory):
    folder, rng = tmp_path_factory.mktemp("cubes"), np.random.default_rng(0)
    for subset in range(7):
        save_cubes(os.path.join(folder, cube_file_name(4, SHAPE, subset)),
                   rng.random((4, *SHAPE), dtype=np.float32))
    return str(folder)


def _config(data, out, **kw):
    return PretrainConfig(**{**dict(
        data_dir=data, out_dir=str(out), cube_shape=SHAPE, n_base_filters=2, depth=2,
        batch_size=2, epochs=2, steps_per_epoch=STEPS, validation_steps=1, patience=100,
        tensorboard=False, figures=False, sample_every=0, workers=0, seed=5), **kw})


@pytest.mark.large  # two short pre-training runs: about 10 s
def test_pretrain_trains_on_pairs_of_each_epoch_fresh_and_resumed(tmp_path, cube_dir, recorded,
                                                                   monkeypatch):
    starts, made = recorded
    build = pretrain_module.build_restoration_model

    def checksum_build(config):
        unet, model = build(config)
        return unet, ChecksumModel(model.input, model.output)

    monkeypatch.setattr(pretrain_module, "build_restoration_model", checksum_build)
    config = _config(cube_dir, tmp_path / "run")
    files = find_pretraining_cubes(config)
    train, _ = _datasets(resolve_method(config, files), files, config.batch_size)

    fresh = _Trained()
    pretrain(config, callbacks=[fresh], verbose=0)
    _check_trained(fresh, train, range(2))
    assert starts == ["RunBatches"]

    starts.clear(), made.clear()
    resumed = _Trained()
    pretrain(_config(cube_dir, tmp_path / "run", epochs=4), resume=True, callbacks=[resumed],
             verbose=0)
    _check_trained(resumed, train, range(2, 4))  # the run restarts at epoch 2: base 2
    assert starts == ["RunBatches"]
    assert {(e, s) for fixed, e, s in made if fixed} >= {(e, s) for e in (2, 3)
                                                        for s in range(STEPS)}
    assert all(e >= 2 for fixed, e, _ in made if fixed)


def test_training_data_keeps_a_per_epoch_iterator_where_needed(tmp_path, cube_dir):
    config = _config(cube_dir, tmp_path / "run")
    files = find_pretraining_cubes(config)
    train, _ = _datasets(resolve_method(config, files), files, config.batch_size)
    run = _training_data(config, train, [])
    assert isinstance(run, RunBatches) and run.dataset is train and len(run) == STEPS * 2
    assert _training_data(config, train, [keras.callbacks.Callback()]) is train
    for kw in (dict(workers=2), dict(workers=1, use_multiprocessing=True)):
        threaded = _config(cube_dir, tmp_path / "run", **kw)
        data, _ = _datasets(resolve_method(threaded, files), files, 2)
        assert _training_data(threaded, data, []) is data, kw
