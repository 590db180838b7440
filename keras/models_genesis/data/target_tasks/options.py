"""The target-task loaders' options, for the command line: one table, checked against the loaders.

`LOADER_OPTIONS` lists every option a user may need on the command line (the loader keyword, its
flag, the tasks that take it, its type and help); a test checks that each option is a keyword of
every loader it names, so the table and the loaders cannot drift apart.

- `loader_options(task, data_dir, **values)`: the loader keywords from CLI values (None = unset),
  checked (an option the task does not take, a missing `split_dir`), e.g. for `FinetuneConfig`.
- `add_loader_arguments(parser)` / `options_from_args(task, args)`: build the flags from the table.

Example:
    >>> loader_options("ncc", "datasets/luna16", errors="skip", negative_ratio=5, spacing=None)
    {'errors': 'skip', 'negative_ratio': 5.0}
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from typing import Any, Dict, Optional, Sequence, Tuple

from models_genesis.config import CONFIG_RANGES, SPACING_RANGE, Range

ALL = ("ncc", "ncs", "ecc", "lcs", "bms")


@dataclass(frozen=True)
class LoaderOption:
    """One loader option.

    Attributes:
        name: the loader keyword (and argparse `dest`).
        flag: the command-line flag.
        tasks: the task codes whose loader takes it.
        type: `int`, `float`, `str`, or `"triple"` (three floats, e.g. a spacing in mm).
        help: one line for `--help` (the loader's default is stated there).
        choices: allowed values on the command line (`--on-error stop|skip`).
    """

    name: str
    flag: str
    tasks: Tuple[str, ...]
    type: Any
    help: str
    choices: Tuple[str, ...] = ()
    range: Optional[Range] = None


LOADER_OPTIONS: Tuple[LoaderOption, ...] = (
    LoaderOption("errors", "--on-error", ALL, str,
                 "stop at the first bad case (default) or skip it; skipped cases are listed in "
                 "the run's data info with the reason", ("stop", "skip", "raise")),
    LoaderOption("split_dir", "--split-dir", ("ecc", "bms"), str,
                 "folder of the release's split lists: ECC train_cv-k/val_cv-k/test_cv-k.csv, "
                 "BMS fold_1..3.csv (default: a seeded split)"),
    LoaderOption("fold", "--fold", ("ecc", "bms"), int,
                 "cross-validation fold 1-3 (BMS: the test fold, default 1; ECC: needs "
                 "--split-dir)", range=CONFIG_RANGES["fold"]),
    LoaderOption("negative_ratio", "--negative-ratio", ("ncc", "ecc"), float,
                 "false-positive candidates per true one in training and validation (default "
                 "10, drawn afresh each epoch from a prepared folder; 0 keeps all); the test "
                 "split keeps every candidate", range=Range(float, 0, 10_000)),
    LoaderOption("candidates_csv", "--candidates-csv", ("ncc", "ecc"), str,
                 "candidate CSV name or path (default candidates.csv; NCC also "
                 "candidates_V2.csv)"),
    LoaderOption("crops_per_volume", "--crops-per-volume", ("lcs", "bms"), int,
                 "training crops cut from each scan (default 16)", range=Range(int, 1, 10_000)),
    LoaderOption("positive_fraction", "--positive-fraction", ("lcs", "bms"), float,
                 "share of the crops centred on the foreground (default 0.5)", range=Range(float, 0, 1)),
    LoaderOption("valid_fraction", "--valid-fraction", ("bms",), float,
                 "share of the training patients held out for validation (default 0.1)",
                 range=Range(float, 0, 1, lo_open=True, hi_open=True)),
    LoaderOption("spacing", "--spacing", ("ncc", "ncs", "ecc", "lcs"), "triple",
                 "resample scans to this spacing in mm, X Y Z (default: NCS 1 1 1, others keep "
                 "each scan's grid)", range=SPACING_RANGE),
    LoaderOption("consensus_level", "--consensus-level", ("ncs",), float,
                 "LIDC-IDRI: share of a nodule's readers who must mark a voxel (default 0.5)",
                 range=Range(float, 0, 1, lo_open=True)),
    LoaderOption("min_readers", "--min-readers", ("ncs",), int,
                 "LIDC-IDRI: drop nodules marked by fewer readers (default 1; LIDC-IDRI has 4 "
                 "readers per scan)", range=Range(int, 1, 4)),
)
OPTIONS_BY_NAME: Dict[str, LoaderOption] = {o.name: o for o in LOADER_OPTIONS}


def task_options(task: str) -> Dict[str, LoaderOption]:
    """The options `task`'s loader takes (name -> `LoaderOption`)."""
    if task not in ALL:
        raise ValueError(f"`task` must be one of {list(ALL)}. Received: task={task!r}.")
    return {o.name: o for o in LOADER_OPTIONS if task in o.tasks}


def loader_options(task: str, data_dir=None, **values) -> Dict[str, Any]:
    """Loader keywords of `task` from command-line values; None values (unset) are left out.

    Args:
        task: task code.
        data_dir: the data folder (named in messages).
        **values: option name -> value, e.g. `errors="skip"` (`"stop"` means `"raise"`),
            `spacing=(1, 1, 1)`, `split_dir="splits/bms"`.

    Returns:
        dict of loader keywords, values converted (`spacing` a tuple of floats, numbers typed).

    Raises:
        ValueError: an unknown option, one `task` does not take, or a bad `errors` value.
        FileNotFoundError: `split_dir` is not a folder.
    """
    valid = task_options(task)
    out: Dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        option = OPTIONS_BY_NAME.get(name)
        if option is None:
            raise ValueError(f"Unknown loader option {name!r}; known: {sorted(OPTIONS_BY_NAME)}.")
        if name not in valid:
            raise ValueError(f"{option.flag} does not apply to {task} (only to "
                             f"{', '.join(option.tasks)}). Received: {option.flag} {value}.")
        if option.choices and value not in option.choices:
            raise ValueError(f"{option.flag} must be one of {list(option.choices)}. "
                             f"Received: {option.flag} {value}.")
        if name == "errors":
            value = "raise" if value == "stop" else value
        elif option.type == "triple":
            value = tuple(float(v) for v in value)
            if len(value) != 3:
                raise ValueError(f"{option.flag} takes 3 numbers (X Y Z). Received: {value}.")
        elif option.type in (int, float):
            value = option.type(value)
        if option.range is not None:  # the same range as on the command line
            for v in (value if isinstance(value, tuple) else (value,)):
                option.range.check(v, option.flag)
        if name == "split_dir" and not os.path.isdir(os.fspath(value)):
            raise FileNotFoundError(f"{option.flag} folder not found: {value} (data: {data_dir}).")
        out[name] = value
    return out


def add_loader_arguments(parser, names: Optional[Sequence[str]] = None) -> None:
    """Add the options (all, or `names`) to an argparse parser, each with default None."""
    for option in LOADER_OPTIONS:
        if names is not None and option.name not in names:
            continue
        kwargs: Dict[str, Any] = {"dest": option.name, "default": None,
                                  "help": f"{option.help} [{', '.join(option.tasks)}]"}
        if option.type == "triple":
            kwargs.update(type=option.range.argtype() if option.range else float, nargs=3,
                          metavar=("X", "Y", "Z"))
        else:
            kwargs["type"] = option.range.argtype() if option.range else option.type
        if option.choices:
            kwargs["choices"] = option.choices
        parser.add_argument(option.flag, **kwargs)


def options_from_args(task: str, args, data_dir=None) -> Dict[str, Any]:
    """`loader_options` for the flags `add_loader_arguments` added to an argparse namespace."""
    return loader_options(task, data_dir, **{o.name: getattr(args, o.name, None)
                                             for o in LOADER_OPTIONS})
