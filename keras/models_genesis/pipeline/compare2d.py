"""3D against 2D and 2.5D on one target task: paper Sec. 4.5, Table 4 and Fig. 7 in one call.

Rows (Table 4): "2D slice-based input", "2.5D orthogonal input" (classification only: NCC, ECC)
and "3D volume-based input"; columns: Random, ImageNet, Genesis. The 2D rows fine-tune
`target_model_2d` through `training.finetune2d` (Random: the 2D U-Net from `random_init`;
ImageNet: a keras-hub backbone, only when `imagenet` is given; Genesis: a Genesis 2D file,
`weights_2d`); the 3D row fine-tunes the 3D U-Net through `training.finetune` (Random:
`random_init`; Genesis: `weights_3d`, Genesis Chest CT); ImageNet is "n/a" in 3D, as in the paper.
Fig. 7 also fine-tunes Genesis Chest X-ray beside Genesis Chest CT 2D: `extra_2d={"genesis_xray":
FILE}` adds such columns (2D rows only). Each cell is run `runs` times with seeds `seed + r`; the
score is the test AUC (classification) or the crops' mean IoU over thresholds 0.5-0.95
(segmentation, slice maps stacked and scored in 3D). `results.json` (one entry per run),
`table4.md` (mean ± s.d. in %) and `fig7.png` (bars per input and initialisation) go to
`out_dir`.

This runner is separate from `pipeline.experiment` (whose `experiment` command does not run the 2D
rows yet).
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

import numpy as np

from models_genesis.atomic import write_json, write_text
from models_genesis.config import CONFIG_RANGES, FinetuneConfig, Range, get_target_task
from models_genesis.outputs import claim_output_dir, owner_stamp, refuse_to_replace
from models_genesis.plotting import new_figure, save_figure
from models_genesis.training.finetune import finetune
from models_genesis.training.finetune2d import finetune_2d

ROWS = {"2d": "2D slice-based input", "2.5d": "2.5D orthogonal input", "3d": "3D volume-based input"}
COLUMNS = ("random", "imagenet", "genesis")
OUTPUTS = ("results.json", "table4.md", "fig7.png")  # and runs/3d_*: the 3D cells' runs
RUNS_RANGE = Range(int, 1, 1000)


def claim_comparison_dir(out_dir, *, overwrite: bool = False, data_dir=None) -> str:
    """Check, before any data is read, that `compare-2d` may write in `out_dir`: new or empty; a
    finished comparison (`results.json` names `compare-2d`), a user's folder or another command's
    run (a fine-tuning run's `results.json`) only with `overwrite`, which replaces only the
    comparison's files (`OUTPUTS`, `runs/3d_*`)."""
    full = claim_output_dir(out_dir, "compare-2d", markers=("results.json",), overwrite=overwrite,
                            inputs=[("--data", data_dir)], name="--out")
    if not overwrite:
        refuse_to_replace([os.path.join(full, name) for name in OUTPUTS], where=full,
                          what="comparison files")
    return full


def run_2d_comparison(task: str, data, out_dir, *, weights_3d: Optional[str] = None,
                      weights_2d: Optional[str] = None, imagenet=None,
                      extra_2d: Optional[Mapping[str, str]] = None, runs: int = 3,
                      seed: int = 0, random_init: str = "he_uniform", epochs: int = 20,
                      batch_size: int = 8, patience: int = 5, depth_2d: int = 4,
                      n_base_filters_2d: int = 32, n_base_filters_3d: int = 32,
                      overwrite: bool = False, run_eagerly: bool = False) -> dict:
    """Fine-tune every cell of Table 4 `runs` times on `data` (a `TargetData` of `task`).

    Args:
        task: target-task code (`ncc`, `ecc`, `ncs`, `lcs`, `bms`).
        data: its `TargetData` (e.g. `load_target_data(task, folder)`).
        out_dir: folder for `results.csv`, `table4.md` and the 3D runs.
        weights_3d: Genesis Chest CT file (the 3D Genesis cell; None skips it).
        weights_2d: Genesis 2D file, `unet_model_2d` of `depth_2d` x `n_base_filters_2d`
            (the 2D Genesis cells; None skips them).
        imagenet: keras-hub preset name or built backbone (the ImageNet cells; None skips them).
        extra_2d: more Genesis 2D files as columns `{name: file}` (e.g. `genesis_xray`), 2D rows.
        runs, seed: runs per cell and the first seed.
        random_init: the scratch initialiser of the Random column (2D and 3D).
        epochs, batch_size, patience: training of every cell (Adam 1e-3, early stopping).
        overwrite: see `claim_comparison_dir`.
        run_eagerly: train every cell without graph tracing (see `finetune`).

    Returns:
        `{"results": [rows], "table": markdown, "paths": {...}}`.
    """
    kind = get_target_task(task).kind
    rows = ["2d", "2.5d", "3d"] if kind == "classification" else ["2d", "3d"]
    _check_arguments(task, data, runs=runs, epochs=epochs, batch_size=batch_size,
                     patience=patience, seed=seed)
    out_dir = claim_comparison_dir(out_dir, overwrite=overwrite)
    os.makedirs(out_dir, exist_ok=True)
    settings = dict(epochs=epochs, batch_size=batch_size, patience=patience,
                    n_base_filters_3d=n_base_filters_3d, depth_2d=depth_2d,
                    n_base_filters_2d=n_base_filters_2d, random_init=random_init,
                    run_eagerly=run_eagerly)
    extra_2d = dict(extra_2d or {})
    clash = sorted(set(extra_2d) & set(COLUMNS))
    if clash:
        raise ValueError(f"`extra_2d` names must differ from {COLUMNS}. Received: {clash}.")
    files_2d = {"genesis": weights_2d, **extra_2d}

    # Every cell that can run (Table 4; Fig. 7's extra 2D columns), `runs` times.
    results = []
    for row in rows:
        for column in _cell_columns(row, imagenet=imagenet, weights_3d=weights_3d,
                                    weights_2d=weights_2d, extra_2d=extra_2d):
            for r in range(runs):
                if row == "3d":
                    test = _run_3d(task, data, column, weights_3d, seed + r, settings,
                                   os.path.join(out_dir, "runs", f"3d_{column}_{r}"))
                else:
                    test = _run_2d(data, kind, row, column, files_2d.get(column), imagenet,
                                   seed + r, settings)
                results.append({"task": task, "input": row, "init": column, "run": r,
                                "seed": seed + r, "score": _score(kind, test)})

    # Table 4, Fig. 7 and the runs, written to `out_dir`.
    table = table4(results, task, kind)
    paths = {"results": os.path.join(out_dir, "results.json"),
             "table": os.path.join(out_dir, "table4.md"),
             "figure": plot_fig7(results, task, kind, os.path.join(out_dir, "fig7.png"))}
    write_json(paths["results"], {**owner_stamp("compare-2d"), "task": task, "results": results})
    write_text(paths["table"], table + "\n")
    return {"results": results, "table": table, "paths": paths}


def _check_arguments(task: str, data, *, runs: int, epochs: int, batch_size: int,
                     patience: int, seed: int) -> None:
    """Refuse counts out of range and data with an empty split, before any folder is claimed."""
    RUNS_RANGE.check(runs, "runs")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience),
                        ("seed", seed)):
        CONFIG_RANGES[name].check(value, name)
    empty = [s for s in ("train", "valid", "test") if len(getattr(data, f"y_{s}")) == 0]
    if empty:
        raise ValueError(f"The {task} data has no case in its {' and '.join(empty)} split(s); "
                         "every cell trains, validates and tests: give a data set with cases "
                         "in all three splits.")


def _cell_columns(row: str, *, imagenet, weights_3d, weights_2d, extra_2d: dict) -> list:
    """The columns of `row` that run: Random always; ImageNet with a backbone, 2D only; Genesis
    with its weight file; the extra Genesis 2D columns in 2D only."""
    available = {"random": True, "imagenet": imagenet is not None and row != "3d",
                 "genesis": (weights_3d if row == "3d" else weights_2d) is not None,
                 **{k: row != "3d" for k in extra_2d}}
    return [column for column in (*COLUMNS, *extra_2d) if available[column]]


def _score(kind: str, test: dict) -> float:
    """A cell's score: the test AUC (classification) or mean IoU (segmentation)."""
    return float(test["auc"] if kind == "classification" else test["mean_iou"])


def _run_3d(task, data, column, weights_3d, seed, settings, run_dir) -> dict:
    """One 3D run of `column` (Random: `random_init`, Genesis: `weights_3d`); returns
    `finetune`'s result, which holds the test scores."""
    init = settings["random_init"] if column == "random" else "genesis"
    config = FinetuneConfig(task=task, init=init,
                            weights=weights_3d if column == "genesis" else None, seed=seed,
                            out_dir=run_dir, epochs=settings["epochs"],
                            batch_size=settings["batch_size"], patience=settings["patience"],
                            n_base_filters=settings["n_base_filters_3d"])
    return finetune(config, data, verbose=0, overwrite=True, run_eagerly=settings["run_eagerly"])


def _run_2d(data, kind, row, column, weights, imagenet, seed, settings) -> dict:
    """One 2D or 2.5D run of `column` (`finetune_2d`: Random from scratch, ImageNet on the
    `imagenet` backbone, a Genesis column from its 2D `weights`); returns its test scores."""
    out = finetune_2d(data, kind, inputs=row,
                      init={"random": "scratch", "imagenet": "imagenet"}.get(column, "genesis"),
                      weights=weights, backbone=imagenet if column == "imagenet" else None,
                      epochs=settings["epochs"], batch_size=settings["batch_size"],
                      patience=settings["patience"], depth=settings["depth_2d"],
                      n_base_filters=settings["n_base_filters_2d"],
                      kernel_initializer=settings["random_init"], seed=seed, verbose=0,
                      run_eagerly=settings["run_eagerly"])
    return out["test"]


def table4(results, task: str, kind: str) -> str:
    """Table 4's layout in markdown: one row per input, Random | ImageNet | Genesis, mean ± s.d.
    (%) over runs; "n/a" for ImageNet in 3D, "-" for a cell that was not run."""
    metric = "AUC" if kind == "classification" else "mean IoU"
    columns = _columns(results)
    lines = [f"| Task: {task.upper()} ({metric}, %) | Random | ImageNet | Genesis |"
             + "".join(f" {c} |" for c in columns[len(COLUMNS):]),
             "|---|---|---|---|" + "---|" * (len(columns) - len(COLUMNS))]
    for row in ROWS:
        if not any(r["input"] == row for r in results):
            continue
        cells = []
        for column in columns:
            scores = [r["score"] for r in results if r["input"] == row and r["init"] == column]
            if row == "3d" and column != "random" and column != "genesis":
                cells.append("n/a")
            elif not scores:
                cells.append("-")
            else:
                sd = np.std(scores, ddof=1) if len(scores) > 1 else 0.0
                cells.append(f"{100 * np.mean(scores):.2f}±{100 * sd:.2f}")
        lines.append(f"| {ROWS[row]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _columns(results) -> list:
    """Table 4's columns, then any extra Genesis 2D columns in the order they were run."""
    extra = [r["init"] for r in results if r["init"] not in COLUMNS]
    return [*COLUMNS, *dict.fromkeys(extra)]


def plot_fig7(results, task: str, kind: str, path) -> str:
    """Fig. 7's comparison for one task: a bar (mean ± s.d. over runs) per input and
    initialisation, written to `path` (PNG); returns it."""
    columns = [c for c in _columns(results) if any(x["init"] == c for x in results)]
    rows = [r for r in ROWS if any(x["input"] == r for x in results)]
    fig, ax = new_figure(figsize=(1.6 + 1.4 * len(rows), 3.2))
    width = 0.8 / len(columns)
    for j, column in enumerate(columns):
        means, sds, xs = [], [], []
        for i, row in enumerate(rows):
            scores = [100 * x["score"] for x in results if x["input"] == row and x["init"] == column]
            if scores:
                xs.append(i + (j - (len(columns) - 1) / 2) * width)
                means.append(np.mean(scores))
                sds.append(np.std(scores, ddof=1) if len(scores) > 1 else 0.0)
        if xs:
            ax.bar(xs, means, width, yerr=sds, capsize=2, label=column)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([ROWS[r].replace(" input", "") for r in rows], fontsize=7)
    ax.set_ylabel(("AUC" if kind == "classification" else "mean IoU") + " (%)")
    ax.set_title(f"{task.upper()}: 3D against 2D / 2.5D (Fig. 7)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)

