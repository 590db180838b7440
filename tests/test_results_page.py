"""docs/results.md is generated from the recorded results and current; other pages do not copy it."""

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models_genesis.pipeline.demo import demo_record, readout_rows
from models_genesis.pipeline.result_records import (add_record, check_record, new_record,
                                                    read_results, record_run)

ROOT = Path(__file__).resolve().parents[1]


def _load_page_script():
    spec = importlib.util.spec_from_file_location("results_page",
                                                  ROOT / "benchmarks" / "results_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


page = _load_page_script()


def test_results_page_is_current():
    committed = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert committed == page.render_page(), (
        "docs/results.md is stale: run `python benchmarks/results_page.py`")
    assert page.main(["--check"]) == 0


def test_every_record_says_when_where_and_how():
    files = page.result_files()
    assert files and files[0].stem == "demo"
    for path in files:
        for record in read_results(path)["records"]:
            for field in ("date", "machine", "command"):
                assert record[field].strip(), f"{path.name}: {record['name']!r} has no {field}"


def test_a_stale_page_is_reported(tmp_path, monkeypatch):
    stale = tmp_path / "results.md"
    stale.write_text("old numbers\n", encoding="utf-8")
    monkeypatch.setattr(page, "PAGE", stale)
    assert page.main(["--check"]) == 1
    assert stale.read_text(encoding="utf-8") == "old numbers\n"


def test_docs_and_readme_link_instead_of_copying():
    """No mean +- s.d. recorded in a results table is repeated in the README or another doc."""
    measured = set()
    for path in page.result_files():
        for record in read_results(path)["records"]:
            for row in record.get("table", {}).get("rows", []):
                measured.update(str(c) for c in row if re.search(r"\d ± \d", str(c)))
    assert measured
    pages = [ROOT / "README.md", ROOT / "benchmarks" / "README.md"] + [
        p for p in (ROOT / "docs").glob("*.md") if p.name != "results.md"]
    for doc in pages:
        text = doc.read_text(encoding="utf-8")
        copied = sorted(v for v in measured if v in text)
        assert not copied, f"{doc.relative_to(ROOT)} copies measured numbers {copied}"


def test_render_record_shows_provenance_and_table():
    record = new_record("r", "python x.py", numbers={"rate": 3.5}, date="2026-01-02",
                        machine="m", table={"columns": ["a", "b"], "rows": [[1, "x|y"]]},
                        notes="what it means")
    lines = page.render_record(record)
    assert "- measured: 2026-01-02" in lines and "- machine: m" in lines
    assert "- command: `python x.py`" in lines
    assert "| rate | 3.5 |" in lines and "| 1 | x\\|y |" in lines and "what it means" in lines


@pytest.mark.parametrize("bad, match", [
    ({"name": "r", "machine": "m", "command": "c"}, "Missing: \\['date'\\]"),
    ({"name": "r", "date": " ", "machine": "m", "command": "c"}, "Missing: \\['date'\\]"),
    ({"name": "r", "date": "d", "machine": "m", "command": "c", "colour": 1}, "Unknown"),
    ({"name": "r", "date": "d", "machine": "m", "command": "c",
      "table": {"columns": ["a", "b"], "rows": [[1]]}}, "every row must have"),
])
def test_check_record_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        check_record(bad)


def test_add_record_appends_and_keeps_the_earlier_ones(tmp_path):
    path = tmp_path / "bench.json"
    add_record(path, new_record("first", "c1", numbers={"x": 1}, date="d1", machine="m"),
               title="Bench")
    record_run(path, "second", numbers={"x": 2})
    data = read_results(path)
    assert data["title"] == "Bench"
    assert [r["name"] for r in data["records"]] == ["first", "second"]
    assert data["records"][1]["numbers"] == {"x": 2} and data["records"][1]["date"]
    assert not list(tmp_path.glob("*.tmp"))
    assert record_run(None, "nothing") is None


def test_read_results_rejects_another_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"rows": []}), encoding="utf-8")
    with pytest.raises(ValueError, match="results file"):
        read_results(path)


def _runs(genesis, scratch, fraction=0.25):
    rows = [{"method": m, "label_fraction": fraction, "run": i, "score": s}
            for m, scores in (("genesis", genesis), ("he_uniform", scratch))
            for i, s in enumerate(scores)]
    return pd.DataFrame(rows)


def test_readout_rows_are_mean_sd_and_t_test():
    from scipy import stats

    g, s = [0.70, 0.80, 0.90], [0.60, 0.65, 0.70]
    (row,) = readout_rows(_runs(g, s), "probe")
    p = stats.ttest_ind(g, s).pvalue
    assert row == ["probe, 3 runs", "25%", "80.0 ± 10.0", "65.0 ± 5.0", f"{p:.2g}"]


def test_demo_record_holds_the_demo_numbers():
    restoration = pd.DataFrame({"model_mse": [0.002, 0.01, 0.004], "identity_mse": [0.0, 0.2, 0.003]},
                               index=["identity", "nonlinear", "local_shuffling"])
    pretraining = {"model_mse": 0.0099, "identity_mse": 0.274, "constant_mse": 0.0152}
    experiment = {"probe": pd.concat([_runs([0.7, 0.8], [0.6, 0.7], 0.1),
                                      _runs([0.8, 0.9], [0.7, 0.8], 1.0)]),
                  "finetune": {"results": _runs([0.9, 0.8], [0.9, 0.95])},
                  "verdicts": ["line one", "line two"]}
    record = demo_record(pretraining, restoration, experiment, seconds=12.34, long=False)
    n = record["numbers"]
    assert n["model / best constant"] == round(0.0099 / 0.0152, 2)
    assert n["transformed combinations below doing nothing"] == "1 of 2"
    assert n["closest to doing nothing"] == f"local_shuffling, {0.004 / 0.003:.2f}x"
    assert n["MSE on untransformed cubes"] == 0.002
    labels = [row[1] for row in record["table"]["rows"]]
    assert labels == ["10%", "100%", "25%"]
    assert record["notes"] == "line one\nline two"
    assert np.isclose(n["wall time of the demo (s)"], 12.3)
