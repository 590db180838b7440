"""The paper's protocol: repeated fine-tuning runs per initialisation and label fraction.

Every method (initialisation: `genesis` or a scratch baseline) is fine-tuned `runs` times (10 in
the paper, Sec. 3.2) at every label fraction (Fig. 6). Each finished run is appended to
`results.csv` at once and atomically, so an interrupted experiment resumes where it stopped:
rows already there for an (init, label fraction, run) are not redone. Run `r` uses seed
`seed + r` for every method, hence the same labelled subset and data order for all of them.
The summary is a table of mean ± s.d. per method (in %), an independent two-sample t-test of each
method against the best (paper Table 3), a bar plot and, with several label fractions, the
annotation-efficiency curve (Fig. 6) with the annotation saved.

Files in `out_dir`: `experiment.json` (the fixed settings; a resumed experiment must match them),
`results.csv`, `summary.csv`, `table.txt`, `bars.png`, `annotation_efficiency.png`, and one
folder per run under `runs/`.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from models_genesis.atomic import write_json
from models_genesis.config import FinetuneConfig, get_target_task

_RUN_FIELDS = ("task", "init", "weights", "seed", "label_fraction", "out_dir", "data_dir")
_COLUMNS = ("task", "method", "label_fraction", "run", "seed", "metric", "score", "auc",
            "mean_iou", "dice", "foreground_iou", "n_train", "epochs", "best_epoch", "seconds",
            "weights")
_SCRATCH = ("uniform", "glorot_uniform", "he_uniform")


def _fraction_key(value) -> float:
    return round(float(value), 6)


def _check_args(task, inits, runs, label_fractions, weights, overrides) -> tuple:
    task = get_target_task(task).code
    inits = [str(i) for i in ([inits] if isinstance(inits, str) else list(inits))]
    if not inits or len(set(inits)) != len(inits):
        raise ValueError(f"`inits` must name distinct initialisations. Received: inits={inits}.")
    if isinstance(runs, bool) or int(runs) != runs or runs < 1:
        raise ValueError(f"`runs` must be a positive integer. Received: runs={runs!r}.")
    fractions = [_fraction_key(f) for f in np.atleast_1d(label_fractions)]
    if not fractions or len(set(fractions)) != len(fractions):
        raise ValueError("`label_fractions` must be distinct values in (0, 1]. "
                         f"Received: label_fractions={label_fractions!r}.")
    overrides = dict(overrides or {})
    fixed = sorted(set(overrides) & set(_RUN_FIELDS))
    if fixed:
        raise ValueError(f"`overrides` may not set {fixed}: the experiment sets them per run.")
    for init in inits:  # FinetuneConfig validates init, fractions and every override
        for f in fractions:
            FinetuneConfig(task=task, init=init, label_fraction=f, **overrides)
    if "genesis" in inits and not weights:
        raise ValueError("`inits` includes 'genesis', which needs `weights` (a Genesis weight "
                         "file or preset name). Received: weights=None.")
    return task, inits, int(runs), fractions, overrides


def _check_settings(out_dir: str, settings: dict) -> None:
    """Write `experiment.json`, or check that a resumed experiment has the same settings."""
    path = os.path.join(out_dir, "experiment.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved != settings:
            raise ValueError(
                f"{out_dir!r} holds an experiment with other settings; its results cannot be "
                f"resumed. Use another `out_dir`. Saved: {saved}. Received: {settings}.")
        return
    write_json(path, settings)


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
    tmp = os.fspath(path) + ".tmp"
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def summarize_experiment(results: pd.DataFrame, out_dir, *, task: str) -> dict:
    """Table, t-tests, bar plot and annotation-efficiency curve of an experiment's runs.

    Args:
        results: one row per run (`method`, `label_fraction`, `score`, ...).
        out_dir: folder for `summary.csv`, `table.txt` and the figures.
        task: target-task code (names the metric in the table's title).

    Returns:
        dict with `summary` (DataFrame: mean, sd, n, p_value per label fraction and method),
        `table` (text), `figures` (paths) and `annotation_saved` (dict or None).
    """
    from models_genesis.evaluation import statistics as st

    kind = get_target_task(task).kind
    metric_name = ("AUC" if kind == "classification" else
                   "the paper's IoU (two-class mean IoU over thresholds 0.50:0.05:0.95)")
    summary = st.compare_to_best(results, "score", within=("label_fraction",))
    blocks = [f"{task.upper()}: {metric_name}, mean ± s.d. over runs (%); p: independent "
              "two-sample t-test against the best"]
    for fraction, part in summary.groupby("label_fraction", sort=False):
        blocks.append(f"\nlabel fraction {100 * fraction:g}%\n" + st.format_table(part))
    if kind == "segmentation":
        for extra, label in (("dice", "Dice"), ("foreground_iou", "foreground IoU (at 0.5)")):
            part = st.summarize_runs(results, extra, by=("label_fraction", "method"))
            blocks.append(f"\n{label}, mean ± s.d. (%), columns: label fraction\n"
                          + st.format_table(part, rows="method", columns="label_fraction"))
    table = "\n".join(blocks)
    tmp = os.path.join(out_dir, "table.txt.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(table + "\n")
    os.replace(tmp, os.path.join(out_dir, "table.txt"))
    summary.to_csv(os.path.join(out_dir, "summary.csv.tmp"), index=False)
    os.replace(os.path.join(out_dir, "summary.csv.tmp"), os.path.join(out_dir, "summary.csv"))
    label = "AUC" if kind == "classification" else "IoU"
    figures = {"bars": st.plot_bars(summary, os.path.join(out_dir, "bars.png"), label=label,
                                    title=task.upper())}
    saved = None
    methods = set(results["method"])
    if results["label_fraction"].nunique() > 1:
        figures["annotation_efficiency"] = st.plot_annotation_efficiency(
            results, os.path.join(out_dir, "annotation_efficiency.png"), metric="score",
            title=f"{task.upper()}: {label} against labelled data")
        scratch = [m for m in _SCRATCH if m in methods]
        if "genesis" in methods and scratch:
            full = results[results["label_fraction"] == results["label_fraction"].max()]
            means = full[full["method"].isin(scratch)].groupby("method")["score"].mean()
            baseline = str(means.idxmax())
            saved = {"baseline": baseline, **st.annotation_saved(
                results, "score", method="genesis", baseline=baseline)}
    return {"summary": summary, "table": table, "figures": figures, "annotation_saved": saved}


def run_experiment(task: str, inits: Sequence[str], runs: int = 10,
                   label_fractions: Sequence[float] = (1.0,), data_dir=None,
                   out_dir="runs/experiment", *, weights: Optional[str] = None, seed: int = 0,
                   data=None, overrides: Optional[dict] = None, verbose=0,
                   run_eagerly: bool = False, progress: bool = True) -> dict:
    """Run (or resume) the paper's protocol on one target task.

    Args:
        task: target-task code (`ncc`, `ncs`, `ecc`, `lcs`, `bms`).
        inits: methods, e.g. `["genesis", "uniform", "glorot_uniform", "he_uniform"]`.
        runs: runs per method and label fraction (10 in the paper).
        label_fractions: fractions of the training labels, each in (0, 1] (Fig. 6).
        data_dir: target-task data, read once by `load_target_data` (unless `data` is given).
        out_dir: experiment folder (created); resumable.
        weights: Genesis weight file or preset name (needed with `"genesis"`).
        seed: run r uses seed `seed + r`.
        data: a `TargetData` to use instead of `data_dir`.
        overrides: other `FinetuneConfig` fields for every run (e.g. `epochs`, `n_base_filters`,
            `input_shape`, `batch_size`); not the per-run fields.
        verbose: Keras `fit` verbosity of each run.
        run_eagerly: train without graph tracing (see `finetune`).
        progress: show a bar over runs.

    Returns:
        dict with `results_csv`, `results` (DataFrame of the requested runs), `n_trained` and
        `n_resumed` (runs done now / found in the CSV), plus `summarize_experiment`'s keys.

    Raises:
        ValueError: bad arguments, or an `out_dir` holding an experiment with other settings.
    """
    from tqdm.auto import tqdm

    from models_genesis.training.finetune import finetune

    task, inits, runs, fractions, overrides = _check_args(task, inits, runs, label_fractions,
                                                          weights, overrides)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    _check_settings(out_dir, {"task": task, "seed": int(seed),
                              "weights": None if weights is None else os.fspath(weights),
                              "overrides": json.loads(json.dumps(overrides))})
    csv_path = os.path.join(out_dir, "results.csv")
    done = {(str(m), _fraction_key(f), int(r)) for m, f, r in
            read_results(csv_path)[["method", "label_fraction", "run"]].itertuples(index=False)}
    wanted = [(init, f, r) for r in range(runs) for f in fractions for init in inits]
    todo = [key for key in wanted if key not in done]
    if todo and data is None:
        from models_genesis.data.target_tasks import load_target_data

        if data_dir is None:
            raise ValueError("Give `data_dir` or `data`. Received: data_dir=None, data=None.")
        options = {k: overrides[k] for k in ("input_shape", "fold") if overrides.get(k) is not None}
        data = load_target_data(task, data_dir, seed=int(seed), **options)
    for init, fraction, run in tqdm(todo, desc=f"{task} runs", unit="run", disable=not progress):
        config = FinetuneConfig(
            task=task, init=init, weights=weights if init == "genesis" else None,
            seed=int(seed) + run, label_fraction=fraction,
            out_dir=os.path.join(out_dir, "runs", init, f"fraction_{fraction:g}", f"run_{run:02d}"),
            **overrides)
        result = finetune(config, data, verbose=verbose, run_eagerly=run_eagerly)
        append_result(csv_path, {**result, "method": init, "label_fraction": fraction, "run": run})
    df = read_results(csv_path)
    keys = list(zip(df["method"].astype(str), df["label_fraction"].map(_fraction_key),
                    df["run"].astype(int)))
    df = df[[k in set(wanted) for k in keys]].reset_index(drop=True)
    return {"results_csv": csv_path, "results": df, "n_trained": len(todo),
            "n_resumed": len(wanted) - len(todo), **summarize_experiment(df, out_dir, task=task)}


def _weights_width(path) -> int:
    """`n_base_filters` of a Genesis weight file: the filters of its first conv."""
    from models_genesis.models.weights import read_keras2_weights

    layers = read_keras2_weights(path)
    if "depth_0_conv" not in layers:
        raise ValueError(f"{path!r} has no `depth_0_conv` layer; is it a Genesis U-Net weight "
                         "file?")
    return int(layers["depth_0_conv"][0].shape[-1])


def run_demo_experiment(out_dir, *, weights: Optional[str] = None, phantom_dir=None,
                        runs: int = 3, label_fraction: float = 0.25,
                        input_shape: Sequence[int] = (32, 32, 16), epochs: int = 25,
                        patience: int = 10, batch_size: int = 4,
                        steps_per_epoch: Optional[int] = None,
                        seed: int = 0, n_phantoms: int = 20, run_eagerly: bool = False,
                        progress: bool = True) -> dict:
    """`make demo`'s last step: pre-trained (demo preset) against scratch on phantom NCS.

    The chest phantoms (LUNA16 layout, nodule masks) give an NCS-like task: one crop of
    `input_shape` around each nodule, 1 mm spacing, the paper's patient-level split proportions.
    Only `label_fraction` of the training crops are used (few labels, where pre-training helps
    most), and `genesis` (the demo pre-training's weights) is compared with `he_uniform` (the
    best scratch baseline of the paper) over `runs` runs. The table is printed and written to
    `out_dir/finetune_ncs/table.txt`; a second call reuses the finished runs.

    Args:
        out_dir: demo folder (`phantoms/` and `pretrain/` are shared with
            `run_demo_pretraining`; the experiment goes to `finetune_ncs/`).
        weights: the demo's Genesis weight file; None runs (or reuses) `run_demo_pretraining`.
        phantom_dir: chest phantoms; default `out_dir/phantoms` (made when absent).
        runs, label_fraction, input_shape, epochs, patience, batch_size, steps_per_epoch:
            the experiment's size (defaults: a few minutes on 2 CPU cores).
        seed: seed of the phantoms, the split and the runs.
        n_phantoms: scans to make when `phantom_dir` holds none.
        run_eagerly: train without graph tracing (see `finetune`).
        progress: show progress bars.

    Returns:
        `run_experiment`'s dict, plus `weights` and `data_counts`.
    """
    from models_genesis.data.target_tasks import load_target_data

    out_dir = os.path.abspath(os.fspath(out_dir))
    phantom_dir = os.fspath(phantom_dir) if phantom_dir else os.path.join(out_dir, "phantoms")
    if weights is None:
        from models_genesis.pipeline.pretrain_demo import run_demo_pretraining

        weights = run_demo_pretraining(out_dir, phantom_dir=phantom_dir, n_phantoms=n_phantoms,
                                       seed=seed)["paths"]["keras2_weights"]
    elif not os.path.isfile(os.path.join(phantom_dir, "phantoms.json")):
        from models_genesis.data.phantoms.chest import make_chest_phantoms

        make_chest_phantoms(phantom_dir, n=n_phantoms, seed=seed, progress=progress)
    weights = os.path.abspath(os.fspath(weights))
    data = load_target_data("ncs", phantom_dir, seed=seed, input_shape=tuple(input_shape))
    overrides = {"n_base_filters": _weights_width(weights), "input_shape": tuple(input_shape),
                 "epochs": epochs, "patience": patience, "batch_size": batch_size,
                 "steps_per_epoch": steps_per_epoch}
    out = run_experiment("ncs", ["genesis", "he_uniform"], runs, [label_fraction],
                         out_dir=os.path.join(out_dir, "finetune_ncs"), weights=weights,
                         seed=seed, data=data, overrides=overrides, run_eagerly=run_eagerly,
                         progress=progress)
    counts = data.info.get("counts", {})
    print(f"\nNCS on chest phantoms: {counts} crops of {tuple(input_shape)}, "
          f"{100 * label_fraction:g}% of the training labels, {runs} runs per method")
    print(out["table"])
    return {**out, "weights": weights, "data_counts": counts}
