"""`models-genesis pretrain`: pre-train on a proxy task (`training.pretrain`).

Every `PretrainConfig` field is an option (`--batch-size`, `--learning-rate`, ...); options given
override the chosen `--preset` (`release`, the default, or `demo`). Optional numbers take `none`
to clear them (e.g. `--steps-per-epoch none`: one epoch = all training cubes).

`--method` picks the proxy task (genesis, or a baseline of Table 3: denoising, inpainting,
patch_shuffling, jigsaw, rubik, deepcluster); `--option KEY=VALUE` (repeated) sets one of the
method's options, e.g. `--method inpainting --option loss_region=whole` (App. C.2) or
`--scheme outer_cutout --option outer_min_cut=1,7` (App. C.3's cutout sizes). config.json
records every option's value.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os

from models_genesis.cli import UserError
from models_genesis.outputs import claim_output_dir

# Options with a name other than the field's.
_RENAMED = {"data_dir": ("--data", "--data-dir"), "out_dir": ("--out", "--out-dir")}
_HELP = {
    "data_dir": "folder of cube files bat_{scale}_s_{r}x{c}x{d}_{subset}.npy",
    "out_dir": "run folder (config, weights, logs, figures); rerun to resume after a kill",
    "scheme": "genesis (combined), identity, nonlinear, local_shuffling, outer_cutout, "
              "inner_cutout, or transformations joined with + (nonlinear+local_shuffling); "
              "method genesis only; sizes of the release by default, of the paper text with "
              "--option preset=paper_text (docs/methods.md)",
    "method": "pre-training method (proxy task)",
    "mixed_precision": "bf16 or fp16 (float32 outputs and loss); none for float32",
    "strategy": "tf.distribute strategy (TensorFlow backend)",
    "weights": "initial weights: Keras 2 .h5, Keras 3 .weights.h5 or a preset name",
    "keras2_weights_name": "file name of the best weights in the Keras 2 layout",
    "optimizer": "sgd or adam; default: the method's own (docs/methods.md)",
    "learning_rate": "default: the method's own (genesis: 1.0; docs/methods.md)",
    "momentum": "SGD momentum; default: the method's own",
    "weight_decay": "default: the method's own (deepcluster: 1e-5)",
    "schedule": "plateau (release: LR plateau, early stopping, best val_loss kept) or fixed "
                "(all epochs, last weights kept); default: the method's own",
    "dims": "3: cubes, unet_model_3d; 2: slices or radiographs one voxel deep (--cube-shape R C 1), "
            "unet_model_2d, exported as Genesis_Chest_CT_2D.h5",
}


def _optional(kind):
    def parse(text):
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _add_field(parser, f) -> None:
    from models_genesis.config import (CONFIG_RANGES, METHOD_NAMES, MIXED_PRECISION, SIDE_RANGE,
                                       STRATEGIES)

    flags = _RENAMED.get(f.name, ("--" + f.name.replace("_", "-"),))
    kw = dict(dest=f.name, default=argparse.SUPPRESS,
              help=f"{_HELP.get(f.name, f.name.replace('_', ' '))} (release: {f.default!r})")
    kind = str(f.type)
    if f.name == "method":
        kw["choices"] = METHOD_NAMES
    elif f.name == "scheme":
        kw.update(type=_scheme, metavar="SCHEME")
    elif f.name == "strategy":
        kw["choices"] = STRATEGIES
    elif f.name == "mixed_precision":
        kw.update(type=_optional(str), choices=[*MIXED_PRECISION, None])
    elif kind == "bool":
        kw["action"] = argparse.BooleanOptionalAction
    elif f.name == "cube_shape":
        kw.update(type=SIDE_RANGE.argtype(), nargs=3, metavar=("R", "C", "D"))
    elif f.name == "dims":
        kw.update(type=int, choices=(2, 3))
    elif kind.startswith("Tuple"):
        kw.update(nargs="+", metavar="SUBSET")
    elif kind in ("int", "Optional[int]", "float", "Optional[float]"):  # every number has its range
        kw["type"] = CONFIG_RANGES[f.name].argtype(optional=kind.startswith("Optional"))
    elif kind == "Optional[str]":
        kw["type"] = _optional(str)
    parser.add_argument(*flags, **kw)


def _scheme(text):
    """argparse type of `--scheme`: a named scheme or transformations joined with '+'."""
    from models_genesis.transformations.unified import SCHEMES, TRANSFORMATIONS, TransformConfig

    try:
        TransformConfig.for_scheme(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(SCHEMES)}, or transformations of "
            f"{', '.join(TRANSFORMATIONS)} joined with '+')") from None
    return text


def config_from_args(args):
    """The `PretrainConfig` of parsed arguments: the preset, with the options given replacing it."""
    from models_genesis.config import PretrainConfig

    from models_genesis.methods import parse_option_args

    names = {f.name for f in dataclasses.fields(PretrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    if "method_options" in overrides:  # `--option KEY=VALUE` strings
        overrides["method_options"] = parse_option_args(overrides["method_options"])
    return PretrainConfig.preset(args.preset, **overrides)


def _pretrain(args) -> int:
    from models_genesis.training.pretrain import pretrain

    config = config_from_args(args)
    claim_output_dir(config.out_dir, "pretrain", overwrite=args.overwrite,
                     legacy=lambda folder: os.path.isfile(os.path.join(folder, "config.json")),
                     inputs=[("--data", config.data_dir)])
    result = pretrain(config, resume=args.resume, overwrite=args.overwrite)
    paths = result["paths"]
    print(f"best weights: {paths['best_weights']} and {paths['keras2_weights']}")
    print(f"run folder: {paths['out_dir']} (metrics: {paths['metrics']})")
    check_not_diverged(result.get("metrics") or {}, paths)
    return 0


def check_not_diverged(metrics: dict, paths: dict) -> None:
    """Raise `UserError` when the model restores worse than doing nothing and than a constant.

    Such "best weights" are of a diverged run (e.g. SGD at a huge learning rate): a command that
    exits 0 would let them pass for pre-trained weights.
    """
    model, identity = metrics.get("model_mse"), metrics.get("identity_mse")
    constant = metrics.get("constant_mse")
    if None in (model, identity, constant):
        return
    if math.isfinite(model) and not (model > identity and model > constant):
        return
    raise UserError(
        f"pre-training diverged: the validation MSE of the model ({model:.6g}) is worse than "
        f"returning the transformed input ({identity:.6g}) and than the best constant "
        f"({constant:.6g}), so the weights in {paths['out_dir']!r} restore nothing. Lower "
        "--learning-rate or use --optimizer adam, and rerun with --overwrite.")


def register(subparsers) -> None:
    from models_genesis.config import PRETRAIN_PRESETS, PretrainConfig

    p = subparsers.add_parser(
        "pretrain", help="pre-train on cube files: Models Genesis (restoration) or another "
        "self-supervised method (--method)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRETRAIN_PRESETS), default="release",
                   help="starting values: release (the paper's) or demo (phantoms, 2 CPU cores); "
                   "release_2d / demo_2d: the same for Genesis 2D (--dims 2; 64x64 / 32x32 slices)")
    p.add_argument("--resume", action="store_true",
                   help="train a finished run in --out further (e.g. with more --epochs)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete a previous run's outputs in --out and start over")
    for f in dataclasses.fields(PretrainConfig):
        if f.name != "method_options":
            _add_field(p, f)
    p.add_argument("--option", dest="method_options", action="append", metavar="KEY=VALUE",
                   default=argparse.SUPPRESS,
                   help="an option of --method (repeatable), e.g. sigma_max=0.2, "
                   "loss_region=whole, outer_min_cut=1,7; an unknown key is refused with the "
                   "valid ones")
    p.set_defaults(func=_pretrain)
