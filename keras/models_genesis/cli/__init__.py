"""The `models-genesis` command: a thin argparse wrapper over the package's functions.

Each stage of the pipeline registers its subcommands from its own module (`register(subparsers)`),
which imports heavy libraries only inside the handler, so `models-genesis --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# One module per pipeline stage; each defines `register(subparsers)`.
COMMAND_MODULES = (
    "models_genesis.cli.model",
    "models_genesis.cli.data",
    "models_genesis.cli.pretrain",
    "models_genesis.cli.experiment",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="models-genesis",
        description="Models Genesis for Keras 3: self-supervised 3D pre-training by image "
        "restoration, fine-tuning and evaluation on the five target tasks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
