"""The paper's tables in one runner: named initialisations x target tasks x runs x label fractions.

Every named initialisation (a scratch baseline such as `he_uniform`, or a pre-training method
with its weights: `genesis=FILE`, `rubik=FILE`, and for Fig. 3 the genesis schemes under their
own names, `genesis_nonlinear=FILE ...`) is fine-tuned `runs` times (10 in the paper, Sec. 3.2)
on every target task at every label fraction (Fig. 6). Run `r` uses seed `seed + r` for every
method, hence the same labelled subset and data order for all of them. Each finished run is
appended to `results.csv` at once and atomically, so an interrupted experiment resumes where it
stopped; `experiment.json` is its key (`pipeline.experiment_key`: data folders, data counts and
the SHA-256 of every weight file), so a resume never mixes runs of other data or weights.

Files in `out_dir`: `experiment.json`, `results.csv`, `summary.csv`, `table.txt` and
`table3.md` (Table 3's layout, `pipeline.results_table`), `fig3_bars.png`, `fig5_learning_curves.png`
with `learning_curves.csv`, `fig6_label_efficiency.png` with `annotation_saved.csv` (several
label fractions; `pipeline.figures`), and one folder per run under
`runs/{task}/{method}/fraction_{f}/run_{r}`. Each run of a pre-trained method also records its
pre-training's proxy-task score and chance level (`proxy_*` columns, from the `metrics.json` beside
the weight file), so Table 3 can flag a row whose pre-training learned nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from models_genesis.atomic import write_csv
from models_genesis.config import TARGET_TASKS as TASK_CODES
from models_genesis.config import FinetuneConfig
from models_genesis.data.target_tasks import load_target_data
from models_genesis.models.presets import resolve_weights
from models_genesis.pipeline import figures, results_table
from models_genesis.pipeline.experiment_args import (  # noqa: F401 (parse_methods: public here)
    check_args,
    fraction_key,
    parse_methods,
    per_task,
)
from models_genesis.pipeline.experiment_key import (
    check_experiment_key,
    method_entry,
    method_proxy,
    task_entry,
)
from models_genesis.pipeline.experiment_parallel import finetune_runs
from models_genesis.training.devices import device_groups
from models_genesis.training.finetune import finetune

_COLUMNS = ("task", "method", "init", "label_fraction", "run", "seed", "metric", "score", "auc",
            "mean_iou", "dice", "foreground_iou", "n_train", "n_valid", "n_test", "epochs",
            "best_epoch", "seconds", "weights", "weights_sha256", "run_dir", "proxy_metric",
            "proxy_score", "proxy_chance", "proxy_learned")


def _check_settings(out_dir: str, settings: dict) -> dict:
    """Write `experiment.json`, or check a resumed experiment against it (see
    `experiment_key.check_experiment_key`: one-line error naming what changed)."""
    return check_experiment_key(out_dir, settings)


def read_results(path) -> pd.DataFrame:
    """Read a results CSV (empty frame with the result columns when it does not exist)."""
    if not os.path.isfile(path):
        return pd.DataFrame(columns=list(_COLUMNS))
    return pd.read_csv(path)


def append_result(path, row: dict) -> None:
    """Append one run to the results CSV: the whole file is rewritten to a temporary name and
    renamed, so a crash never leaves a half-written file."""
    df = read_results(path)
    new = pd.DataFrame([{c: row.get(c, np.nan) for c in _COLUMNS}])
    df = new if df.empty else pd.concat([df, new], ignore_index=True)
    write_csv(path, df)


def summarize_experiment(results: pd.DataFrame, out_dir, *, tasks=None, methods=None,
                         curve: str = "metric") -> dict:
    """Table 3 (`results_table.summarize_experiment`) and Figs. 3, 5 and 6 (`figures`) of the runs."""
    tasks = list(tasks) if tasks is not None else list(pd.unique(results["task"]))
    methods = list(methods) if methods is not None else list(pd.unique(results["method"]))
    out = results_table.summarize_experiment(results, out_dir, tasks=tasks, methods=methods)
    paths = {"bars": figures.plot_method_bars(results, os.path.join(out_dir, "fig3_bars.png"),
                                              tasks=tasks, methods=methods)}
    curves = figures.learning_curves(results, out_dir, curve=curve)
    write_csv(os.path.join(out_dir, "learning_curves.csv"), curves)
    if not curves.empty:
        paths["learning_curves"] = figures.plot_learning_curves(
            curves, os.path.join(out_dir, "fig5_learning_curves.png"), tasks=tasks,
            methods=methods)
    if results.groupby("task")["label_fraction"].nunique().max() > 1:
        paths["annotation_efficiency"] = figures.plot_label_efficiency(
            results, os.path.join(out_dir, "fig6_label_efficiency.png"), tasks=tasks)
    return {**out, "figures": paths, "learning_curves": curves}


def run_experiment(tasks, inits, runs: int = 10, label_fractions: Sequence[float] = (1.0,),
                   data_dir=None, out_dir="runs/experiment", *, weights: Optional[str] = None,
                   seed: int = 0, data=None, overrides: Optional[dict] = None, verbose=0,
                   run_eagerly: bool = False, progress: bool = True,
                   curve: str = "metric", data_options: Optional[dict] = None,
                   parallel_runs: int = 1) -> dict:
    """Run (or resume) the paper's protocol on one or several target tasks.

    Args:
        tasks: target-task code(s) (`ncc`, `ncs`, `ecc`, `lcs`, `bms`): Table 3's columns.
        inits: named initialisations (`parse_methods`): Table 3's rows, e.g.
            `["genesis=G.h5", "rubik=R.h5", "uniform", "glorot_uniform", "he_uniform"]`.
        runs: runs per method, task and label fraction (10 in the paper).
        label_fractions: fractions of the training labels, each in (0, 1] (Fig. 6).
        data_dir: the tasks' data: `{task: folder}`, or one folder (for several tasks, its
            subfolder named after each task when it exists, else the folder itself).
        out_dir: experiment folder (created); resumable.
        weights: weight file or preset name of a bare pre-training method (`"genesis"`).
        seed: run r uses seed `seed + r`; the data splits use `seed`.
        data: `TargetData` to use instead of loading (one, or `{task: TargetData}`).
        overrides: other `FinetuneConfig` fields for every run (e.g. `epochs`, `n_base_filters`,
            `input_shape`, `head`, `freeze_encoder`); not the per-run fields.
        verbose: Keras `fit` verbosity of each run.
        run_eagerly: train without graph tracing (see `finetune`).
        progress: show a bar over runs.
        curve: Fig. 5 plots the validation `"metric"` (Dice / AUC) or `"loss"`.
        data_options: the task loaders' options (`load_target_data`), `{task: {option: value}}`
            or one dict for every task (also read from `overrides["data_options"]`).
        parallel_runs: train this many runs at once, one process each
            (`pipeline.experiment_parallel`; on GPUs each takes its own `overrides["devices"]`
            of them, see `training.devices.device_groups`); the results are the same as one
            run after another, appended in the same order.

    Returns:
        dict with `results_csv`, `results` (DataFrame of the requested runs), `n_trained` and
        `n_resumed` (runs done now / found in the CSV), `key` (the stored experiment key), plus
        `summarize_experiment`'s keys (`summary`, `table`, `markdown`, `figures`,
        `learning_curves`, `annotation_saved`).

    Raises:
        ValueError: bad arguments, or an `out_dir` holding an experiment whose settings, weights
            (SHA-256), data folders or data counts differ (one line naming what changed).
        FileNotFoundError: a missing weight file or data folder.
    """
    if curve not in ("metric", "loss"):
        raise ValueError(f"`curve` must be 'metric' or 'loss'. Received: curve={curve!r}.")
    tasks, methods, runs, fractions, overrides = check_args(tasks, inits, runs, label_fractions,
                                                             weights, overrides)
    groups = (device_groups(parallel_runs, overrides.get("devices", 1))
              if parallel_runs != 1 else None)
    dirs, datas = per_task(tasks, data_dir, "data_dir", True), per_task(tasks, data, "data", False)
    resolved = _resolve_method_weights(methods)
    _check_data_dirs(tasks, dirs, datas)

    # The experiment's key (experiment.json): a resume must match it.
    sources = {t: dirs[t] if datas[t] is None else None for t in tasks}  # folders read
    key = _experiment_key(seed, overrides, resolved, sources)
    loader = _loader_options(tasks, data_options, overrides)
    for t in tasks:
        key["tasks"][t]["options"] = json.loads(json.dumps(loader[t], default=str))
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    _check_settings(out_dir, key)

    # The runs not yet in results.csv, task by task: load the data, check its counts against
    # the key, fine-tune (Sec. 3.2).
    csv_path = os.path.join(out_dir, "results.csv")
    done = set(_run_keys(read_results(csv_path)))
    wanted = [(t, m, f, r) for t in tasks for r in range(runs) for f in fractions
              for m in methods]
    todo = [k for k in wanted if k not in done]
    bar = tqdm(total=len(todo), desc="experiment runs", unit="run", disable=not progress)
    for task in tasks:
        task_todo = [k for k in todo if k[0] == task]
        if not task_todo:
            continue
        data = _task_data(task, datas[task], dirs[task], overrides, loader[task], seed)
        key["tasks"][task] = dict(task_entry(sources[task], _data_counts(data)),
                                  options=key["tasks"][task]["options"])
        _check_settings(out_dir, key)
        jobs = _run_jobs(task_todo, resolved, key, seed, overrides, out_dir)
        _train_runs(jobs, data, groups, csv_path, bar, verbose=verbose, run_eagerly=run_eagerly)
    bar.close()

    # The requested runs (new and resumed): Table 3 and the figures.
    df = read_results(csv_path)
    wanted_set = set(wanted)
    df = df[[k in wanted_set for k in _run_keys(df)]].reset_index(drop=True)
    return {"results_csv": csv_path, "results": df, "n_trained": len(todo),
            "n_resumed": len(wanted) - len(todo), "key": key,
            **summarize_experiment(df, out_dir, tasks=tasks, methods=list(methods), curve=curve)}


def _resolve_method_weights(methods: dict) -> dict:
    """`{name: (init, weights)}` with each weight file or preset resolved to an absolute path.

    Raises:
        FileNotFoundError: a weight file (a path with an extension) that does not exist.
    """
    resolved = {}
    for name, (init, path) in methods.items():
        if path is not None:
            if not os.path.isfile(path) and os.path.splitext(path)[1]:
                raise FileNotFoundError(f"Weight file of {name!r} not found: {path!r}.")
            path = os.path.abspath(resolve_weights(path))
        resolved[name] = (init, path)
    return resolved


def _check_data_dirs(tasks, dirs: dict, datas: dict) -> None:
    """Refuse a task's data folder that does not exist (when its data is not given)."""
    for task in tasks:
        if dirs[task] is not None and datas[task] is None and not os.path.isdir(dirs[task]):
            raise FileNotFoundError(f"Data folder of {task!r} not found: {dirs[task]!r}.")


def _experiment_key(seed: int, overrides: dict, resolved: dict, sources: dict) -> dict:
    """The key stored in `experiment.json` (`experiment_key`), before the data counts.

    Where runs train (devices, strategy) is not a setting: a resume may use other devices.
    """
    settings = {k: v for k, v in overrides.items() if k not in ("devices", "strategy")}
    return {"seed": int(seed), "overrides": json.loads(json.dumps(settings)),
            "methods": {n: method_entry(i, p) for n, (i, p) in resolved.items()},
            "tasks": {t: task_entry(folder) for t, folder in sources.items()}}


def _loader_options(tasks, data_options: Optional[dict], overrides: dict) -> dict:
    """Each task's `load_target_data` options: `data_options` per task (`{task: {...}}`), or
    one dict for every task (`data_options`, else `overrides["data_options"]`)."""
    if data_options and set(data_options) <= set(TASK_CODES):
        return {t: dict(data_options.get(t) or {}) for t in tasks}
    return {t: dict(data_options or overrides.get("data_options") or {}) for t in tasks}


def _run_keys(results: pd.DataFrame) -> list:
    """`(task, method, label fraction key, run)` of each row of a results frame."""
    return list(zip(results["task"].astype(str), results["method"].astype(str),
                    results["label_fraction"].map(fraction_key), results["run"].astype(int)))


def _task_data(task: str, data, data_dir, overrides: dict, loader_options: dict, seed: int):
    """The task's `TargetData`: the one given, else loaded from `data_dir` (splits use `seed`)."""
    if data is not None:
        return data
    if data_dir is None:
        raise ValueError(f"Give the data of {task!r} (`data_dir` or `data`). Received: none.")
    options = {k: overrides[k] for k in ("input_shape", "fold") if overrides.get(k) is not None}
    options.update(loader_options)  # --errors, --split-dir, ...
    return load_target_data(task, data_dir, seed=int(seed), **options)


def _data_counts(data) -> dict:
    """Cases per split (`train`, `valid`, `test`) of a task's data."""
    if hasattr(data, "rows"):  # prepared NCC/ECC: lazy
        return dict(data.info["counts"])
    return {s: len(getattr(data, f"x_{s}")) for s in ("train", "valid", "test")}


def _run_jobs(task_todo: list, resolved: dict, key: dict, seed: int, overrides: dict,
              out_dir: str) -> list:
    """One `(FinetuneConfig, row)` per run to train; `row` holds the results.csv columns that
    name the run (the rest come from `finetune`'s result). Run `r` uses seed `seed + r`."""
    proxies = {name: method_proxy(init, path) for name, (init, path) in resolved.items()}
    jobs = []
    for task, name, fraction, run in task_todo:
        init, path = resolved[name]
        run_dir = os.path.join("runs", task, name, f"fraction_{fraction:g}", f"run_{run:02d}")
        config = FinetuneConfig(task=task, init=init, weights=path, seed=int(seed) + run,
                                label_fraction=fraction,
                                out_dir=os.path.join(out_dir, run_dir), **overrides)
        jobs.append((config, {**proxies[name], "task": task, "method": name,
                              "init": init, "label_fraction": fraction, "run": run,
                              "run_dir": run_dir,
                              "weights_sha256": key["methods"][name]["sha256"]}))
    return jobs


def _train_runs(jobs: list, data, groups, csv_path: str, bar, *, verbose, run_eagerly: bool):
    """Fine-tune each job on `data`, one after another or in parallel processes (`groups`),
    appending each result to `csv_path` as it finishes."""

    def record(i, result):
        append_result(csv_path, {**result, **jobs[i][1]})
        bar.update(1)

    if groups is None:
        for i, (config, _) in enumerate(jobs):
            # overwrite: a run missing from results.csv is redone from scratch in its folder.
            record(i, finetune(config, data, verbose=verbose, run_eagerly=run_eagerly,
                               overwrite=True))
    else:
        finetune_runs([(config, data) for config, _ in jobs], groups, verbose=verbose,
                      run_eagerly=run_eagerly, on_result=record)


def drop_stale_experiment(experiment_dir, weights) -> bool:
    """Remove `experiment_dir` when its runs predate the weight file `weights`.

    For an experiment folder a program keeps for itself (the demo's, a notebook's): after its
    weights were trained again, `run_experiment` would refuse to resume the old runs (their key
    holds the old file's SHA-256). Never for a user's folder. Returns whether it removed it.
    """
    results = os.path.join(os.fspath(experiment_dir), "results.csv")
    if os.path.isfile(results) and os.path.getmtime(results) < os.path.getmtime(weights):
        print(f"{os.fspath(experiment_dir)} holds runs with older weights than {os.fspath(weights)}; "
              "redoing them")
        shutil.rmtree(experiment_dir)
        return True
    return False
