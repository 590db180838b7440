"""The `models-genesis` command: a thin argparse wrapper over the package's functions.

Each stage of the pipeline registers its subcommands from its own module (`register(subparsers)`),
which imports heavy libraries only inside the handler, so `models-genesis --help` is instant.

A user's mistake never ends in a traceback: `main` turns the errors that describe inputs, outputs
and settings (`UserError` and the built-in errors listed in `USER_ERRORS`) into one line
`models-genesis CMD: error: ...` and exit status 2, like argparse's own usage errors. A real bug
still shows its traceback, and `--debug` shows it for every error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# One module per pipeline stage; each defines `register(subparsers)`.
COMMAND_MODULES = (
    "models_genesis.cli.model",
    "models_genesis.cli.data",
    "models_genesis.cli.pretrain",
    "models_genesis.cli.experiment",
)

# Errors that describe the user's input, output or settings; anything else is a bug.
# (KeyError comes from CSV columns and dictionaries of names; OSError includes
# FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError.)
USER_ERRORS = (ValueError, TypeError, OSError, KeyError, FloatingPointError)


class UserError(Exception):
    """An error a command reports as one line (exit 2), whatever its cause."""


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])  # str(KeyError) adds quotes around the message
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {exc.filename!r}"
    return str(exc) or type(exc).__name__


def quiet_native_logs() -> None:
    """Keep TensorFlow's C++ log lines (`I0000 ...`, oneDNN notices) off the user's terminal.

    Set before TensorFlow is imported; a user's own TF_CPP_MIN_LOG_LEVEL wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS_LOG", "0")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="models-genesis",
        description="Models Genesis for Keras 3: self-supervised 3D pre-training by image "
        "restoration, fine-tuning and evaluation on the five target tasks.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of every error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        quiet_native_logs()
    try:
        result = args.func(args)
    except (UserError, *USER_ERRORS) as exc:
        if args.debug:
            raise
        print(f"models-genesis {args.command}: error: {_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"models-genesis {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
