"""Fine-tuning one run: initialisations, validation before training, test-split scores."""

import dataclasses
import os

import keras
import numpy as np
import pytest

from models_genesis.config import FinetuneConfig
from models_genesis.data.target_tasks.common import TargetData
from models_genesis.evaluation.metrics import (auc_score, dice_coefficient, dice_loss, iou_score,
                                               mean_iou)
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import read_keras2_weights, save_keras2_weights
from models_genesis.training.finetune import finetune
from models_genesis.training.finetune_model import build_finetune_model
from tests.helpers import SHAPE, make_blobs, make_data

TINY = dict(n_base_filters=2, epochs=2, batch_size=4, patience=2, input_shape=SHAPE,
            augment=False)


@pytest.fixture
def genesis_file(tmp_path):
    keras.utils.set_random_seed(123)
    model = unet_model_3d(SHAPE + (1,), n_base_filters=2)
    return save_keras2_weights(model, tmp_path / "genesis_tiny.h5")


def _kernel(model, name):
    return keras.ops.convert_to_numpy(model.get_layer(name).kernel)


@pytest.mark.parametrize("kind", ["classification", "segmentation"])
def test_genesis_init_loads_the_weight_file(genesis_file, kind):
    stored = read_keras2_weights(genesis_file)
    config = FinetuneConfig(task="ncc" if kind == "classification" else "ncs", init="genesis",
                            weights=genesis_file, n_base_filters=2)
    model = build_finetune_model(config, kind, SHAPE, genesis_file)
    head = ("depth_13_conv",) if kind == "segmentation" else ()
    names = ("depth_0_conv", "depth_7_conv") + head
    for name in names:
        np.testing.assert_array_equal(_kernel(model, name), stored[name][0])
    # A scratch model does not hold the file's kernels.
    keras.utils.set_random_seed(0)
    scratch_config = FinetuneConfig(task=config.task, init="he_uniform", n_base_filters=2)
    scratch = build_finetune_model(scratch_config, kind, SHAPE, None)
    assert not np.allclose(_kernel(scratch, "depth_0_conv"), stored["depth_0_conv"][0])


@pytest.mark.parametrize("init, limit", [
    ("uniform", 0.05),                                  # Keras 2 RandomUniform(-0.05, 0.05)
    ("glorot_uniform", np.sqrt(6 / (27 * 4 + 27 * 8))),  # depth_3_conv: fan_in 108, fan_out 216
    ("he_uniform", np.sqrt(6 / (27 * 4))),
])
def test_scratch_inits_follow_their_distribution(init, limit):
    keras.utils.set_random_seed(0)
    model = build_finetune_model(FinetuneConfig(task="ncs", init=init, n_base_filters=2),
                                 "segmentation", SHAPE, None)
    w = _kernel(model, "depth_3_conv")  # (3, 3, 3, 4, 8): 864 values
    assert w.shape == (3, 3, 3, 4, 8)
    assert np.abs(w).max() <= limit + 1e-7
    assert np.abs(w).max() > 0.95 * limit
    np.testing.assert_allclose(w.std(), limit / np.sqrt(3), rtol=0.1)  # s.d. of U(-a, a)


@pytest.mark.parametrize("momentum", [None, 0.5])
def test_bn_momentum_sets_how_fast_the_moving_statistics_follow(genesis_file, rng, momentum):
    """One training step moves `depth_0_bn`'s moving mean from m0 to m * m0 + (1 - m) * the
    batch mean: m is `bn_momentum`, or the release's 0.99 when it is None (pre-trained model)."""
    config = FinetuneConfig(task="ncs", init="genesis", weights=genesis_file, n_base_filters=2,
                            bn_momentum=momentum)
    model = build_finetune_model(config, "segmentation", SHAPE, genesis_file)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x, y = make_blobs(rng, 4)
    bn = model.get_layer("depth_0_bn")
    before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    features = keras.Model(model.input, model.get_layer("depth_0_conv").output)(x)
    batch_mean = keras.ops.convert_to_numpy(keras.ops.mean(features, axis=(0, 1, 2, 3)))
    model.train_on_batch(x, y)
    m = 0.99 if momentum is None else momentum
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean),
                               m * before + (1 - m) * batch_mean, rtol=1e-4, atol=1e-6)


def test_bn_momentum_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="bn_momentum"):
        FinetuneConfig(task="ncs", init="he_uniform", bn_momentum=1.0)


@pytest.mark.large
def test_finetune_segmentation_scores_the_saved_best_model(rng, tmp_path, genesis_file):
    data = make_data(rng, segmentation=True)
    config = FinetuneConfig(task="ncs", init="genesis", weights=genesis_file,
                            out_dir=str(tmp_path / "run"), seed=3, **TINY)
    result = finetune(config, data, verbose=0, run_eagerly=True)
    assert result["metric"] == "mean_iou" and result["score"] == result["mean_iou"]
    assert "two-class" in result["iou_definition"]
    assert result["weights"] == os.fspath(genesis_file)
    assert (result["n_train"], result["n_valid"], result["n_test"]) == (8, 4, 6)
    for name in ("best.weights.h5", "history.csv", "model.keras", "results.json",
                 "finetune_config.json"):
        assert (tmp_path / "run" / name).is_file()
    with open(tmp_path / "run" / "history.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + result["epochs"]
    # TensorBoard logs by default, as pre-training writes them
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    # The scores are those of the saved (best validation) model on the test split; it loads
    # with its loss (1 - Dice) and metrics and no custom_objects.
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.loss is dice_loss
    prob = model.predict(data.x_test, verbose=0)
    assert result["mean_iou"] == pytest.approx(mean_iou(data.y_test, prob), abs=1e-6)
    assert result["dice"] == pytest.approx(dice_coefficient(data.y_test, prob), abs=1e-6)
    assert result["foreground_iou"] == pytest.approx(iou_score(data.y_test, prob), abs=1e-6)
    saved = FinetuneConfig.from_json(tmp_path / "run" / "finetune_config.json")
    assert saved.learning_rate == 1e-3 and saved.input_shape == SHAPE  # the task's lr, resolved


@pytest.mark.large
def test_finetune_classification_is_seeded_and_uses_label_fraction(rng, tmp_path):
    data = make_data(rng, segmentation=False, n=(12, 4, 6))
    config = FinetuneConfig(task="ncc", init="he_uniform", seed=5, label_fraction=0.5,
                            **dict(TINY, epochs=1))
    first = finetune(config, data, verbose=0, run_eagerly=True)
    second = finetune(config, data, verbose=0, run_eagerly=True)
    assert first["metric"] == "auc" and first["score"] == first["auc"]
    assert 0.0 <= first["auc"] <= 1.0
    assert first["n_train"] == 6  # half of each class (6 + 6)
    assert first["auc"] == pytest.approx(second["auc"], abs=1e-6)
    assert first["best_val_loss"] == pytest.approx(second["best_val_loss"], rel=1e-4)


def test_auc_reported_is_sklearn_auc_of_predictions(rng, tmp_path):
    from models_genesis.training.finetune import score_test

    y = np.array([0, 1, 0, 1, 1, 0])
    p = rng.random((6, 1))
    assert score_test("classification", y, p)["auc"] == auc_score(y, p.ravel())


@pytest.mark.parametrize("change, message", [
    (lambda d: dataclasses.replace(d, y_train=d.y_train[:, :8]), "grid"),
    (lambda d: dataclasses.replace(d, y_valid=d.y_valid * 2), "binary"),
    (lambda d: dataclasses.replace(d, x_test=d.x_test[:, :, :, :4]), "crops must be"),
    (lambda d: dataclasses.replace(d, y_train=0 * d.y_train), "empty"),
])
def test_bad_data_is_rejected_before_training(rng, change, message, monkeypatch):
    fits = []
    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: fits.append(1))
    data = change(make_data(rng))
    with pytest.raises(ValueError, match=message):
        finetune(FinetuneConfig(task="ncs", init="he_uniform", **TINY), data)
    assert not fits


def test_crop_not_divisible_by_8_and_missing_weights(rng, tmp_path):
    x = np.zeros((4, 12, 12, 8, 1), np.float32)
    y = np.zeros_like(x)
    y[:, 4:6, 4:6, 2:4] = 1
    data = TargetData("ncs", x, y, x, y, x, y)
    with pytest.raises(ValueError, match="divisible by 8"):
        finetune(FinetuneConfig(task="ncs", init="uniform", n_base_filters=2), data)
    with pytest.raises(ValueError, match="needs a pre-trained weight file"):
        finetune(FinetuneConfig(task="ncs", init="genesis"), make_data(rng))
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        finetune(FinetuneConfig(task="ncs", init="genesis", weights=str(tmp_path / "nowhere.h5")),
                 make_data(rng))
    with pytest.raises(ValueError, match="both classes"):
        one_class = make_data(rng, segmentation=False)
        finetune(FinetuneConfig(task="ncc", init="uniform", **TINY),
                 dataclasses.replace(one_class, y_test=0 * one_class.y_test))


def test_linear_probe_keeps_the_genesis_encoder(rng, tmp_path, genesis_file):
    """Transfer scenario 1: frozen Genesis encoder + linear classifier; only the head learns."""
    data = make_data(rng, segmentation=False, n=(8, 4, 4))
    config = FinetuneConfig(task="ncc", init="genesis", weights=genesis_file, head="linear",
                            freeze_encoder=True, out_dir=str(tmp_path / "probe"),
                            tensorboard=False, **dict(TINY, learning_rate=0.1))
    result = finetune(config, data, run_eagerly=True, verbose=0)
    assert not (tmp_path / "probe" / "tensorboard").exists()
    assert result["head"] == "linear" and result["frozen_blocks"] == list(range(8))
    model = keras.saving.load_model(tmp_path / "probe" / "model.keras", compile=False)
    stored = read_keras2_weights(genesis_file)
    for i in range(8):
        for name in (f"depth_{i}_conv", f"depth_{i}_bn"):
            for saved, now in zip(stored[name], model.get_layer(name).weights):
                np.testing.assert_array_equal(saved, keras.ops.convert_to_numpy(now))
    assert [layer.name for layer in model.layers if layer.name in ("fc1", "classifier")] == [
        "classifier"]
    assert FinetuneConfig.from_json(tmp_path / "probe" / "finetune_config.json").freeze_encoder


@pytest.mark.parametrize("kwargs, message", [
    (dict(head="mlp"), "head"), (dict(freeze_blocks=(14,)), "freeze_blocks")])
def test_probe_options_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FinetuneConfig(task="ncc", init="he_uniform", **kwargs)
