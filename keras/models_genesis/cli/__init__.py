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
import re
import sys
import tempfile

from models_genesis.config import CONFIG_RANGES, SIDE_RANGE, SPACING_RANGE, Range

# One module per pipeline stage; each defines `register(subparsers)`.
COMMAND_MODULES = (
    "models_genesis.cli.model",
    "models_genesis.cli.data",
    "models_genesis.cli.pretrain",
    "models_genesis.cli.experiment",
    "models_genesis.cli.compare2d",
    "models_genesis.cli.prepare",
)

# Commands that never import Keras (the others import it quietly before their handler runs).
NO_BACKEND_COMMANDS = ("make-phantoms", "extract-cubes", "prepare", "extract-xray-crops")

# absl/TF C++ log lines: the preamble, and `I0000 00:00:1796026807.313467  7279 port.cc:153]`.
_NATIVE_LOG_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
_NATIVE_LOG_LINE = re.compile(r"^([IWE])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")

# Errors that describe the user's input, output or settings; anything else is a bug.
# (KeyError comes from CSV columns and dictionaries of names; OSError includes
# FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError.)
USER_ERRORS = (ValueError, TypeError, OSError, KeyError, FloatingPointError)


class UserError(Exception):
    """An error a command reports as one line (exit 2), whatever its cause."""


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line `models-genesis CMD: error: ...`
    (exit 2), like the commands' own errors; `--help` shows the usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} "
                  "--help)\n")


# Ranges of the options that are no config field (shared by several commands).
RANGES = {**CONFIG_RANGES, "side": SIDE_RANGE, "spacing": SPACING_RANGE,
          "runs": Range(int, 1, 1000), "subsets": Range(int, 1, 1000),
          "n_scans": Range(int, 1, 100_000), "fraction": Range(float, 0, 1, lo_open=True),
          "threshold": Range(float, 0, 1, lo_open=True, hi_open=True),
          "overlap": Range(float, 0, 1, hi_open=True),
          "crop_scale": Range(float, 0, 100, lo_open=True), "channels": Range(int, 1, 64),
          "block": Range(int, 0, 13),
          "processes": Range(int, 1, 1024)}


def ranged(rng, *, optional: bool = False):
    """An argparse `type` parsing a number in `rng` (a `models_genesis.config.Range`).

    A value outside it (0 where a count must be positive, a negative, a huge number, NaN) is
    refused while the command line is parsed, before any work. `optional`: `none` gives None.
    The `Range` is kept on the function (`.range`), for tests that feed every option bad values.
    """

    return rng.argtype(optional=optional)


# How the placement checks (`training.devices`) name the options on the command line.
PLACEMENT_FLAGS = {"devices": "--devices", "batch_size": "--batch-size",
                   "mixed_precision": "--mixed-precision", "parallel_runs": "--parallel-runs"}


def devices_type(text):
    """argparse type of `--devices`: a positive integer or `auto`."""
    from models_genesis.config import parse_devices

    try:
        return parse_devices(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'auto', got {text!r}") from None


def _error_text(exc: BaseException) -> str:
    """The error as one line: a library's multi-line message (e.g. Keras listing the weights
    that do not fit) is cut after its first line; `--debug` shows all of it."""
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])  # str(KeyError) adds quotes around the message
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename!r}"
    else:
        text = str(exc) or type(exc).__name__
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1:
        return f"{lines[0].rstrip(':')} [... {len(lines) - 1} more lines: --debug shows them]"
    return lines[0] if lines else type(exc).__name__


def quiet_native_logs() -> None:
    """Keep TensorFlow's C++ log lines (`I0000 ...`, oneDNN notices) off the user's terminal.

    Set before TensorFlow is imported; a user's own TF_CPP_MIN_LOG_LEVEL wins.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS_LOG", "0")


def _is_native_noise(line: str, min_level: int) -> bool:
    if line.startswith(_NATIVE_LOG_PREAMBLE):
        return min_level > 0
    match = _NATIVE_LOG_LINE.match(line)
    return bool(match) and "IWE".index(match.group(1)) < min_level


def import_keras_quietly() -> None:
    """Import Keras (hence TensorFlow) with TF's import-time C++ log lines filtered out.

    TensorFlow 2.21 logs `I0000 ... oneDNN custom operations are on` and `Could not find cuda
    drivers` through absl before TF_CPP_MIN_LOG_LEVEL is read, so the level alone does not hide
    them. The import runs with the process' stderr (file descriptor 2) sent to a temporary file;
    afterwards every line below TF_CPP_MIN_LOG_LEVEL (I=0, W=1, E=2) is dropped and the rest
    (Python warnings, fatal errors) is written to stderr.
    """
    if "keras" in sys.modules:
        return
    try:
        min_level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
        sys.stderr.flush()
        saved = os.dup(2)
    except (ValueError, OSError):
        import keras  # noqa: F401  (no file descriptor 2 to filter: import plainly)
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept, dropped = [], False
            for line in text.splitlines(keepends=True):
                # A dropped record's continuation (cpu_feature_guard's second line) goes too.
                dropped = _is_native_noise(line, min_level) or (
                    dropped and line.startswith("To enable the following instructions"))
                if not dropped:
                    kept.append(line)
            if kept:
                sys.stderr.write("".join(kept))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (one line, exit 2) or --help (exit 0)
        return exc.code if isinstance(exc.code, int) else 2
    if not args.debug:
        quiet_native_logs()
    try:
        if args.command not in NO_BACKEND_COMMANDS:
            import_keras_quietly()
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
