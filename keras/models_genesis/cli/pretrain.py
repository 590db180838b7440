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
import os
import warnings

from models_genesis.cli import PLACEMENT_FLAGS, UserError, devices_type
from models_genesis.outputs import claim_output_dir

# Options with a name other than the field's.
_RENAMED = {"data_dir": ("--data", "--data-dir"), "out_dir": ("--out", "--out-dir")}
# What each option does, for a user; `_add_field` appends the release's value and the demo
# preset's where it differs. Every field of `PretrainConfig` needs an entry (tests/cli check it).
_HELP = {
    "data_dir": "folder of cube files bat_{scale}_s_{r}x{c}x{d}_{subset}.npy, as written by "
                "extract-cubes",
    "out_dir": "run folder (config, weights, logs, figures); rerun the same command to resume "
               "after a kill",
    "cube_shape": "size of the training cubes in voxels, rows cols depth, each divisible by "
                  "2**(depth-1); must match the cube files",
    "dims": "3: cubes, unet_model_3d; 2: slices or radiographs one voxel deep (--cube-shape R C "
            "1), unet_model_2d, exported as Genesis_Chest_CT_2D.h5",
    "train_subsets": "subsets of the cube files to train on (the SUBSET of bat_*_SUBSET.npy)",
    "val_subsets": "subsets of the cube files to validate on; the best-validation weights are "
                   "kept",
    "scale": "cubes per scan in the cube file names to pick (bat_SCALE_s_...); none accepts "
             "the one scale found",
    "scheme": "genesis (combined), identity, nonlinear, local_shuffling, outer_cutout, "
              "inner_cutout, or transformations joined with + (nonlinear+local_shuffling); "
              "method genesis only; sizes of the release by default, of the paper text with "
              "--option preset=paper_text (docs/methods.md)",
    "method": "pre-training method (proxy task): genesis, or a self-supervised baseline of the "
              "paper's Table 3",
    "batch_size": "cubes per training step; lowered by 2 after a GPU out-of-memory error",
    "epochs": "maximum number of epochs; early stopping (--patience) usually ends the run "
              "sooner",
    "steps_per_epoch": "training steps per epoch; none: one pass over all training cubes",
    "validation_steps": "validation batches per epoch; none: one pass over all validation "
                        "cubes",
    "optimizer": "sgd (with --momentum) or adam; default: the method's own (docs/methods.md)",
    "learning_rate": "initial learning rate of the optimizer; default: the method's own "
                     "(genesis: 1.0; docs/methods.md)",
    "momentum": "momentum of SGD's updates; adam ignores it; default: the method's own",
    "weight_decay": "weight decay of the optimizer; default: the method's own (deepcluster: "
                    "1e-5)",
    "schedule": "plateau (the release: learning-rate plateau, early stopping, best val_loss "
                "kept) or fixed (every epoch, the last weights kept); default: the method's own",
    "loss": "restoration loss over the whole cube: mse (mean squared error) or mae",
    "lr_factor": "factor the learning rate is multiplied by when the validation loss stops "
                 "improving (ReduceLROnPlateau)",
    "lr_patience": "epochs without improvement of the validation loss before the learning rate "
                   "is lowered",
    "lr_min_delta": "smallest decrease of the validation loss that counts as an improvement for "
                    "the learning-rate schedule",
    "min_lr": "lowest learning rate the schedule goes down to",
    "patience": "epochs without improvement of the validation loss before training stops "
                "(early stopping)",
    "n_base_filters": "filters of the U-Net's first convolution; each level doubles them",
    "depth": "levels of the U-Net's encoder (each but the last followed by a 2x2x2 pooling)",
    "kernel_initializer": "Keras initialiser of the convolution kernels when no --weights are "
                          "given",
    "bn_momentum": "momentum of the BatchNorm moving statistics, in [0, 1); lower follows "
                   "recent batches faster (short runs)",
    "weights": "initial weights: Keras 2 .h5, Keras 3 .weights.h5 or a preset name; none "
               "starts from --kernel-initializer",
    "mixed_precision": "bf16 or fp16 computation (float32 outputs and loss); none for float32 "
                       "throughout",
    "strategy": "tf.distribute strategy to spread training over GPUs or machines (TensorFlow "
                "backend only): none, mirrored or multiworker",
    "workers": "threads (or processes) preparing transformed pairs while the model trains",
    "use_multiprocessing": "prepare pairs in worker processes instead of threads",
    "max_queue_size": "batches prepared ahead of the training step",
    "seed": "seed of the transformations' draws (batch i of epoch e from seed, e, i) and of "
            "the model's initial weights",
    "keras2_weights_name": "file name of the best weights in the Keras 2 layout, inside --out",
    "tensorboard": "write TensorBoard logs to --out/tensorboard (needs TensorFlow)",
    "sample_every": "save a PNG of input, restoration and original every N epochs (0: never)",
    "figures": "draw the restoration figures (per transformation combination, difference map) "
               "at the end of the run",
    "devices": "devices each batch is split over: N or auto (all present); JAX: "
               "keras.distribution.DataParallel, TensorFlow: MirroredStrategy over N devices; "
               "--batch-size must be divisible by N",
}


def _optional(kind):
    def parse(text):
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _value(value) -> str:
    """A preset's value as a user types it on the command line."""
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value)
    return str(value)


def _help(f) -> str:
    """The help of the option for the `PretrainConfig` field `f`: what it does, then the
    release's value and the demo preset's where it differs (an empty start when `_HELP` lacks
    the field, which the CLI's help test reports)."""
    from models_genesis.config import PRETRAIN_PRESETS

    values = f"release: {_value(f.default)}"
    demo = PRETRAIN_PRESETS["demo"].get(f.name, f.default)
    if demo != f.default:
        values += f"; demo preset: {_value(demo)}"
    return f"{_HELP.get(f.name, '')} ({values})"


def _add_field(parser, f) -> None:
    from models_genesis.config import (CONFIG_RANGES, METHOD_NAMES, MIXED_PRECISION, SIDE_RANGE,
                                       STRATEGIES)

    flags = _RENAMED.get(f.name, ("--" + f.name.replace("_", "-"),))
    kw = dict(dest=f.name, default=argparse.SUPPRESS, help=_help(f))
    kind = str(f.type)
    if f.name == "method":
        kw["choices"] = METHOD_NAMES
    elif f.name == "scheme":
        kw.update(type=_scheme, metavar="SCHEME")
    elif f.name == "strategy":
        kw["choices"] = STRATEGIES
    elif f.name == "devices":
        kw.update(type=devices_type, metavar="N|auto")
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
    from models_genesis.training.divergence import UndertrainedWarning
    from models_genesis.training.pretrain import pretrain

    from models_genesis.training.devices import check_options

    config = config_from_args(args)
    check_options(config.strategy, config.devices, config.batch_size, config.mixed_precision,
                  names=PLACEMENT_FLAGS)  # before any work, naming the flags
    claim_output_dir(config.out_dir, "pretrain", overwrite=args.overwrite,
                     legacy=lambda folder: os.path.isfile(os.path.join(folder, "config.json")),
                     inputs=[("--data", config.data_dir)])
    with warnings.catch_warnings():  # said below as one line, after the run's own output
        warnings.simplefilter("ignore", UndertrainedWarning)
        result = pretrain(config, resume=args.resume, overwrite=args.overwrite,
                          strict=args.strict)
    paths = result["paths"]
    print(f"best weights: {paths['best_weights']} and {paths['keras2_weights']}")
    print(f"run folder: {paths['out_dir']} (metrics: {paths['metrics']})")
    if result.get("status") == "undertrained":
        print(f"note: {result['status_message']} (--strict makes this an error)")
    return 0


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
    p.add_argument("--strict", action="store_true",
                   help="exit with an error (status 2) when the finished run restores worse "
                   "than doing nothing (undertrained); without it, a note says so and the "
                   "exit status is 0. A diverged run (NaN or rising loss) is always an error")
    for f in dataclasses.fields(PretrainConfig):
        if f.name != "method_options":
            _add_field(p, f)
    p.add_argument("--option", dest="method_options", action="append", metavar="KEY=VALUE",
                   default=argparse.SUPPRESS,
                   help="an option of --method (repeatable), e.g. sigma_max=0.2, "
                   "loss_region=whole, outer_min_cut=1,7; an unknown key is refused with the "
                   "valid ones")
    p.set_defaults(func=_pretrain)
