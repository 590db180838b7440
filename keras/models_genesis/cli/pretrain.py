"""`models-genesis pretrain`: pre-train on the restoration proxy task (`training.pretrain`).

Every `PretrainConfig` field is an option (`--batch-size`, `--learning-rate`, ...); options given
override the chosen `--preset` (`release`, the default, or `demo`). Optional numbers take `none`
to clear them (e.g. `--steps-per-epoch none`: one epoch = all training cubes).
"""

from __future__ import annotations

import argparse
import dataclasses

# Options with a name other than the field's.
_RENAMED = {"data_dir": ("--data", "--data-dir"), "out_dir": ("--out", "--out-dir")}
_HELP = {
    "data_dir": "folder of cube files bat_{scale}_s_{r}x{c}x{d}_{subset}.npy",
    "out_dir": "run folder (config, weights, logs, figures); rerun to resume after a kill",
    "scheme": "genesis (combined) or one ablation scheme",
    "mixed_precision": "bf16 or fp16 (float32 outputs and loss); none for float32",
    "strategy": "tf.distribute strategy (TensorFlow backend)",
    "weights": "initial weights: Keras 2 .h5, Keras 3 .weights.h5 or a preset name",
    "keras2_weights_name": "file name of the best weights in the Keras 2 layout",
}


def _optional(kind):
    def parse(text):
        return None if text.lower() == "none" else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _add_field(parser, f) -> None:
    from models_genesis.config import MIXED_PRECISION, PRETRAIN_SCHEMES, STRATEGIES

    flags = _RENAMED.get(f.name, ("--" + f.name.replace("_", "-"),))
    kw = dict(dest=f.name, default=argparse.SUPPRESS,
              help=f"{_HELP.get(f.name, f.name.replace('_', ' '))} (release: {f.default!r})")
    kind = str(f.type)
    if f.name == "scheme":
        kw["choices"] = PRETRAIN_SCHEMES
    elif f.name == "strategy":
        kw["choices"] = STRATEGIES
    elif f.name == "mixed_precision":
        kw.update(type=_optional(str), choices=[*MIXED_PRECISION, None])
    elif kind == "bool":
        kw["action"] = argparse.BooleanOptionalAction
    elif f.name == "cube_shape":
        kw.update(type=int, nargs=3, metavar=("R", "C", "D"))
    elif kind.startswith("Tuple"):
        kw.update(nargs="+", metavar="SUBSET")
    elif kind in ("int", "Optional[int]"):
        kw["type"] = int if kind == "int" else _optional(int)
    elif kind == "float":
        kw["type"] = float
    elif kind == "Optional[str]":
        kw["type"] = _optional(str)
    parser.add_argument(*flags, **kw)


def config_from_args(args):
    """The `PretrainConfig` of parsed arguments: the preset, with the options given replacing it."""
    from models_genesis.config import PretrainConfig

    names = {f.name for f in dataclasses.fields(PretrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    return PretrainConfig.preset(args.preset, **overrides)


def _pretrain(args) -> int:
    from models_genesis.training.pretrain import pretrain

    config = config_from_args(args)
    result = pretrain(config, resume=args.resume, overwrite=args.overwrite)
    paths = result["paths"]
    print(f"best weights: {paths['best_weights']} and {paths['keras2_weights']}")
    print(f"run folder: {paths['out_dir']} (metrics: {paths['metrics']})")
    return 0


def register(subparsers) -> None:
    from models_genesis.config import PRETRAIN_PRESETS, PretrainConfig

    p = subparsers.add_parser(
        "pretrain", help="pre-train Models Genesis (restoration proxy task) on cube files",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRETRAIN_PRESETS), default="release",
                   help="starting values: release (the paper's) or demo (phantoms, 2 CPU cores)")
    p.add_argument("--resume", action="store_true",
                   help="train a finished run in --out further (e.g. with more --epochs)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete a previous run's outputs in --out and start over")
    for f in dataclasses.fields(PretrainConfig):
        _add_field(p, f)
    p.set_defaults(func=_pretrain)
