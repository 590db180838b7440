"""The paper's protocol over repeated runs: mean +- s.d., t-tests and tables.

Every method is run several times (10 in the paper, Sec. 3.2); results are summarised as
mean +- sample s.d. (ddof=1), and each method is compared with the best one by an independent
two-sample t-test (`scipy.stats.ttest_ind`, significance at p < 0.05), as in Table 3. With
several label fractions the annotation saved (Fig. 6) is computed; the figures themselves are
drawn by `pipeline.figures`.

Results are "long" records, one per run: a `pandas.DataFrame` or a list of dicts with at least a
method column (default `"method"`) and a metric column (e.g. `"iou"`), optionally
`"label_fraction"`, `"task"`, `"run"`.
"""

from __future__ import annotations

import warnings
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd


def _frame(results, columns: Iterable[str]) -> pd.DataFrame:
    df = results if isinstance(results, pd.DataFrame) else pd.DataFrame(list(results))
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"`results` lacks column(s) {missing}. "
                         f"Received columns: {list(df.columns)}.")
    if df.empty:
        raise ValueError("`results` must hold at least one run. Received: no rows.")
    return df


def summarize_runs(results, metric: str,
                   by: Union[str, Sequence[str]] = ("method",)) -> pd.DataFrame:
    """Mean, sample s.d. (ddof=1) and count of `metric` per group.

    Args:
        results: DataFrame or list of dicts, one row per run.
        metric: column to summarise (e.g. `"iou"`, `"auc"`).
        by: grouping column(s), e.g. `("method",)` or `("label_fraction", "method")`.

    Returns:
        DataFrame with the `by` columns and `mean`, `sd` (NaN for a single run) and `n`.
    """
    by = [by] if isinstance(by, str) else list(by)
    df = _frame(results, by + [metric])
    values = pd.to_numeric(df[metric], errors="coerce")
    bad = int(values.isna().sum())
    if bad:
        raise ValueError(f"`{metric}` must be numeric in every run; {bad} row(s) are not.")
    grouped = df.assign(**{metric: values}).groupby(by, sort=True)[metric]
    out = grouped.agg(mean="mean", sd=lambda v: v.std(ddof=1), n="count").reset_index()
    out["n"] = out["n"].astype(int)
    return out


# Why a comparison has no p-value (`compare_to_best`'s `test` column, `ttest_pair`).
ONE_RUN, IDENTICAL = "one run", "identical runs"


def why_untestable(a, b) -> Optional[str]:
    """None when two groups of runs can be t-tested; else `ONE_RUN` (a group has fewer than 2
    runs: no variance to estimate) or `IDENTICAL` (a group's runs are all equal: zero variance,
    so the t statistic divides by (nearly) zero and its p-value means nothing)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        return ONE_RUN
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return IDENTICAL
    return None


def _ttest_p(a, b, equal_var: bool) -> float:
    """p-value of `scipy.stats.ttest_ind`, NaN where `why_untestable`; scipy's warnings (e.g.
    "catastrophic cancellation" on nearly equal runs) never reach the terminal."""
    # scipy.stats takes 2.4 s to import; only the t-tests need it.
    from scipy import stats

    if why_untestable(a, b) is not None:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=equal_var).pvalue)


def compare_to_best(results, metric: str, *, method_col: str = "method",
                    within: Sequence[str] = (), higher_is_better: bool = True,
                    alpha: float = 0.05, equal_var: bool = True) -> pd.DataFrame:
    """Independent two-sample t-test of each method against the best (paper Table 3).

    Args:
        results: one row per run.
        metric: the compared column.
        method_col: column naming the method (initialisation / pre-training).
        within: columns defining separate comparisons (e.g. `("task",)`, `("label_fraction",)`).
        higher_is_better: the best method has the highest mean (False: lowest).
        alpha: significance level.
        equal_var: Student's t-test (True, scipy's default) or Welch's (False).

    Returns:
        The `summarize_runs` table plus `is_best`, `p_value` (NaN for the best and where no test
        is possible), `test` (`"best"`, `"t-test"`, or why there is none: `ONE_RUN`,
        `IDENTICAL`, see `why_untestable`) and `significant` (`p_value < alpha`).
    """
    within = [within] if isinstance(within, str) else list(within)
    summary = summarize_runs(results, metric, by=within + [method_col])
    df = _frame(results, within + [method_col, metric])
    rows = []
    groups = summary.groupby(within, sort=True) if within else [((), summary)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        best_pos = part["mean"].idxmax() if higher_is_better else part["mean"].idxmin()
        best = part.loc[best_pos, method_col]
        mask = np.ones(len(df), bool)
        for col, value in zip(within, key):
            mask &= (df[col] == value).to_numpy()
        sub = df[mask]
        best_values = pd.to_numeric(sub.loc[sub[method_col] == best, metric]).to_numpy(float)
        for idx, row in part.iterrows():
            values = pd.to_numeric(
                sub.loc[sub[method_col] == row[method_col], metric]).to_numpy(float)
            p, test = np.nan, "best"
            if row[method_col] != best:
                test = why_untestable(values, best_values) or "t-test"
                p = _ttest_p(values, best_values, equal_var)
            rows.append({"index": idx, "is_best": row[method_col] == best, "p_value": p,
                         "test": test})
    extra = pd.DataFrame(rows).set_index("index")
    out = summary.join(extra)
    out["significant"] = out["p_value"] < alpha
    return out


BEST_MARK, SAME_MARK, UNTESTED_MARK = "*", "=", "?"
TABLE3_LEGEND = (f"{BEST_MARK}: the best in its column (bold in the paper's Table 3); "
                 f"{SAME_MARK}: not significantly different from the best (independent two-sample "
                 "t-test, p >= alpha; a blue box in the paper); "
                 f"{UNTESTED_MARK}: no test possible (one run, or identical runs: zero "
                 "variance); unmarked: significantly worse")


def _marks(summary: pd.DataFrame) -> list:
    """Table 3's markers per row of a `compare_to_best` table ("" without its columns)."""
    if not {"is_best", "significant"} <= set(summary.columns):
        return [""] * len(summary)
    return [f" {BEST_MARK}" if best else (f" {UNTESTED_MARK}" if not np.isfinite(p) else
                                          (f" {SAME_MARK}" if not sig else ""))
            for best, p, sig in zip(summary["is_best"], summary["p_value"],
                                    summary["significant"])]


def format_table(summary: pd.DataFrame, *, rows: str = "method", columns: Optional[str] = None,
                 percent: bool = True, decimals: int = 2, row_order: Optional[Sequence] = None,
                 column_order: Optional[Sequence] = None, markdown: bool = False) -> str:
    """Text table of "mean ± s.d." cells (percent by default), like the paper's Table 3.

    Args:
        summary: output of `summarize_runs` / `compare_to_best`.
        rows: column giving the table rows.
        columns: column giving the table columns (e.g. `"task"`); None for one "score" column.
            With `compare_to_best` output and no `columns`, a p-value column is added and the best
            method is marked `*`; with `columns`, each cell carries Table 3's marker
            (`TABLE3_LEGEND`: `*` best of its column, `=` not significantly different from it).
        row_order, column_order: order of the rows / columns (default: sorted).
        markdown: a Markdown table (the best cell in bold) instead of aligned text.

    Returns:
        The table as a string (print it).
    """
    _frame(summary, [rows, "mean", "sd"] + ([columns] if columns else []))
    scale = 100.0 if percent else 1.0
    sd = summary["sd"].fillna(0.0)
    cell = [f"{m * scale:.{decimals}f} ± {s * scale:.{decimals}f}"
            for m, s in zip(summary["mean"], sd)]
    df = summary.assign(cell=cell)
    if columns:
        marks = _marks(summary)
        if markdown:
            df["cell"] = [f"**{c}**" if m == f" {BEST_MARK}" else c + m
                          for c, m in zip(df["cell"], marks)]
        else:
            df["cell"] = [c + m for c, m in zip(df["cell"], marks)]
        table = df.pivot(index=rows, columns=columns, values="cell")
        if row_order is not None:
            table = table.reindex([r for r in row_order if r in table.index])
        if column_order is not None:
            table = table[[c for c in column_order if c in table.columns]]
        table = table.fillna("-")
        if markdown:
            head = [str(rows)] + [str(c) for c in table.columns]
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join([str(i)] + list(r)) + " |"
                      for i, r in zip(table.index, table.to_numpy())]
            return "\n".join(lines)
    else:
        header = "score (%)" if percent else "score"
        table = df.set_index(rows)[["cell"]].rename(columns={"cell": header})
        if "n" in df:
            table["n"] = df.set_index(rows)["n"]
        if "p_value" in df:
            pv = df.set_index(rows)
            why = pv["test"] if "test" in pv else ["-"] * len(pv)
            table["p (vs best)"] = [("best *" if b else (f"{p:.2e}" if np.isfinite(p) else w))
                                    for b, p, w in zip(pv["is_best"], pv["p_value"], why)]
    return table.to_string()


def ttest_pair(results, metric: str, first: str, second: str, *,
               method_col: str = "method", equal_var: bool = True) -> float:
    """p-value of the independent two-sample t-test between two methods' runs (NaN where
    `why_untestable`: fewer than 2 runs, or identical runs); Fig. 3 compares the top two and the
    bottom two schemes this way."""
    df = _frame(results, [method_col, metric])
    a, b = (pd.to_numeric(df.loc[df[method_col] == m, metric]).to_numpy(float)
            for m in (first, second))
    return _ttest_p(a, b, equal_var)


def annotation_saved(results, metric: str, *, method: str, baseline: str,
                     method_col: str = "method", fraction_col: str = "label_fraction") -> dict:
    """How much less labelled data `method` needs to match `baseline` trained on all its data.

    Definition (the paper's Fig. 6): the target is the baseline's mean score at its largest label
    fraction f_full. The method's mean curve over label fractions is linearly interpolated and
    f* is the smallest fraction where it reaches the target. Annotation saved = 1 - f*/f_full.
    If the method already reaches the target at its smallest fraction, f* is that fraction and
    `lower_bound` is True (the true saving is at least the value shown). If it never reaches the
    target, `saved` is 0.0 and `reached` is False.

    Returns:
        dict with `saved` (fraction in [0, 1]), `fraction_needed` (f*), `target`, `reached`,
        `lower_bound`.
    """
    summary = summarize_runs(results, metric, by=(method_col, fraction_col))
    base = summary[summary[method_col] == baseline]
    ours = summary[summary[method_col] == method].sort_values(fraction_col)
    for name, part in ((baseline, base), (method, ours)):
        if part.empty:
            raise ValueError(f"No runs of method {name!r}. Received methods: "
                             f"{sorted(summary[method_col].astype(str).unique())}.")
    f_full = float(base[fraction_col].max())
    target = float(base.loc[base[fraction_col] == f_full, "mean"].iloc[0])
    f = ours[fraction_col].to_numpy(float)
    m = ours["mean"].to_numpy(float)
    result = {"target": target, "reached": True, "lower_bound": False}
    if m[0] >= target:
        f_star, result["lower_bound"] = f[0], True
    else:
        above = np.flatnonzero(m >= target)
        if above.size == 0:
            return {**result, "reached": False, "fraction_needed": float("nan"), "saved": 0.0}
        k = int(above[0])
        f_star = f[k - 1] + (target - m[k - 1]) * (f[k] - f[k - 1]) / (m[k] - m[k - 1])
    result["fraction_needed"] = float(f_star)
    result["saved"] = float(max(0.0, 1.0 - f_star / f_full))
    return result
