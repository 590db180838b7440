"""Each check of the configuration classes, reached directly (not through the CLI)."""

import dataclasses
import json

import pytest

from models_genesis.config import (TARGET_TASKS, FinetuneConfig, PretrainConfig, check_choice,
                                   check_number, get_target_task)


@pytest.mark.parametrize("value, kwargs", [
    (3, dict(integer=True, low=1)),
    (3.0, dict(integer=True, low=1)),
    (0, dict(integer=True, low=0)),
    (None, dict(integer=True, low=1, optional=True)),
    (0.5, dict(low=0, high=1, high_open=True)),
    (1.0, dict(low=0, high=1, low_open=True)),
    (1e-9, dict(low=0, low_open=True)),
])
def test_check_number_accepts(value, kwargs):
    check_number("x", value, **kwargs)


@pytest.mark.parametrize("value, kwargs, message", [
    (0, dict(integer=True, low=1), "`x` must be a positive integer. Received: x=0."),
    (2.5, dict(integer=True, low=1), "a positive integer"),
    (True, dict(integer=True, low=1), "a positive integer"),
    ("3", dict(integer=True, low=1), None),  # a string is converted: accepted below
    ("three", dict(integer=True, low=1), "Received: x='three'"),
    (None, dict(integer=True, low=1), "Received: x=None"),
    (-1, dict(integer=True, low=0), "an integer >= 0"),
    (1, dict(low=0, high=1, high_open=True), "in [0, 1)"),
    (0, dict(low=0, high=1, low_open=True), "in (0, 1]"),
    (0, dict(low=0, low_open=True), "> 0"),
    (-0.1, dict(low=0), ">= 0"),
    (2, dict(high=1, high_open=True), "< 1"),
    (float("nan"), dict(low=0), ">= 0"),
    (0, dict(integer=True, low=1, optional=True), "a positive integer or None"),
])
def test_check_number_refuses(value, kwargs, message):
    if message is None:
        check_number("x", value, **kwargs)
        return
    with pytest.raises(ValueError) as error:
        check_number("x", value, **kwargs)
    assert message in str(error.value) and "`x`" in str(error.value)


def test_check_choice_lists_the_choices():
    check_choice("head", "linear", ("release", "linear"))
    with pytest.raises(ValueError, match=r"`head` must be one of \['release', 'linear'\]\. "
                                         r"Received: head='big'\."):
        check_choice("head", "big", ("release", "linear"))


# --- TargetTask


@pytest.mark.parametrize("change, field", [
    (dict(kind="regression"), "kind"),
    (dict(modality="pet"), "modality"),
    (dict(intensity_window=None), "intensity_window"),
    (dict(intensity_window=(100, -100)), "intensity_window"),
    (dict(spacing=(1, 1)), "spacing"),
    (dict(spacing=(1, 0, 1)), "spacing"),
    (dict(crop_scale=0.5), "crop_scale"),
])
def test_target_task_checks(change, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        dataclasses.replace(TARGET_TASKS["ncc"], **change)


def test_target_task_normalises_its_values():
    task = dataclasses.replace(TARGET_TASKS["ncs"], intensity_window=[-1000, 400],
                               spacing=[1, 1, 2], crop_scale=2, input_shape=[64, 64, 32])
    assert task.intensity_window == (-1000.0, 400.0) and task.spacing == (1.0, 1.0, 2.0)
    assert task.crop_scale == 2.0 and task.input_shape == (64, 64, 32)
    mri = dataclasses.replace(TARGET_TASKS["bms"], intensity_window=None)
    assert mri.preprocessing()["intensity_window"] is None
    with pytest.raises(ValueError, match="Valid"):
        get_target_task("xyz")


# --- FinetuneConfig

_FINETUNE = dict(task="ncc", init="he_uniform")


@pytest.mark.parametrize("change, field", [
    (dict(task="xyz"), "xyz"),
    (dict(data_options=[("fold", 1)]), "data_options"),
    (dict(head="big"), "head"),
    (dict(freeze_blocks=(14,)), "freeze_blocks"),
    (dict(freeze_blocks=(True,)), "freeze_blocks"),
    (dict(init="imagenet"), "init"),
    (dict(label_fraction=0), "label_fraction"),
    (dict(label_fraction=1.5), "label_fraction"),
    *[(dict({name: 0}), name) for name in ("epochs", "batch_size", "patience", "lr_patience",
                                            "n_base_filters", "steps_per_epoch",
                                            "validation_steps", "workers")],
    (dict(epochs=2.5), "epochs"),
    *[(dict({name: 0}), name) for name in ("learning_rate", "lr_factor", "min_lr",
                                            "adam_epsilon")],
    (dict(bn_momentum=1.0), "bn_momentum"),
    (dict(bn_momentum=True), "bn_momentum"),
    (dict(input_shape=(12, 16, 8)), "input_shape"),
    (dict(input_shape=(16, 16)), "input_shape"),
])
def test_finetune_config_checks(change, field):
    with pytest.raises(ValueError, match=f"{field}"):
        FinetuneConfig(**{**_FINETUNE, **change})


def test_finetune_config_normalises_and_resolves():
    config = FinetuneConfig(**_FINETUNE, freeze_blocks=(3, 1, 3), input_shape=[16, 16, 8])
    assert config.freeze_blocks == (1, 3) and config.input_shape == (16, 16, 8)
    resolved = config.resolve()
    assert resolved.batch_size == TARGET_TASKS["ncc"].batch_size
    assert resolved.patience == TARGET_TASKS["ncc"].patience


# --- PretrainConfig


@pytest.mark.parametrize("change, field", [
    (dict(method="magic"), "method"),
    (dict(strategy="tpu"), "strategy"),
    (dict(optimizer="rmsprop"), "optimizer"),
    (dict(loss="l1"), "loss"),
    (dict(scheme="nonlinear+nothing"), "Unknown scheme"),
    (dict(method="denoising", scheme="nonlinear"), "scheme"),
    (dict(method_options=[("sigma", 1)]), "method_options"),
    (dict(mixed_precision="fp8"), "mixed_precision"),
    *[(dict({name: 0}), name) for name in ("steps_per_epoch", "validation_steps", "scale",
                                            "batch_size", "epochs", "lr_patience", "patience",
                                            "n_base_filters", "depth", "max_queue_size")],
    *[(dict({name: -1}), name) for name in ("workers", "sample_every", "seed")],
    (dict(learning_rate=0), "learning_rate"),
    (dict(min_lr=0), "min_lr"),
    (dict(lr_factor=1), "lr_factor"),
    (dict(lr_factor=0), "lr_factor"),
    (dict(momentum=-0.5), "momentum"),
    (dict(lr_min_delta=-1e-4), "lr_min_delta"),
    (dict(bn_momentum=1), "bn_momentum"),
    (dict(dims=4), "dims"),
    (dict(dims=2), "dims=2"),
    (dict(dims=2, cube_shape=(64, 64, 1), method="rubik"), "dims=2"),
    (dict(cube_shape=(60, 64, 32)), "cube_shape"),
    (dict(train_subsets=()), "train_subsets"),
    (dict(val_subsets="5"), "val_subsets"),
    (dict(train_subsets=("0", "1"), val_subsets=("1",)), "must not share"),
    (dict(keras2_weights_name="weights.keras"), "keras2_weights_name"),
])
def test_pretrain_config_checks(change, field):
    with pytest.raises(ValueError, match=field):
        PretrainConfig(**change)


def test_pretrain_config_normalises_and_round_trips(tmp_path):
    config = PretrainConfig(train_subsets=[0, 1], val_subsets=[2], cube_shape=[32, 32, 16],
                            method_options={"local_windows": [1, 5]})
    assert config.train_subsets == ("0", "1") and config.cube_shape == (32, 32, 16)
    assert config.method_options == {"local_windows": (1, 5)}
    assert PretrainConfig(dims=2, cube_shape=(64, 64, 1)).keras2_weights_name == (
        "Genesis_Chest_CT_2D.h5")
    path = config.to_json(tmp_path / "config.json")
    assert PretrainConfig.from_json(path) == config
    with open(path, encoding="utf-8") as f:
        values = json.load(f)
    values["colour"] = "red"
    with pytest.raises(ValueError, match=r"Unknown PretrainConfig field\(s\): \['colour'\]"):
        PretrainConfig.from_dict(values)
    with pytest.raises(ValueError, match="Valid presets"):
        PretrainConfig.preset("huge")
