"""Encoder methods end to end (jigsaw, rubik, deepcluster): `pretrain --method M` writes the
encoder `depth_0..7` that `finetune --init M --weights FILE` loads."""

import json

import numpy as np
import pytest

from models_genesis.cli import main
from models_genesis.config import FinetuneConfig, PretrainConfig
from models_genesis.methods import encoder_layer_names, make_options
from models_genesis.models.weights import read_keras2_weights
from models_genesis.training.finetune_model import build_finetune_model
from models_genesis.training.pretrain import pretrain
from tests.methods.restoration_helpers import write_cube_files
from tests.helpers import make_data, write_release_arrays

CUBE = (32, 32, 32)  # the smallest cubes a depth-4 Jigsaw takes are 30 a side
TARGET = (16, 16, 8)


def _encoder_only(path):
    stored = read_keras2_weights(path)
    assert list(stored) == encoder_layer_names(4)  # depth_0..7 conv/bn, no decoder, no head
    return stored


@pytest.mark.large
def test_cli_pretrain_jigsaw_writes_what_finetune_init_jigsaw_loads(tmp_path, capsys):
    rng = np.random.default_rng(0)
    cubes = write_cube_files(tmp_path / "cubes", rng, n=4, shape=CUBE)
    out = tmp_path / "pre"
    assert main(["pretrain", "--method", "jigsaw", "--option", "n_permutations=10", "--option",
                 "patch_units=8", "--option", "fc_units=16", "--data", cubes, "--out", str(out),
                 "--cube-shape", *map(str, CUBE), "--n-base-filters", "2", "--batch-size", "4",
                 "--preset", "demo", "--epochs", "1", "--steps-per-epoch", "2",
                 "--validation-steps", "1", "--no-tensorboard", "--no-figures",
                 "--workers", "0"]) == 0
    chance = f"chance level (jigsaw): {{'loss': {np.log(10)}, 'accuracy': 0.1}}"
    assert chance in capsys.readouterr().out
    stored = _encoder_only(out / "jigsaw.h5")
    config = PretrainConfig.from_json(out / "config.json")
    assert config.method_options == {"n_permutations": 10, "patch_fraction": 0.85,
                                     "permutation_seed": 0, "n_candidates": 10000,
                                     "patch_units": 8, "fc_units": 16}

    folder = write_release_arrays(tmp_path / "ncs", make_data(rng, n=(8, 4, 4)))
    assert main(["finetune", "--init", "jigsaw", "--weights", str(out / "jigsaw.h5"), "--out",
                 str(tmp_path / "ft"), "--task", "ncs", "--data", str(folder), "--epochs", "1",
                 "--batch-size", "4", "--n-base-filters", "2", "--input-shape", "16", "16", "8",
                 "--no-augment", "--verbose", "0"]) == 0
    saved = json.loads((tmp_path / "ft" / "results.json").read_text(encoding="utf-8"))
    assert saved["init"] == "jigsaw"
    model = build_finetune_model(FinetuneConfig(task="ncs", init="jigsaw", n_base_filters=2,
                                                weights=str(out / "jigsaw.h5")),
                                 "segmentation", TARGET, str(out / "jigsaw.h5"))
    for name, arrays in stored.items():
        for a, b in zip(model.get_layer(name).get_weights(), arrays):
            np.testing.assert_array_equal(a, b)


@pytest.mark.large
@pytest.mark.parametrize("method, options", [
    ("rubik", {"n_permutations": 10, "patch_units": 8}),
    ("deepcluster", {"n_clusters": 4, "fc_units": 8, "pca_dims": 4}),
])
def test_pretrain_writes_the_encoder_and_records_the_options(method, options, tmp_path, capsys):
    data = write_cube_files(tmp_path / "cubes", np.random.default_rng(0), n=4, shape=CUBE)
    config = PretrainConfig.preset(
        "demo", data_dir=data, out_dir=str(tmp_path / "run"), cube_shape=CUBE, method=method,
        method_options=options, n_base_filters=2, batch_size=4, epochs=2, steps_per_epoch=2,
        validation_steps=1, tensorboard=False, sample_every=0, figures=False,
        optimizer=None, learning_rate=None)  # the method's own, not the demo's Adam 1e-3
    result = pretrain(config, verbose=0)
    out = capsys.readouterr().out
    assert f"chance level ({method})" in out and f"proxy task ({method})" in out
    _encoder_only(result["paths"]["keras2_weights"])
    stored = PretrainConfig.from_json(result["paths"]["config"])
    assert make_options(method, stored.method_options) == make_options(method, options)
    assert np.isfinite(result["metrics"]["loss"])
    own = {"rubik": ("adam", 1e-4, "plateau"), "deepcluster": ("sgd", 0.05, "fixed")}[method]
    assert (stored.optimizer, stored.learning_rate, stored.schedule) == own
    assert result["metrics"]["n_val"] == 4 and "chance_level" in result["metrics"]
    if method == "deepcluster":  # a fixed schedule keeps the last epoch's weights
        assert result["epochs"] == 2 and result["best_epoch"] == 1
