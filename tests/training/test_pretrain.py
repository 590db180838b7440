"""Pre-training end to end on tiny cubes: outputs, resume, refusals, OOM fallback, mixed precision."""

import csv
import dataclasses
import json
import os
import warnings

import keras
import numpy as np
import pytest

from models_genesis.config import PretrainConfig
from models_genesis.data.io.cube_files import cube_file_name
from models_genesis.data.pretraining.restoration_dataset import RestorationDataset
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import save_keras2_weights
from models_genesis.transformations.unified import TransformConfig
from models_genesis.evaluation.restoration import evaluate_restoration
from models_genesis.training.pretrain import (
    build_restoration_model,
    is_out_of_memory,
    make_optimizer,
    pretrain,
)
from models_genesis.training.run_folder import clear_outputs, prepare_run_dir, run_paths
from tests.helpers import CUBE_SHAPE, write_cubes

SHAPE = CUBE_SHAPE


@pytest.fixture(scope="module")
def cube_dir(tmp_path_factory):
    return write_cubes(tmp_path_factory.mktemp("cubes"), np.random.default_rng(0))


def _config(data, out, **kw):
    values = dict(data_dir=data, out_dir=str(out), cube_shape=SHAPE, n_base_filters=2,
                  batch_size=4, epochs=2, steps_per_epoch=2, validation_steps=1,
                  tensorboard=False, workers=0)
    values.update(kw)
    return PretrainConfig(**values)


def _csv_epochs(path):
    with open(path, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _csv_column(path, name):
    with open(path, newline="") as f:
        return [float(row[name]) for row in csv.DictReader(f)]


class _Snapshot(keras.callbacks.Callback):
    """Record the weights at each epoch's start and end."""

    def __init__(self):
        super().__init__()
        self.begin, self.end = {}, {}

    def on_epoch_begin(self, epoch, logs=None):
        self.begin[epoch] = [np.array(w) for w in self.model.get_weights()]

    def on_epoch_end(self, epoch, logs=None):
        self.end[epoch] = [np.array(w) for w in self.model.get_weights()]


def test_pretrain_writes_both_weight_formats_logs_metrics_and_figures(cube_dir, tmp_path):
    start = unet_model_3d((*SHAPE, 1), n_base_filters=2)
    config = _config(cube_dir, tmp_path / "run",
                     weights=save_keras2_weights(start, str(tmp_path / "start.h5")))
    seen = _Snapshot()
    result = pretrain(config, callbacks=[seen], verbose=0)
    for w_model, w_file in zip(seen.begin[0], start.get_weights()):  # --weights started the run
        np.testing.assert_array_equal(w_model, w_file)
    paths = result["paths"]
    for key in ("config", "best_weights", "keras2_weights", "csv_log", "metrics", "result"):
        assert os.path.isfile(paths[key]), key
    assert os.path.basename(paths["keras2_weights"]) == "Genesis_Chest_CT.h5"
    stored = PretrainConfig.from_json(paths["config"])  # records every transformation parameter
    # ... and the optimiser and schedule the method trained with (the release's, for genesis)
    assert stored == dataclasses.replace(config.with_method_training(),
                                         method_options=stored.method_options)
    assert (stored.optimizer, stored.learning_rate, stored.momentum, stored.weight_decay,
            stored.schedule) == ("sgd", 1.0, 0.9, 0.0, "plateau")
    assert TransformConfig(**stored.method_options) == TransformConfig.for_scheme(config.scheme)
    assert _csv_epochs(paths["csv_log"]) == [0, 1] and result["epochs"] == 2
    val_losses = _csv_column(paths["csv_log"], "val_loss")
    assert result["best_val_loss"] == pytest.approx(min(val_losses), rel=1e-6)
    assert result["best_epoch"] == int(np.argmin(val_losses))
    assert sorted(os.listdir(paths["samples"])) == ["epoch_0001.png", "epoch_0002.png"]
    assert set(result["figures"]) == {"combinations", "difference_map"}

    # Both files hold the best weights: same predictions from a fresh U-Net.
    a = unet_model_3d((*SHAPE, 1), n_base_filters=2)
    a.load_weights(paths["best_weights"])
    b = unet_model_3d((*SHAPE, 1), n_base_filters=2)
    b.load_weights(paths["keras2_weights"])  # Keras 3 reads the Keras 2 layout by layer order
    val = RestorationDataset([os.path.join(cube_dir, cube_file_name(4, SHAPE, s)) for s in (5, 6)],
                             4, validation=True, shuffle=False)
    x, y = val[0]
    np.testing.assert_allclose(a.predict(x, verbose=0), b.predict(x, verbose=0), atol=1e-6)

    # The metrics are recomputable: identity from the pairs, model from the best weights.
    metrics = json.load(open(paths["metrics"]))
    assert metrics["identity_mse"] == pytest.approx(float(np.mean((x - y) ** 2)), rel=1e-5)
    pred = a.predict(x, verbose=0)
    assert metrics["model_mse"] == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-4)
    assert metrics["model_mse"] == pytest.approx(result["best_val_loss"], rel=1e-4)
    assert metrics["constant_mse"] == pytest.approx(float(np.var(y.astype(np.float64))), rel=1e-5)


class _Killed(Exception):
    pass


class _KillAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Killed(f"killed at epoch {epoch}")


@pytest.mark.large
def test_rerun_resumes_after_a_kill_then_refuses_a_finished_run(cube_dir, tmp_path):
    config = _config(cube_dir, tmp_path / "run", epochs=4, figures=False, sample_every=0)
    first = _Snapshot()
    with pytest.raises(_Killed):
        pretrain(config, callbacks=[first, _KillAt(2)], verbose=0)
    csv_log = os.path.join(config.out_dir, "training_log.csv")
    assert _csv_epochs(csv_log) == [0, 1]

    second = _Snapshot()
    result = pretrain(config, callbacks=[second], verbose=0)  # the same command again
    assert min(second.begin) == 2  # continued, losing no finished epoch
    for w_resumed, w_saved in zip(second.begin[2], first.end[1]):
        np.testing.assert_array_equal(w_resumed, w_saved)
    assert _csv_epochs(csv_log) == [0, 1, 2, 3] and result["epochs"] == 4

    with pytest.raises(FileExistsError, match="finished"):
        pretrain(config, verbose=0)
    more = pretrain(PretrainConfig(**{**config.to_dict(), "epochs": 5}), resume=True, verbose=0)
    assert _csv_epochs(csv_log) == [0, 1, 2, 3, 4] and more["epochs"] == 5
    with pytest.raises(ValueError, match="another architecture"):
        pretrain(PretrainConfig(**{**config.to_dict(), "n_base_filters": 4}), resume=True)


def test_overwrite_clears_only_the_run_outputs(tmp_path):
    config = _config("unused", tmp_path / "run")
    paths = run_paths(config.out_dir, config)
    os.makedirs(paths["backup"])
    config.to_json(paths["config"])
    for key in ("result", "csv_log", "keras2_weights"):
        open(paths[key], "w").close()
    mine = tmp_path / "run" / "notes.txt"
    mine.write_text("keep me", encoding="utf-8")
    with pytest.raises(FileExistsError):
        prepare_run_dir(paths, config, resume=False, overwrite=False)
    assert prepare_run_dir(paths, config, resume=False, overwrite=True) == "fresh"
    assert prepare_run_dir(paths, config, resume=True, overwrite=False) == "resume"
    clear_outputs(paths)
    assert sorted(os.listdir(tmp_path / "run")) == ["notes.txt"]


def _assert_nothing_written(out):
    assert not os.path.exists(os.path.join(out, "config.json"))
    assert not os.path.exists(os.path.join(out, "training_log.csv"))


def test_bad_inputs_fail_before_training(cube_dir, tmp_path, rng):
    out = str(tmp_path / "run")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="No cube file for subset"):
        pretrain(_config(str(empty), out))
    other = write_cubes(tmp_path / "other", rng, shape=(16, 16, 24), n=2)
    with pytest.raises(ValueError, match="another shape"):
        pretrain(_config(other, out))
    foreign = save_keras2_weights(unet_model_3d((*SHAPE, 1), n_base_filters=4),
                                  str(tmp_path / "foreign.h5"))
    with pytest.raises(ValueError, match="Shape mismatch"):
        pretrain(_config(cube_dir, out, weights=foreign))
    with pytest.raises(FileNotFoundError, match="missing.h5.*presets"):
        pretrain(_config(cube_dir, out, weights=str(tmp_path / "missing.h5")))
    with pytest.raises(ValueError, match="presets.*genesis_chest_ct.*Received: weights='genesis'"):
        pretrain(_config(cube_dir, out, weights="genesis"))
    with pytest.raises(ValueError, match="exclude each other"):
        pretrain(_config(cube_dir, out), resume=True, overwrite=True)
    _assert_nothing_written(out)
    with pytest.raises(ValueError, match="scheme"):
        _config(cube_dir, out, scheme="jigsaw")
    with pytest.raises(ValueError, match="strategy"):
        _config(cube_dir, out, strategy="tpu")
    with pytest.raises(ValueError, match="cube_shape"):
        _config(cube_dir, out, cube_shape=(16, 16, 12))


class _FakeOOM(RuntimeError):
    pass


class _OOMOnce(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.raised = 0

    def on_train_begin(self, logs=None):
        if not self.raised:
            self.raised += 1
            raise _FakeOOM("RESOURCE_EXHAUSTED: OOM when allocating tensor with shape [4,2,16,16,16]")


def test_out_of_memory_reduces_the_batch_by_two_and_says_so(cube_dir, tmp_path, capsys):
    config = _config(cube_dir, tmp_path / "run", epochs=1, figures=False, sample_every=0)
    result = pretrain(config, callbacks=[_OOMOnce()], verbose=0)
    assert result["batch_size"] == 2
    assert "Out of memory with batch size 4: retrying with batch size 2" in capsys.readouterr().out
    assert _csv_epochs(result["paths"]["csv_log"]) == [0]


def test_is_out_of_memory_recognises_backend_errors():
    import tensorflow as tf

    assert is_out_of_memory(tf.errors.ResourceExhaustedError(None, None, "OOM"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying"))
    assert not is_out_of_memory(ValueError("shapes (4, 3) and (2,) are incompatible"))


def test_mixed_precision_keeps_outputs_and_loss_float32(cube_dir, tmp_path):
    # depth 3: no feature map with 2 rows, where TF's CPU bf16 Conv3D gradient is wrong (below).
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        unet, model = build_restoration_model(_config(cube_dir, tmp_path, depth=3))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert unet.get_layer("depth_0_conv").compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in unet.weights)
    out = model(np.full((1, *SHAPE, 1), 0.5, np.float32))
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    result = pretrain(_config(cube_dir, tmp_path / "run", epochs=1, mixed_precision="bf16",
                              depth=3, figures=False), verbose=0)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    assert np.isfinite(result["best_val_loss"])
    plain = unet_model_3d((*SHAPE, 1), n_base_filters=2, depth=3)
    plain.load_weights(result["paths"]["keras2_weights"])


def test_bf16_on_tf_cpu_warns_where_a_feature_map_has_two_rows(monkeypatch):
    """TensorFlow 2.21's CPU bf16 Conv3D filter gradient is wrong for inputs with 2 rows (relative
    error 1 to 1e36 against float32, measured for (2, 2, 2), (2, 8, 8), (2, 4, 4); 0.2-0.4 % for
    3, 4 or more rows). The warning names the case; other cube shapes stay quiet."""
    import tensorflow as tf

    from models_genesis.training.pretrain import _warn_if_cpu_bf16_conv_gradient_is_wrong

    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: [])  # a CPU machine
    with pytest.warns(UserWarning, match="2 rows"):
        _warn_if_cpu_bf16_conv_gradient_is_wrong(
            PretrainConfig(cube_shape=(16, 16, 16), mixed_precision="bf16"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_cpu_bf16_conv_gradient_is_wrong(
            PretrainConfig(cube_shape=(64, 64, 32), mixed_precision="bf16"))


class _Pairs:
    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]


def test_evaluate_restoration_of_the_identity_and_a_perfect_model(rng):
    y = rng.random((6, 8, 8, 8, 1), dtype=np.float32)
    x = np.clip(y + rng.normal(0, 0.1, y.shape).astype(np.float32), 0, 1)
    pairs = _Pairs([(x[:4], y[:4]), (x[4:], y[4:])])
    inp = keras.Input((8, 8, 8, 1))
    identity = keras.Model(inp, keras.layers.Activation("linear")(inp))
    res = evaluate_restoration(identity, pairs)
    assert res["n_cubes"] == 6 and res["ratio"] == pytest.approx(1.0)
    assert res["model_mse"] == pytest.approx(float(np.mean((x - y) ** 2)), rel=1e-5)
    assert evaluate_restoration(identity, pairs, steps=1)["n_cubes"] == 4


def test_presets():
    demo = PretrainConfig.preset("demo", data_dir="d")
    assert demo.cube_shape == (32, 32, 16) and demo.n_base_filters == 8 and demo.data_dir == "d"
    release = PretrainConfig.preset().with_method_training()
    assert (release.batch_size, release.learning_rate, release.momentum) == (6, 1.0, 0.9)
    assert (release.lr_factor, release.lr_patience, release.lr_min_delta, release.min_lr,
            release.patience) == (0.5, 10, 1e-4, 1e-6, 50)
    assert release.train_subsets == tuple("01234") and release.val_subsets == ("5", "6")
    with pytest.raises(ValueError, match="Valid presets"):
        PretrainConfig.preset("huge")


def test_each_method_trains_with_its_authors_optimiser_unless_told_otherwise():
    def training(config):
        c = config.with_method_training()
        return c.optimizer, c.learning_rate, c.momentum, c.weight_decay, c.schedule

    assert training(PretrainConfig()) == ("sgd", 1.0, 0.9, 0.0, "plateau")
    assert training(PretrainConfig(method="deepcluster")) == ("sgd", 0.05, 0.9, 1e-5, "fixed")
    assert training(PretrainConfig(method="jigsaw"))[:2] == ("adam", 1e-4)
    assert training(PretrainConfig(method="rubik"))[:2] == ("adam", 1e-4)
    given = PretrainConfig(method="deepcluster", learning_rate=0.01, schedule="plateau")
    assert training(given) == ("sgd", 0.01, 0.9, 1e-5, "plateau")
    assert PretrainConfig.preset("demo", method="jigsaw").with_method_training().learning_rate == 1e-3
    optimizer = make_optimizer(PretrainConfig(method="deepcluster"))
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert (float(optimizer.learning_rate), optimizer.momentum, optimizer.weight_decay) == \
        pytest.approx((0.05, 0.9, 1e-5))
    with pytest.raises(ValueError, match="schedule"):
        PretrainConfig(schedule="cosine")
    with pytest.raises(ValueError, match="weight_decay"):
        PretrainConfig(weight_decay=-1.0)


def test_bn_momentum_of_the_config_reaches_the_unet_and_defaults_to_the_release():
    assert PretrainConfig().bn_momentum == 0.99
    for momentum in (0.99, 0.9):
        config = PretrainConfig(cube_shape=(8, 8, 8), depth=2, n_base_filters=2,
                                bn_momentum=momentum)
        unet, model = build_restoration_model(config)
        bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert len(bns) == 6 and all(layer.momentum == momentum for layer in bns)
    with pytest.raises(ValueError, match="bn_momentum"):
        PretrainConfig(bn_momentum=1.0)


def test_diverged_run_stops_and_says_so(cube_dir, tmp_path, monkeypatch):
    from models_genesis.training import pretrain as module

    def nan_loss(y_true, y_pred):  # what a diverged run logs
        return keras.ops.mean(y_pred) * float("nan")

    monkeypatch.setattr(module, "_compile", lambda model, config: model.compile("sgd", nan_loss))
    config = _config(cube_dir, tmp_path / "run", epochs=3, figures=False)
    with pytest.raises(FloatingPointError, match="diverged.*learning_rate"):
        pretrain(config, verbose=0)
    assert not os.path.exists(run_paths(config.out_dir, config)["keras2_weights"])
    assert len(_csv_epochs(run_paths(config.out_dir, config)["csv_log"])) < 3  # TerminateOnNaN
