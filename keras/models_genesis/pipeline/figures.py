"""The paper's experiment figures from an experiment folder, one panel per target task.

* Fig. 3 (`plot_method_bars`): mean ± s.d. per named initialisation (e.g. the genesis schemes
  `genesis_nonlinear=FILE ...` against the combined `genesis`), with the t-tests between the top
  two and between the bottom two, as the paper's Fig. 3 reports them;
* Fig. 5 (`learning_curves`, `plot_learning_curves`): the validation metric (Dice for
  segmentation, AUC for classification) or loss per epoch, averaged over runs (mean ± s.d. band),
  read from each run's `history.csv` (written by `finetune`'s CSVLogger);
* Fig. 6 (`plot_label_efficiency`): score against the fraction of labelled training data,
  one panel per task; `plot_annotation_efficiency` and `draw_annotation_efficiency` draw the
  same curves (mean ± s.d. per method) for any metric column of results with one row per run.

All figures are written to files (`models_genesis.plotting`, Agg).
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from models_genesis.config import SCRATCH_INITS as SCRATCH, get_target_task
from models_genesis.evaluation import statistics as st
from models_genesis.plotting import new_figure, save_figure

CURVES = ("metric", "loss")


def _panels(n: int):
    fig, axes = new_figure(1, n, figsize=(4.4 * n, 3.8), squeeze=False)
    fig.set_layout_engine("constrained")  # the suptitle above the panels' titles
    return fig, list(axes[0])


def _colour(init: str) -> str:
    return ("tab:gray" if init in SCRATCH else "tab:red" if init == "genesis" else "tab:blue")


def _inits(results: pd.DataFrame) -> dict:
    col = "init" if "init" in results else "method"
    return dict(zip(results["method"].astype(str), results[col].astype(str)))


def plot_method_bars(results: pd.DataFrame, path, *, tasks: Sequence[str],
                     methods: Sequence[str]) -> str:
    """Fig. 3: bars of mean ± s.d. (%) per method and task at the largest label fraction.

    Genesis (and its schemes) red, other pre-training methods blue, scratch grey; each panel's
    title gives the p-values of the t-tests between the top two and the bottom two methods.
    """
    inits = _inits(results)
    fig, axes = _panels(len(tasks))
    for ax, task in zip(axes, tasks):
        part = results[results["task"] == task]
        part = part[part["label_fraction"] == part["label_fraction"].max()]
        summary = st.summarize_runs(part, "score", by=("method",)).set_index("method")
        names = [m for m in methods if m in summary.index]
        means, sds = summary.loc[names, "mean"] * 100, summary.loc[names, "sd"].fillna(0) * 100
        ax.bar(range(len(names)), means, yerr=sds, capsize=3, alpha=0.85,
               color=[_colour(inits.get(m, m)) for m in names])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        label = "AUC" if get_target_task(task).kind == "classification" else "IoU"
        ax.set_ylabel(f"{label} (%)")
        title = f"{task.upper()} ({100 * part['label_fraction'].max():g}% labels)"
        ranked = list(summary.loc[names, "mean"].sort_values(ascending=False).index)
        if len(ranked) >= 2:
            top = st.ttest_pair(part, "score", ranked[0], ranked[1])
            title += f"\np top two {top:.2g}"
            if len(ranked) >= 4:
                bottom = st.ttest_pair(part, "score", ranked[-2], ranked[-1])
                title += f", bottom two {bottom:.2g}"
        ax.set_title(title, fontsize=9)
        lo = float(np.nanmin(means - sds)) if len(names) else 0.0
        ax.set_ylim(max(0.0, lo - 5.0), None)
    fig.suptitle("Fig. 3 layout: each initialisation, mean ± s.d. over runs", fontsize=10)
    return save_figure(fig, path, dpi=150, bbox_inches="tight")


def curve_column(task: str, curve: str = "metric") -> str:
    """The `history.csv` column of a Fig. 5 curve: `val_dice`, `val_auc` or `val_loss`."""
    if curve not in CURVES:
        raise ValueError(f"`curve` must be one of {CURVES}. Received: curve={curve!r}.")
    if curve == "loss":
        return "val_loss"
    return "val_auc" if get_target_task(task).kind == "classification" else "val_dice"


def learning_curves(results: pd.DataFrame, out_dir, *, curve: str = "metric") -> pd.DataFrame:
    """Fig. 5's data: per task, method and epoch, mean, s.d. and count over runs.

    Uses the runs at each task's largest label fraction; run folders come from the `run_dir`
    column (relative to `out_dir`). A run stopped early contributes to its epochs only (`n`
    counts the runs that reached an epoch). Runs without a `history.csv` are left out.

    Returns:
        DataFrame with `task, method, epoch` (1-based), `column`, `mean`, `sd`, `n`.
    """
    frames = []
    largest = results.groupby("task")["label_fraction"].max()
    for row in results.itertuples(index=False):
        if row.label_fraction != largest[row.task] or not isinstance(row.run_dir, str):
            continue
        path = os.path.join(os.fspath(out_dir), row.run_dir, "history.csv")
        column = curve_column(row.task, curve)
        if not os.path.isfile(path):
            continue
        history = pd.read_csv(path)
        if column not in history:
            raise ValueError(f"{path!r} has no column {column!r} (columns: "
                             f"{list(history.columns)}); was it written by `finetune`?")
        frames.append(pd.DataFrame({"task": row.task, "method": row.method, "run": row.run,
                                    "epoch": np.arange(1, len(history) + 1), "column": column,
                                    "value": history[column].to_numpy(float)}))
    if not frames:
        return pd.DataFrame(columns=["task", "method", "epoch", "column", "mean", "sd", "n"])
    curves = pd.concat(frames, ignore_index=True)
    return (curves.groupby(["task", "method", "epoch", "column"], sort=False)["value"]
            .agg(mean="mean", sd=lambda v: v.std(ddof=1), n="count").reset_index())


def plot_learning_curves(curves: pd.DataFrame, path, *, tasks: Sequence[str],
                         methods: Sequence[str]) -> str:
    """Fig. 5: `learning_curves` as lines (mean) with ± s.d. bands, one panel per task."""
    fig, axes = _panels(len(tasks))
    for ax, task in zip(axes, tasks):
        part = curves[curves["task"] == task]
        for method in methods:
            c = part[part["method"] == method]
            if c.empty:
                continue
            mean, sd = c["mean"].to_numpy(float), c["sd"].fillna(0).to_numpy(float)
            line, = ax.plot(c["epoch"], mean, label=method, marker=".")
            ax.fill_between(c["epoch"], mean - sd, mean + sd, alpha=0.2,
                            color=line.get_color())
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        column = part["column"].iloc[0] if len(part) else ""
        ax.set_ylabel({"val_dice": "validation Dice", "val_auc": "validation AUC",
                       "val_loss": "validation loss"}.get(column, column))
        ax.set_title(task.upper(), fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Fig. 5 layout: validation curves, mean ± s.d. over runs", fontsize=10)
    return save_figure(fig, path, dpi=150, bbox_inches="tight")


def plot_label_efficiency(results: pd.DataFrame, path, *, tasks: Sequence[str]) -> str:
    """Fig. 6: score (mean ± s.d., %) against labelled training data, one panel per task; the
    dashed lines are the best pre-trained (red) and scratch (grey) means with all labels."""
    fig, axes = _panels(len(tasks))
    for ax, task in zip(axes, tasks):
        label = "AUC" if get_target_task(task).kind == "classification" else "IoU"
        part = results[results["task"] == task]
        draw_annotation_efficiency(ax, part, metric="score", title=task.upper())
        ax.set_ylabel(f"{label} (%)")
        # As the paper's Fig. 6: the best pre-trained (red) and scratch (grey) scores with all
        # the labels, as horizontal lines.
        full = part[part["label_fraction"] == part["label_fraction"].max()]
        means = full.groupby("method")["score"].mean() * 100
        inits = _inits(full)
        for scratch, colour in ((False, "tab:red"), (True, "tab:gray")):
            group = means[[(inits[m] in SCRATCH) == scratch for m in means.index]]
            if len(group):
                ax.axhline(group.max(), color=colour, linestyle="--", linewidth=1)
    fig.suptitle("Fig. 6 layout: performance against labelled data", fontsize=10)
    return save_figure(fig, path, dpi=150, bbox_inches="tight")


def plot_annotation_efficiency(results, path, *, metric: str, method_col: str = "method",
                               fraction_col: str = "label_fraction", percent: bool = True,
                               title: Optional[str] = None) -> str:
    """Metric (mean ± s.d.) against the fraction of labelled training data, per method (Fig. 6)."""
    fig, ax = new_figure(figsize=(5.0, 4.0))
    draw_annotation_efficiency(ax, results, metric=metric, method_col=method_col,
                               fraction_col=fraction_col, percent=percent, title=title)
    return save_figure(fig, path, dpi=150, bbox_inches="tight")


def draw_annotation_efficiency(ax, results, *, metric: str, method_col: str = "method",
                               fraction_col: str = "label_fraction", percent: bool = True,
                               title: Optional[str] = None) -> None:
    """Draw the Fig. 6 curves of `plot_annotation_efficiency` on a matplotlib axes `ax`."""
    summary = st.summarize_runs(results, metric, by=(method_col, fraction_col))
    scale = 100.0 if percent else 1.0
    for method, part in summary.groupby(method_col, sort=True):
        part = part.sort_values(fraction_col)
        ax.errorbar(part[fraction_col] * 100.0, part["mean"] * scale,
                    yerr=part["sd"].fillna(0) * scale, marker="o", capsize=3, label=str(method))
    ax.set_xlabel("labelled training data (%)")
    ax.set_ylabel(f"{metric} (%)" if percent else metric)
    ax.legend()
    if title:
        ax.set_title(title)
