"""`models-genesis pretrain`: every config field is an option, presets, and a tiny run."""

import argparse
import dataclasses
import os

import numpy as np
import pytest

from models_genesis.cli import build_parser, main
from models_genesis.cli.pretrain import config_from_args
from models_genesis.config import PretrainConfig
from models_genesis.data.io.cube_files import cube_file_name, save_cubes


def _pretrain_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices["pretrain"]


def test_every_config_field_is_an_option():
    _, sub = _pretrain_parser()
    dests = {a.dest for a in sub._actions}
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    assert fields <= dests, fields - dests
    assert {"preset", "resume", "overwrite"} <= dests


def test_options_override_the_preset():
    parser, _ = _pretrain_parser()
    args = parser.parse_args([
        "pretrain", "--data", "cubes", "--out", "run", "--preset", "demo", "--batch-size", "3",
        "--steps-per-epoch", "none", "--train-subsets", "0", "1", "--cube-shape", "16", "16", "16",
        "--no-figures", "--mixed-precision", "bf16", "--strategy", "mirrored", "--scheme",
        "nonlinear", "--learning-rate", "0.5", "--weights", "w.h5"])
    config = config_from_args(args)
    demo = PretrainConfig.preset("demo")
    assert config == dataclasses.replace(
        demo, data_dir="cubes", out_dir="run", batch_size=3, steps_per_epoch=None,
        train_subsets=("0", "1"), cube_shape=(16, 16, 16), figures=False, mixed_precision="bf16",
        strategy="mirrored", scheme="nonlinear", learning_rate=0.5, weights="w.h5")
    release = config_from_args(parser.parse_args(["pretrain", "--data", "d", "--out", "o"]))
    assert release == PretrainConfig(data_dir="d", out_dir="o")


@pytest.mark.parametrize("argv", [["--scheme", "jigsaw"], ["--strategy", "tpu"],
                                  ["--mixed-precision", "fp8"]])
def test_unknown_choices_are_refused(argv, capsys):
    assert main(["pretrain", "--data", "d", "--out", "o", *argv]) == 2  # a usage error, one line
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.large
def test_tiny_run_then_refusal_of_the_finished_run(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "cubes"
    for s in range(7):
        save_cubes(os.path.join(data, cube_file_name(4, (16, 16, 16), s)),
                   rng.random((4, 16, 16, 16), dtype=np.float32))
    out = tmp_path / "run"
    argv = ["pretrain", "--data", str(data), "--out", str(out), "--cube-shape", "16", "16", "16",
            "--n-base-filters", "2", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch",
            "2", "--validation-steps", "1", "--no-tensorboard", "--no-figures",
            "--keras2-weights-name", "tiny_genesis.h5", "--workers", "0"]
    assert main(argv) == 0
    assert (out / "tiny_genesis.h5").is_file() and (out / "best.weights.h5").is_file()
    assert PretrainConfig.from_json(out / "config.json").n_base_filters == 2
    capsys.readouterr()
    assert main(argv) == 2
    assert "finished pre-training run" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r2"),
                 "--cube-shape", "16", "16", "16"]) == 2
    assert "Cube folder not found" in capsys.readouterr().err
