"""Table 3's layout from an experiment's runs: methods x tasks, mean ± s.d., t-test markers.

For every target task and label fraction, each method's runs are summarised as mean ± s.d. (in
%) of the task's metric (AUC for NCC/ECC, the paper's IoU for NCS/LCS/BMS), and each method is
compared with the best of its column by an independent two-sample t-test
(`evaluation.statistics.compare_to_best`). The cells carry the paper's marks in text form
(`statistics.TABLE3_LEGEND`): `*` the best (bold in the paper), `=` not significantly different
from the best at p = 0.05 (a blue box in the paper). With several label fractions the annotation
saved (Fig. 6) of every pre-trained method against the best scratch baseline is added. A method
whose pre-training did not learn its proxy task (`proxy_flags`) is marked `†` with a footnote, and
a comparison without a test (one run, identical runs) `?`.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import pandas as pd

from models_genesis.atomic import write_csv, write_text
from models_genesis.config import SCRATCH_INITS as SCRATCH, get_target_task
from models_genesis.evaluation import statistics as st

NOT_LEARNED_MARK = "†"


def metric_label(task: str) -> str:
    """The metric of a task's score column, in words."""
    if get_target_task(task).kind == "classification":
        return "AUC"
    return "IoU (two-class mean IoU over thresholds 0.50:0.05:0.95)"


def _write_text(path: str, text: str) -> str:
    return write_text(path, text.rstrip("\n") + "\n")


def _p_table(part: pd.DataFrame, methods, tasks) -> str:
    why = part["test"] if "test" in part else ["-"] * len(part)
    cells = part.assign(p=[("best" if b else (f"{p:.3g}" if pd.notna(p) else w))
                           for b, p, w in zip(part["is_best"], part["p_value"], why)])
    table = cells.pivot(index="method", columns="task", values="p")
    table = table.reindex([m for m in methods if m in table.index])
    return table[[t for t in tasks if t in table.columns]].fillna("-").to_string()


def proxy_flags(results: pd.DataFrame) -> dict:
    """`{method: footnote}` for every method whose pre-training did not beat chance (doing
    nothing, for the restoration methods) on its proxy task, read from the results' `proxy_*`
    columns (`pipeline.experiment` records them from each weight file's run folder)."""
    if "proxy_learned" not in results:
        return {}
    flags = {}
    for method, part in results.groupby("method", sort=False):
        learned = part["proxy_learned"].dropna()
        if learned.empty or learned.astype(str).str.lower().isin(["true", "1", "1.0"]).all():
            continue
        row = part.iloc[0]
        flags[str(method)] = (f"{NOT_LEARNED_MARK} {method}: its pre-training did not beat "
                              f"{'doing nothing' if 'MSE' in str(row.get('proxy_metric')) else 'chance'}"
                              f" on its proxy task ({row.get('proxy_metric')} {row.get('proxy_score')}"
                              f" vs {row.get('proxy_chance')}), so its row compares weights that "
                              "learned nothing, not the method.")
    return flags


def annotation_savings(results: pd.DataFrame) -> Optional[pd.DataFrame]:
    """Annotation saved (Fig. 6) of each pre-trained method against the best scratch method.

    Per task with several label fractions: the baseline is the scratch initialiser with the
    highest mean at the largest fraction (`statistics.annotation_saved`). None when no task has
    several fractions, or no scratch or no pre-trained method was run.
    """
    rows = []
    init = results["init"] if "init" in results else results["method"]
    for task, part in results.assign(_init=init.astype(str)).groupby("task", sort=False):
        if part["label_fraction"].nunique() < 2:
            continue
        scratch = part[part["_init"].isin(SCRATCH)]
        if scratch.empty:
            continue
        full = scratch[scratch["label_fraction"] == scratch["label_fraction"].max()]
        baseline = str(full.groupby("method")["score"].mean().idxmax())
        for method in part.loc[~part["_init"].isin(SCRATCH), "method"].unique():
            rows.append({"task": task, "method": method, "baseline": baseline,
                         **st.annotation_saved(part, "score", method=method, baseline=baseline)})
    return pd.DataFrame(rows) if rows else None


def summarize_experiment(results: pd.DataFrame, out_dir, *, tasks: Optional[Sequence[str]] = None,
                         methods: Optional[Sequence[str]] = None, alpha: float = 0.05) -> dict:
    """Write Table 3's layout of an experiment and return it.

    Args:
        results: one row per run (`task`, `method`, `label_fraction`, `run`, `score`, and for
            segmentation `dice`; `init` names each method's initialisation when present).
        out_dir: folder for `table.txt`, `table3.md`, `summary.csv` and
            `annotation_saved.csv`.
        tasks, methods: column and row order (default: order of first appearance).
        alpha: significance level of the t-tests.

    Returns:
        dict with `summary` (DataFrame: task, label_fraction, method, mean, sd, n, is_best,
        p_value, significant), `table` (text, one block per label fraction, largest first),
        `markdown` and `annotation_saved` (records of `annotation_savings`, or None).
    """
    out_dir = os.fspath(out_dir)
    tasks = list(tasks) if tasks is not None else list(pd.unique(results["task"]))
    methods = list(methods) if methods is not None else list(pd.unique(results["method"]))
    flags = proxy_flags(results)
    if flags:  # the row names carry the mark; the footnotes say why
        rename = {m: f"{m} {NOT_LEARNED_MARK}" for m in flags}
        results = results.assign(method=results["method"].astype(str).replace(rename))
        methods = [rename.get(m, m) for m in methods]
    summary = st.compare_to_best(results, "score", within=("task", "label_fraction"),
                                 alpha=alpha)

    # The text table (`blocks`) and the markdown (`md`): one part per label fraction, largest
    # first, then the annotation saved and the footnotes.
    head, md_head = _headings(tasks, alpha)
    blocks, md = [head], [md_head]
    for fraction in sorted(summary["label_fraction"].unique(), reverse=True):
        text, markdown = _fraction_blocks(summary, results, fraction, tasks=tasks,
                                          methods=methods)
        blocks += text
        md += markdown
    saved = annotation_savings(results)
    if saved is not None:
        blocks.append("\nannotation saved (Fig. 6)\n" + "\n".join(_savings_lines(saved)))
        write_csv(os.path.join(out_dir, "annotation_saved.csv"), saved)
    if flags:
        blocks.append("\n" + "\n".join(flags.values()))
        md.append("\n" + "\n\n".join(flags.values()))

    table = "\n".join(blocks)
    _write_text(os.path.join(out_dir, "table.txt"), table)
    _write_text(os.path.join(out_dir, "table3.md"), "\n".join(md))
    write_csv(os.path.join(out_dir, "summary.csv"), summary)
    return {"summary": summary, "table": table, "markdown": "\n".join(md), "proxy_flags": flags,
            "annotation_saved": None if saved is None else saved.to_dict(orient="records")}


def _headings(tasks: Sequence[str], alpha: float) -> tuple:
    """The text table's heading (metrics, `TABLE3_LEGEND`) and the markdown's."""
    metrics = "; ".join(f"{t.upper()}: {metric_label(t)}" for t in tasks)
    head = (f"Table 3 layout: mean ± s.d. over runs (%), rows: methods, columns: tasks ({metrics})"
            f".\n{st.TABLE3_LEGEND} (alpha = {alpha:g}).")
    md_head = (f"Mean ± s.d. over runs (%); {metrics}. Bold: the best of its column; "
               f"`{st.SAME_MARK}`: not significantly different from it (t-test, "
               f"p >= {alpha:g}).")
    return head, md_head


def _fraction_blocks(summary: pd.DataFrame, results: pd.DataFrame, fraction: float, *,
                     tasks: Sequence[str], methods: Sequence[str]) -> tuple:
    """Table 3 at one label fraction: the text blocks (scores, p-values, Dice of the
    segmentation tasks) and the markdown lines."""
    part = summary[summary["label_fraction"] == fraction]
    runs = results[results["label_fraction"] == fraction]
    title = f"label fraction {100 * fraction:g}%"
    table = st.format_table(part, rows="method", columns="task", row_order=methods,
                            column_order=tasks)
    blocks = [f"\n{title}\n{table}", f"\np-value of the t-test against the best ({title})\n"
              + _p_table(part, methods, tasks)]
    dice = _dice_table(runs, tasks, methods)
    if dice is not None:
        blocks.append(f"\nDice, mean ± s.d. (%) ({title})\n" + dice)
    md = [f"\n**{title}**\n", st.format_table(part, rows="method", columns="task",
                                               row_order=methods, column_order=tasks,
                                               markdown=True)]
    return blocks, md


def _dice_table(runs: pd.DataFrame, tasks: Sequence[str], methods: Sequence[str]) -> Optional[str]:
    """Dice (mean ± s.d.) of the segmentation tasks' runs; None without segmentation or Dice."""
    segmentation = [t for t in tasks if get_target_task(t).kind == "segmentation"]
    if not (segmentation and "dice" in runs and runs["dice"].notna().any()):
        return None
    dice = st.summarize_runs(runs[runs["task"].isin(segmentation)], "dice", by=("task", "method"))
    return st.format_table(dice, rows="method", columns="task", row_order=methods,
                           column_order=tasks)


def _savings_lines(saved: pd.DataFrame) -> list:
    """One line per `annotation_savings` record, in words."""
    return [f"{r.task.upper()}: {r.method} needs {100 * r.fraction_needed:.0f}% of the labels "
            f"to match {r.baseline} with all of them: {100 * r.saved:.0f}% saved"
            + (" (lower bound)" if r.lower_bound else "") if r.reached else
            f"{r.task.upper()}: {r.method} does not reach {r.baseline} with all labels"
            for r in saved.itertuples()]
