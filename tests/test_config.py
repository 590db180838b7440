"""Each check of the configuration classes, reached directly (not through the CLI)."""

import dataclasses
import json

import pytest

from models_genesis.config import (CONFIG_RANGES, TARGET_TASKS, FinetuneConfig, PretrainConfig,
                                   Range, get_target_task)


@pytest.mark.parametrize("value, rng", [
    (3, Range(int, 1, 10)),
    (3.0, Range(int, 1, 10)),
    (0, Range(int, 0, 10)),
    (0.5, Range(float, 0, 1, hi_open=True)),
    (1.0, Range(float, 0, 1, lo_open=True)),
    (1e-9, Range(float, 0, None, lo_open=True)),
])
def test_range_accepts(value, rng):
    assert rng.check(value, "x") == value


@pytest.mark.parametrize("value, rng, words", [
    (0, Range(int, 1, 10), "`x` must be an integer in [1, 10]. Received: x=0."),
    (2.5, Range(int, 1, 10), "an integer in [1, 10]"),
    (True, Range(int, 1, 10), "Received: x=True"),
    ("three", Range(int, 1, 10), "Received: x='three'"),
    (None, Range(int, 1, 10), "Received: x=None"),
    (1, Range(float, 0, 1, hi_open=True), "a number in [0, 1)"),
    (0, Range(float, 0, 1, lo_open=True), "a number in (0, 1]"),
    (float("nan"), Range(float, 0, 1), "Received: x=nan"),
    (float("inf"), Range(float, 0, None), "Received: x=inf"),
])
def test_range_refuses(value, rng, words):
    with pytest.raises(ValueError) as error:
        rng.check(value, "x")
    assert words in str(error.value) and "`x`" in str(error.value)


def test_range_parses_the_command_line():
    import argparse

    parse = CONFIG_RANGES["bn_momentum"].argtype(optional=True)
    assert parse("0.9") == 0.9 and parse("none") is None
    for text in ("1", "-0.1", "abc"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"\[0, 1\)"):
            parse(text)


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
