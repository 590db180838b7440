"""Restoration methods end to end: a demo-size run of each learns; the weights a run writes are
what `finetune --init M` loads, and files of another kind are refused before training."""

import json

import keras
import numpy as np
import pytest

from models_genesis.cli import main
from models_genesis.config import FinetuneConfig, PretrainConfig
from models_genesis.methods import make_options
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import read_keras2_weights, save_keras2_weights
from models_genesis.training.finetune_model import build_finetune_model, check_method_weights
from models_genesis.training.pretrain import pretrain
from tests.methods.restoration_helpers import write_cube_files
from tests.helpers import make_data, write_release_arrays

TARGET = (16, 16, 8)  # the tiny fine-tuning crop of tests/training/test_finetune.py


@pytest.mark.large
@pytest.mark.parametrize("method", ["genesis", "denoising", "inpainting", "patch_shuffling"])
def test_a_demo_size_run_learns_below_the_doing_nothing_level(method, tmp_path, capsys):
    data = write_cube_files(tmp_path / "cubes", np.random.default_rng(0))
    config = PretrainConfig.preset(
        "demo", data_dir=data, out_dir=str(tmp_path / "run"), cube_shape=(16, 16, 16),
        method=method, n_base_filters=4, depth=3, batch_size=4, epochs=4, steps_per_epoch=25,
        validation_steps=4, tensorboard=False, sample_every=0, figures=False)
    result = pretrain(config, verbose=0)
    printed = capsys.readouterr().out
    identity = result["metrics"]["identity_mse"]
    assert f"doing-nothing level ({method}): validation MSE of the identity {identity:.6f}" \
        in printed
    assert result["metrics"]["model_mse"] < identity
    stored = PretrainConfig.from_json(result["paths"]["config"])
    assert stored.method == method
    assert make_options(method, stored.method_options) == make_options(method)


def _encoder_file(path):
    unet = unet_model_3d(TARGET + (1,), n_base_filters=2)
    encoder = keras.Model(unet.input, unet.get_layer("depth_7_relu").output)
    return save_keras2_weights(encoder, path)


def test_weight_files_of_another_kind_are_refused(tmp_path):
    unet_file = save_keras2_weights(unet_model_3d(TARGET + (1,), n_base_filters=2),
                                    tmp_path / "denoising.h5")
    encoder_file = _encoder_file(tmp_path / "jigsaw.h5")
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
    other = save_keras2_weights(dense, tmp_path / "other.h5")
    check_method_weights(unet_file, "denoising")
    check_method_weights(encoder_file, "jigsaw")
    with pytest.raises(ValueError, match="encoder only.*whole U-Net"):
        check_method_weights(encoder_file, "denoising")
    with pytest.raises(ValueError, match="whole U-Net.*restoration method"):
        check_method_weights(unet_file, "rubik")
    with pytest.raises(ValueError, match="'depth_0_conv' is missing.*fc"):
        check_method_weights(other, "deepcluster")
    with pytest.raises(ValueError, match="Keras 2 layout"):
        check_method_weights(str(tmp_path / "best.weights.h5"), "genesis")


@pytest.mark.parametrize("kind", ["classification", "segmentation"])
def test_an_encoder_file_fills_the_encoder_and_nothing_else(kind, tmp_path):
    path = _encoder_file(tmp_path / "rubik.h5")
    stored = read_keras2_weights(path)
    task = "ncc" if kind == "classification" else "ncs"
    config = FinetuneConfig(task=task, init="rubik", weights=path, n_base_filters=2)
    keras.utils.set_random_seed(1)
    model = build_finetune_model(config, kind, TARGET, path)
    np.testing.assert_array_equal(model.get_layer("depth_7_conv").get_weights()[0],
                                  stored["depth_7_conv"][0])
    if kind == "segmentation":  # the decoder keeps its initialiser: not in the file
        assert "depth_8_conv" not in stored
        assert np.abs(model.get_layer("depth_8_conv").get_weights()[0]).max() > 0


@pytest.mark.large
def test_cli_pretrain_denoising_writes_what_finetune_init_denoising_loads(tmp_path, capsys):
    rng = np.random.default_rng(0)
    cubes = write_cube_files(tmp_path / "cubes", rng, n=4, shape=TARGET)
    out = tmp_path / "pre"
    assert main(["pretrain", "--method", "denoising", "--option", "sigma_max=0.2", "--data",
                 cubes, "--out", str(out), "--cube-shape", *map(str, TARGET),
                 "--n-base-filters", "2", "--batch-size", "4", "--preset", "demo", "--epochs",
                 "2", "--steps-per-epoch", "10", "--validation-steps", "1", "--no-tensorboard",
                 "--no-figures", "--workers", "0"]) == 0
    weights = out / "denoising.h5"  # not the release's name: another method's weights
    assert weights.is_file() and (out / "best.weights.h5").is_file()
    stored = PretrainConfig.from_json(out / "config.json")
    assert stored.method == "denoising"
    assert stored.method_options == {"sigma_min": 0.0, "sigma_max": 0.2, "clip": False}

    folder = write_release_arrays(tmp_path / "ncs", make_data(rng, n=(8, 4, 4)))
    training = ["--task", "ncs", "--data", str(folder), "--epochs", "1", "--batch-size", "4",
                "--n-base-filters", "2", "--input-shape", "16", "16", "8", "--no-augment",
                "--verbose", "0"]
    capsys.readouterr()
    assert main(["finetune", "--init", "denoising", "--weights", str(weights), "--out",
                 str(tmp_path / "ft"), *training]) == 0
    saved = json.loads((tmp_path / "ft" / "results.json").read_text(encoding="utf-8"))
    assert saved["init"] == "denoising" and saved["weights"] == str(weights)
    # The same file as a jigsaw encoder: one line, exit 2, before training.
    assert main(["finetune", "--init", "jigsaw", "--weights", str(weights), "--out",
                 str(tmp_path / "ft2"), *training]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "whole U-Net" in err[0] and not (tmp_path / "ft2").exists()
