"""`make demo`'s wiring: the short and `--long` demo pass their settings to each step, write the
figures, and print one verdict line per read-out (the steps themselves are mocked here)."""

import os

import numpy as np
import pandas as pd

from models_genesis.cli import main
from models_genesis.config import PRETRAIN_PRESETS
from models_genesis.pipeline import demo, demo_comparison, experiment
from models_genesis.pipeline.result_records import read_results
from tests.helpers import probe_data


def _mock_steps(monkeypatch, tmp_path, calls):
    weights = tmp_path / "g.h5"
    weights.write_bytes(b"")
    table = pd.DataFrame({"model_mse": np.linspace(1e-4, 1e-3, 12),
                          "identity_mse": np.r_[0.0, np.linspace(1e-3, 1e-2, 11)]},
                         index=[f"combination {k}" for k in range(12)])

    def pretraining(out_dir, **kwargs):
        calls["pretrain"] = kwargs
        return {"paths": {"keras2_weights": str(weights), "out_dir": str(tmp_path / "pretrain")},
                "model_mse": 0.01, "identity_mse": 0.2, "constant_mse": 0.02}

    def comparison(out_dir, *, weights, **kwargs):
        calls["comparison"] = dict(kwargs, weights=weights)
        runs = pd.DataFrame({"method": ["genesis", "genesis", "he_uniform", "he_uniform"],
                             "label_fraction": 0.25, "run": [0, 1, 0, 1],
                             "score": [0.8, 0.9, 0.7, 0.8]})
        return {"verdicts": ["linear probe: genesis is better", "full fine-tuning: no difference"],
                "figure": str(tmp_path / "comparison" / "comparison.png"),
                "probe": runs, "finetune": {"results": runs}}

    monkeypatch.setattr(demo, "show_release_model", lambda: None)
    monkeypatch.setattr(demo, "run_demo_pretraining", pretraining)
    monkeypatch.setattr(demo, "restoration_table",
                        lambda p: (table, str(tmp_path / "restoration_by_combination.csv")))
    monkeypatch.setattr(demo, "run_demo_experiment", comparison)
    return weights


def test_demo_runs_the_steps_and_prints_the_verdicts(tmp_path, monkeypatch, capsys):
    calls = {}
    weights = _mock_steps(monkeypatch, tmp_path, calls)
    out = demo.run_demo(tmp_path)
    assert calls == {"pretrain": {"overwrite": False},
                     "comparison": {"weights": str(weights)}}  # the defaults of each step
    assert os.path.getsize(tmp_path / "restoration_by_combination.png") > 1000
    assert out["restoration_figure"].endswith("restoration_by_combination.png")
    (record,) = read_results(out["results"])["records"]  # the demo's numbers, as a result record
    assert record["numbers"]["model / best constant"] == 0.5
    assert [row[:2] for row in record["table"]["rows"]] == [
        ["linear probe (BN recomputed), 2 runs", "25%"], ["full fine-tuning, 2 runs", "25%"]]
    printed = capsys.readouterr().out
    assert printed.rstrip().endswith("Verdicts:\nlinear probe: genesis is better\n"
                                     "full fine-tuning: no difference")


def test_demo_long_pretrains_longer_and_compares_more_runs(tmp_path, monkeypatch, capsys):
    calls = {}
    _mock_steps(monkeypatch, tmp_path, calls)
    demo.run_demo(tmp_path, long=True)
    assert calls["pretrain"]["epochs"] == (demo.LONG_PRETRAIN_FACTOR
                                           * PRETRAIN_PRESETS["demo"]["epochs"])
    assert calls["comparison"]["runs"] == 10 and calls["comparison"]["label_fractions"][0] == 0.1
    assert "demo --long" in capsys.readouterr().out


def test_cli_demo_long_defaults_to_its_own_folder(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(demo, "run_demo", lambda out, **kw: seen.append((out, kw)))
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--long"]) == 0 and main(["demo"]) == 0
    assert seen == [("runs/demo_long", {"overwrite": False, "long": True}),
                    ("runs/demo", {"overwrite": False, "long": False})]


def test_demo_experiment_splits_the_target_phantoms_and_runs_both_readouts(tmp_path,
                                                                          monkeypatch, capsys):

    seen = {}
    data = probe_data()
    runs = pd.DataFrame({"method": ["genesis", "he_uniform"] * 2, "score": [0.9, 0.6, 0.8, 0.7],
                         "label_fraction": 0.25})

    def load(task, folder, **kwargs):
        seen["load"] = (task, folder, kwargs)
        return data

    def probe(data_, methods, **kwargs):
        seen["probe"] = (methods, kwargs)
        return runs

    def finetune(task, inits, n, fractions, **kwargs):
        seen["finetune"] = (task, inits, n, fractions, kwargs["overrides"])
        return {"results": runs, "table": "table", "results_csv": "r.csv"}

    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "phantoms.json").write_text("{}")
    monkeypatch.setattr(demo_comparison, "load_target_data", load)
    monkeypatch.setattr("models_genesis.pipeline.readouts.run_probe", probe)
    monkeypatch.setattr(demo_comparison, "run_experiment", finetune)
    monkeypatch.setattr(demo_comparison, "_weights_width", lambda w: 4)
    out = demo_comparison.run_demo_experiment(tmp_path, weights=str(tmp_path / "g.h5"), runs=5,
                                              progress=False)
    task, folder, kwargs = seen["load"]
    assert (task, folder) == ("ncc", str(tmp_path / "targets"))
    assert kwargs["subsets"] == demo_comparison.DEMO_TARGET_SUBSETS
    assert seen["probe"][0] == {"genesis": str(tmp_path / "g.h5"), "he_uniform": None}
    assert seen["probe"][1]["n_base_filters"] == 4 and seen["probe"][1]["runs"] == 5
    assert seen["finetune"][:4] == ("ncc", ["genesis", "he_uniform"], 5, [0.25])
    assert seen["finetune"][4]["n_base_filters"] == 4
    assert len(out["verdicts"]) == 2 and out["verdicts"][0].startswith("linear probe")
    assert "full fine-tuning, NCC AUC, 25% of the labels" in out["verdicts"][1]
    assert os.path.getsize(out["figure"]) > 1000
    assert capsys.readouterr().out.rstrip().endswith(out["verdicts"][-1])


def test_drop_stale_experiment_removes_only_runs_older_than_the_weights(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "results.csv").write_text("method,score\n")
    weights = tmp_path / "g.h5"
    weights.write_bytes(b"w")
    os.utime(exp / "results.csv", (1_000, 1_000))
    os.utime(weights, (2_000, 2_000))
    assert experiment.drop_stale_experiment(exp, weights) and not exp.exists()
    exp.mkdir()
    (exp / "results.csv").write_text("method,score\n")
    os.utime(exp / "results.csv", (3_000, 3_000))  # runs newer than the weights: kept
    assert not experiment.drop_stale_experiment(exp, weights) and exp.exists()
    assert not experiment.drop_stale_experiment(tmp_path / "none", weights)
