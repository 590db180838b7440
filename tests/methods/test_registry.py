"""The methods registry, options from dicts and the CLI, and genesis' composed schemes."""

import dataclasses
import importlib

import numpy as np
import pytest

from models_genesis.config import PretrainConfig
from models_genesis.methods import (
    METHODS, encoder_layer_names, get_method, make_options, option_names, parse_option_args,
)
from models_genesis.transformations.unified import TransformConfig, genesis_transform

INTERFACE = ("NAME", "WRITES", "Options", "check", "make_dataset", "build_model", "loss",
             "metrics", "callbacks", "chance_level")


@pytest.mark.parametrize("name", ["genesis", "denoising", "inpainting", "patch_shuffling"])
def test_restoration_methods_expose_the_interface(name):
    module = get_method(name)
    assert all(hasattr(module, attr) for attr in INTERFACE)
    assert module.NAME == name and module.WRITES == "unet"
    assert dataclasses.is_dataclass(make_options(name))


def test_unknown_method_and_options_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="Valid methods: .*denoising"):
        get_method("autoencoder")
    with pytest.raises(ValueError, match=r"\['max_boxes'\] of method 'denoising'.*sigma_max"):
        make_options("denoising", {"max_boxes": 3})
    with pytest.raises(ValueError, match="method 'genesis' only"):
        make_options("inpainting", scheme="nonlinear")
    with pytest.raises(ValueError, match="sigma_min"):
        make_options("denoising", {"sigma_min": 0.2, "sigma_max": 0.1})
    with pytest.raises(ValueError, match="`method` must be one of"):
        PretrainConfig(method="autoencoder")
    with pytest.raises(ValueError, match="method 'genesis' only"):
        PretrainConfig(method="denoising", scheme="nonlinear")
    assert set(METHODS) >= {"genesis", "denoising", "inpainting", "patch_shuffling"}


def test_options_from_the_cli_and_json():
    values = parse_option_args(["outer_min_cut=1,7", "paint_prob=1", "loss_region=whole",
                                "clip=true"])
    assert values == {"outer_min_cut": (1, 7), "paint_prob": 1, "loss_region": "whole",
                      "clip": True}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_option_args(["sigma_max"])
    # JSON lists come back as tuples; genesis' options are its TransformConfig, scheme first.
    config = make_options("genesis", {"outer_min_cut": [1, 7]}, scheme="outer_cutout")
    assert config == TransformConfig.for_scheme("outer_cutout", outer_min_cut=(1, 7))
    assert config.paint_prob == 1.0 and config.inpaint_rate == 0.0
    assert "loss_region" in option_names("inpainting")
    assert encoder_layer_names()[:2] == ["depth_0_conv", "depth_0_bn"]
    assert encoder_layer_names()[-1] == "depth_7_bn" and len(encoder_layer_names()) == 16


@pytest.mark.parametrize("scheme, applied", [
    ("nonlinear+local_shuffling", {"local_shuffling", "nonlinear"}),
    ("local_shuffling+outer_cutout", {"local_shuffling", "outer_cutout"}),
    ("nonlinear+inner_cutout", {"nonlinear", "inner_cutout"}),
])
def test_composed_schemes_apply_exactly_their_transformations(scheme, applied, rng):
    config = TransformConfig.for_scheme(scheme, flip_prob=0.0)
    cube = rng.random((16, 16, 16), dtype=np.float32)
    for _ in range(5):
        _, _, done = genesis_transform(cube, rng=rng, config=config, return_applied=True)
        assert {k for k, v in done.items() if k != "flip_axes" and v} == applied


def test_both_cutouts_paint_every_pair_with_the_release_split(rng):
    config = TransformConfig.for_scheme("inner_cutout+outer_cutout")
    assert (config.paint_prob, config.inpaint_rate) == (1.0, 0.2)
    assert config.local_prob == config.nonlinear_prob == 0.0
    with pytest.raises(ValueError, match="Unknown scheme"):
        TransformConfig.for_scheme("nonlinear+nonlinear")
    with pytest.raises(ValueError, match="Unknown scheme"):
        TransformConfig.for_scheme("genesis+nonlinear")


def test_transformation_defaults_live_in_their_modules():
    # import_module: the package re-exports functions under the modules' names.
    inner = importlib.import_module("models_genesis.transformations.inner_cutout")
    local = importlib.import_module("models_genesis.transformations.local_shuffling")
    _checks = importlib.import_module("models_genesis.transformations._checks")
    config = TransformConfig()
    assert config.inner_max_boxes == inner.MAX_BOXES and config.margin == _checks.MARGIN
    assert config.local_windows == local.N_WINDOWS
    assert make_options("inpainting").max_size == inner.MAX_SIZE


def test_a_custom_transform_config_is_a_pretrain_option():
    custom = TransformConfig(outer_min_cut=(1, 7), outer_max_cut=(2, 7), inpaint_rate=0.0)
    config = PretrainConfig(method_options=custom)
    assert isinstance(config.method_options, dict)
    assert make_options("genesis", config.method_options, scheme=config.scheme) == custom
    assert PretrainConfig.from_dict(config.to_dict()) == config


def test_cli_options_reach_the_config(capsys):
    from models_genesis.cli import build_parser, main
    from models_genesis.cli.pretrain import config_from_args

    args = build_parser().parse_args([
        "pretrain", "--data", "d", "--out", "o", "--scheme", "outer_cutout", "--option",
        "outer_min_cut=1,7", "--option", "outer_max_cut=2,7"])
    config = config_from_args(args)
    assert config.method_options == {"outer_min_cut": (1, 7), "outer_max_cut": (2, 7)}
    assert make_options("genesis", config.method_options, scheme=config.scheme) == \
        TransformConfig.for_scheme("outer_cutout", outer_min_cut=(1, 7), outer_max_cut=(2, 7))
    args = build_parser().parse_args(["pretrain", "--data", "d", "--out", "o", "--method",
                                      "inpainting", "--option", "loss_region=whole"])
    assert config_from_args(args).method_options == {"loss_region": "whole"}
    # An option of another method: one line, exit 2, before any file is read.
    assert main(["pretrain", "--data", "nowhere", "--out", "o", "--method", "denoising",
                 "--option", "loss_region=whole"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "['loss_region'] of method 'denoising'" in err[0]


def test_genesis_takes_the_paper_text_preset_with_any_scheme():
    composed = make_options("genesis", {"preset": "paper_text", "local_prob": 0.7},
                            scheme="nonlinear")
    assert (composed.local_windows, composed.local_prob, composed.nonlinear_prob) == (1000, 0.7, 1.0)
    assert make_options("genesis", {"preset": "release"}) == make_options("genesis")
    with pytest.raises(ValueError, match="Valid presets"):
        make_options("genesis", {"preset": "text"})
    with pytest.raises(ValueError, match="Unknown option"):
        make_options("jigsaw", {"preset": "paper_text"})
