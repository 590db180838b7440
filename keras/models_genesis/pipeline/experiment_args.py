"""The arguments of an experiment: named initialisations, target tasks and their data.

`parse_methods` reads Table 3's rows (`he_uniform`, `genesis=FILE`, `genesis_nonlinear=FILE`
for Fig. 3's schemes, a bare `genesis` with `weights`); `check_args` validates everything
`run_experiment` takes before any file is written; `per_task` maps a data folder (or in-memory
data) to each task.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

import numpy as np

from models_genesis.config import METHOD_NAMES, SCRATCH_INITS, FinetuneConfig, get_target_task

# FinetuneConfig fields the experiment sets per run (not `overrides`).
RUN_FIELDS = ("task", "init", "weights", "seed", "label_fraction", "out_dir", "data_dir")


def fraction_key(value) -> float:
    return round(float(value), 6)


def parse_methods(inits, weights: Optional[str] = None) -> dict:
    """Named initialisations -> `{name: (init, weights or None)}`, in the given order.

    Args:
        inits: items `"he_uniform"` (a scratch baseline), `"NAME=FILE"` (pre-trained weights;
            the method is NAME, or the method NAME starts with followed by `_`, e.g.
            `genesis_nonlinear=FILE` is a genesis model), or a bare pre-training method such as
            `"genesis"` that takes `weights`; or a mapping `{name: file or None}`.
        weights: the weight file (or preset name) of the one bare pre-training method.

    Raises:
        ValueError: duplicate or unknown names, a scratch baseline with a file, a pre-training
            method without one, or `weights` claimed by several bare methods.
    """
    items = list(inits.items()) if isinstance(inits, Mapping) else [
        tuple(i.split("=", 1)) if "=" in str(i) else (str(i), None)
        for i in ([inits] if isinstance(inits, str) else list(inits))]
    names = [n for n, _ in items]
    if not items or len(set(names)) != len(names):
        raise ValueError(f"`inits` must name distinct initialisations. Received: inits={names}.")
    bare = [n for n, f in items if f is None and n not in SCRATCH_INITS]
    if len(bare) > 1:
        raise ValueError(f"{bare} all need weights; give each its file as NAME=FILE. "
                         f"Received: inits={names}, weights={weights!r}.")
    out = {}
    for name, path in items:
        matches = [m for m in METHOD_NAMES + SCRATCH_INITS if name == m or (
            path is not None and name.startswith(m + "_"))]
        if not name or not matches:
            raise ValueError(f"Unknown initialisation {name!r}: give a scratch init "
                             f"{list(SCRATCH_INITS)}, a method {list(METHOD_NAMES)}, or NAME=FILE "
                             f"with NAME a method or method_LABEL. Received: init={name!r}.")
        init = max(matches, key=len)
        if init in SCRATCH_INITS and path is not None:
            raise ValueError(f"{init!r} is a scratch baseline and takes no weights file. "
                             f"Received: {name}={path}.")
        if init not in SCRATCH_INITS and path is None:
            path = weights
            if not path:
                raise ValueError(f"`inits` includes {name!r}, which needs `weights` (a weight "
                                 f"file or preset name, or {name}=FILE). Received: weights=None.")
        out[name] = (init, None if path is None else os.fspath(path))
    return out


def check_args(tasks, inits, runs, label_fractions, weights, overrides) -> tuple:
    """Validate `run_experiment`'s arguments; return `(tasks, methods, runs, fractions,
    overrides)` (task codes, `parse_methods` output, int, rounded fractions, dict)."""
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    tasks = [get_target_task(t).code for t in tasks]
    if not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"`tasks` must name distinct target tasks. Received: tasks={tasks}.")
    methods = parse_methods(inits, weights)
    if isinstance(runs, bool) or int(runs) != runs or runs < 1:
        raise ValueError(f"`runs` must be a positive integer. Received: runs={runs!r}.")
    fractions = [fraction_key(f) for f in np.atleast_1d(label_fractions)]
    if not fractions or len(set(fractions)) != len(fractions):
        raise ValueError("`label_fractions` must be distinct values in (0, 1]. "
                         f"Received: label_fractions={label_fractions!r}.")
    overrides = dict(overrides or {})
    fixed = sorted(set(overrides) & set(RUN_FIELDS))
    if fixed:
        raise ValueError(f"`overrides` may not set {fixed}: the experiment sets them per run.")
    for task in tasks:  # FinetuneConfig validates init, fractions and every override
        for init, _ in methods.values():
            for f in fractions:
                FinetuneConfig(task=task, init=init, label_fraction=f, **overrides)
    return tasks, methods, int(runs), fractions, overrides


def per_task(tasks, value, name: str, folder: bool) -> dict:
    """`data_dir` / `data` as `{task: value}`: a mapping by task code, or one value."""
    if value is None:
        return {t: None for t in tasks}
    if isinstance(value, Mapping):
        given = {get_target_task(k).code: v for k, v in value.items()}
        extra = sorted(set(given) - set(tasks))
        if extra:
            raise ValueError(f"`{name}` names tasks {extra} that are not run (tasks: {tasks}).")
        return {t: given.get(t) for t in tasks}
    if not folder:
        if len(tasks) > 1:
            raise ValueError(f"Give `{name}` as {{task: TargetData}} for several tasks. "
                             f"Received: one {type(value).__name__} for tasks {tasks}.")
        return {tasks[0]: value}
    # One folder: its subfolder named after the task when there is one, else the folder itself
    # (LUNA16 serves NCC and NCS from one folder).
    root = os.fspath(value)
    return {t: (os.path.join(root, t) if len(tasks) > 1 and os.path.isdir(os.path.join(root, t))
                else root) for t in tasks}
