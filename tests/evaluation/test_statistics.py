"""Tests of the run-level protocol: summaries, t-tests, tables, annotation saved."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models_genesis.evaluation import statistics as S


def _records():
    genesis = [0.78, 0.77, 0.79, 0.76]
    scratch = [0.70, 0.74, 0.72, 0.68]
    close = [0.77, 0.78, 0.76, 0.78]
    rows = [{"method": "genesis", "run": i, "iou": v} for i, v in enumerate(genesis)]
    rows += [{"method": "he_uniform", "run": i, "iou": v} for i, v in enumerate(scratch)]
    rows += [{"method": "close", "run": i, "iou": v} for i, v in enumerate(close)]
    return rows, genesis, scratch


def test_summarize_runs_mean_sample_sd_n():
    rows, genesis, _ = _records()
    table = S.summarize_runs(rows, "iou").set_index("method")
    assert table.loc["genesis", "mean"] == pytest.approx(0.775)
    # sample s.d. of (0.78, 0.77, 0.79, 0.76): sqrt(0.0005 / 3)
    assert table.loc["genesis", "sd"] == pytest.approx(np.sqrt(0.0005 / 3))
    assert table.loc["genesis", "n"] == 4
    with pytest.raises(ValueError, match="lacks column"):
        S.summarize_runs(rows, "auc")


def test_compare_to_best_uses_ttest_against_best():
    rows, genesis, scratch = _records()
    out = S.compare_to_best(pd.DataFrame(rows), "iou").set_index("method")
    assert bool(out.loc["genesis", "is_best"]) and np.isnan(out.loc["genesis", "p_value"])
    expected = stats.ttest_ind(scratch, genesis).pvalue
    assert out.loc["he_uniform", "p_value"] == pytest.approx(expected)
    assert bool(out.loc["he_uniform", "significant"])
    assert not bool(out.loc["close", "significant"])  # mean 0.7725 vs 0.775
    low = S.compare_to_best(rows, "iou", higher_is_better=False).set_index("method")
    assert bool(low.loc["he_uniform", "is_best"])


def test_compare_within_groups_and_format_table():
    rows, _, _ = _records()
    rows += [dict(r, task="lcs", iou=1 - r["iou"]) for r in rows]
    rows = [dict(r, task=r.get("task", "ncs")) for r in rows]
    out = S.compare_to_best(rows, "iou", within=("task",))
    best = out[out["is_best"]].set_index("task")["method"]
    assert best["ncs"] == "genesis" and best["lcs"] == "he_uniform"
    text = S.format_table(S.summarize_runs(rows, "iou", by=("method", "task")), columns="task")
    assert "77.50 ± 1.29" in text and "22.50 ± 1.29" in text
    text = S.format_table(S.compare_to_best(_records()[0], "iou"))
    assert "best *" in text and "71.00 ± 2.58" in text


def test_table3_marks_best_and_not_significant_cells():
    rows, genesis, scratch = _records()
    rows = [dict(r, task="ncs") for r in rows]
    summary = S.compare_to_best(rows, "iou", within=("task",))
    text = S.format_table(summary, columns="task", row_order=["genesis", "close", "he_uniform"])
    lines = text.splitlines()[2:]
    assert [line.split()[0] for line in lines] == ["genesis", "close", "he_uniform"]
    # genesis best "*"; close p = 0.76 -> "="; he_uniform p < 0.05 -> no mark.
    assert lines[0].endswith("77.50 ± 1.29 *") and lines[1].endswith("77.25 ± 0.96 =")
    assert lines[2].endswith("71.00 ± 2.58")
    md = S.format_table(summary, columns="task", markdown=True, row_order=["genesis"])
    assert md.splitlines() == ["| method | ncs |", "|---|---|", "| genesis | **77.50 ± 1.29** |"]
    assert S.ttest_pair(rows, "iou", "he_uniform", "genesis") == pytest.approx(
        stats.ttest_ind(scratch, genesis).pvalue)
    assert np.isnan(S.ttest_pair(rows[:1] + rows[4:5], "iou", "genesis", "he_uniform"))


def test_no_t_test_of_identical_runs_or_one_run_and_no_scipy_warning():
    # The linear probe of one frozen encoder on the same data: five identical runs. scipy's
    # t-test then divides by a zero variance ("catastrophic cancellation") and its p-value is
    # meaningless: no test, "identical runs", and the cell is marked "?" (not "significantly
    # worse").
    rows = [{"method": "genesis", "task": "ncc", "auc": 0.61} for _ in range(5)]
    rows += [{"method": "he_uniform", "task": "ncc", "auc": v}
             for v in (0.70, 0.72, 0.69, 0.74, 0.71)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would fail the test
        out = S.compare_to_best(rows, "auc", within=("task",)).set_index("method")
        assert np.isnan(S.ttest_pair(rows, "auc", "genesis", "he_uniform"))
    assert out.loc["genesis", "test"] == S.IDENTICAL and np.isnan(out.loc["genesis", "p_value"])
    assert out.loc["he_uniform", "test"] == "best"
    text = S.format_table(out.reset_index(), columns="task")
    assert "61.00 ± 0.00 ?" in text and "71.20 ± 1.92 *" in text
    assert "p (vs best)" in S.format_table(S.compare_to_best(rows, "auc"))
    assert S.IDENTICAL in S.format_table(S.compare_to_best(rows, "auc"))
    # One run each (`experiment --runs 1`): one row is the best, the other untested, not worse.
    one = [{"method": m, "task": "ncc", "auc": v} for m, v in (("genesis", 0.6), ("rubik", 0.7))]
    out = S.compare_to_best(one, "auc", within=("task",)).set_index("method")
    assert out.loc["genesis", "test"] == S.ONE_RUN and not out.loc["genesis", "significant"]
    lines = S.format_table(out.reset_index(), columns="task").splitlines()
    assert lines[-2].endswith("60.00 ± 0.00 ?") and lines[-1].endswith("70.00 ± 0.00 *")
    assert S.why_untestable([1, 2], [3, 4]) is None
    assert S.why_untestable([1], [3, 4]) == S.ONE_RUN
    assert S.why_untestable([1, 1], [3, 4]) == S.IDENTICAL


def test_annotation_saved_interpolates():
    def rows(method, curve):
        return [{"method": method, "label_fraction": f, "iou": v} for f, v in curve.items()]

    scratch = rows("scratch", {0.1: 0.50, 0.5: 0.60, 1.0: 0.70})
    # genesis crosses 0.70 halfway between 0.25 (0.65) and 0.5 (0.75) -> f* = 0.375, saved 62.5%.
    genesis = rows("genesis", {0.25: 0.65, 0.5: 0.75, 1.0: 0.80})
    res = S.annotation_saved(scratch + genesis, "iou", method="genesis", baseline="scratch")
    assert res["fraction_needed"] == pytest.approx(0.375)
    assert res["saved"] == pytest.approx(0.625) and res["reached"] and not res["lower_bound"]
    early = rows("genesis", {0.25: 0.71, 1.0: 0.8})
    res = S.annotation_saved(scratch + early, "iou", method="genesis", baseline="scratch")
    assert res["lower_bound"] and res["saved"] == pytest.approx(0.75)
    never = rows("genesis", {0.5: 0.6, 1.0: 0.65})
    res = S.annotation_saved(scratch + never, "iou", method="genesis", baseline="scratch")
    assert not res["reached"] and res["saved"] == 0.0
    with pytest.raises(ValueError, match="No runs of method 'models_genesis'"):
        S.annotation_saved(scratch, "iou", method="models_genesis", baseline="scratch")


def test_one_run_per_method_is_marked_untested_not_significantly_worse():
    rows = [{"method": "genesis", "task": "ncs", "iou": 0.8},
            {"method": "he_uniform", "task": "ncs", "iou": 0.7}]
    summary = S.compare_to_best(rows, "iou", within=("task",))
    lines = S.format_table(summary, columns="task", row_order=["genesis", "he_uniform"]
                           ).splitlines()[2:]
    assert lines[0].endswith(f" {S.BEST_MARK}")
    assert lines[1].endswith(f" {S.UNTESTED_MARK}") and S.UNTESTED_MARK in S.TABLE3_LEGEND
