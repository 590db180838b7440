"""Table 3 says when a row means nothing: the pre-training's proxy-task score against chance."""

import json
import os

import numpy as np
import pandas as pd

from models_genesis.methods import proxy_summary
from models_genesis.pipeline import experiment, results_table
from models_genesis.pipeline.experiment import read_results, run_experiment
from models_genesis.pipeline.experiment_key import method_proxy


def test_proxy_summary_against_chance_and_doing_nothing():
    chance = {"loss": 2.3, "accuracy": 0.1}
    learned = proxy_summary("jigsaw", {"accuracy": 0.6, "n_val": 64, "chance_level": chance})
    assert learned["proxy_learned"] is True and learned["proxy_chance"] == 0.1
    # 0.2 with 64 samples: within 3 binomial standard errors (0.11) of 0.1: not learned.
    assert proxy_summary("jigsaw", {"accuracy": 0.2, "n_val": 64,
                                    "chance_level": chance})["proxy_learned"] is False
    rubik = {"ordering_accuracy": 0.9, "orientation_accuracy": 0.66, "n_val": 200,
             "chance_level": {"ordering_accuracy": 0.1, "orientation_accuracy": 2 / 3}}
    assert proxy_summary("rubik", rubik)["proxy_learned"] is False  # one head at chance
    assert proxy_summary("genesis", {"model_mse": 0.01, "identity_mse": 0.02})["proxy_learned"]
    assert not proxy_summary("denoising", {"model_mse": 0.03, "identity_mse": 0.02})[
        "proxy_learned"]
    assert proxy_summary("jigsaw", None)["proxy_learned"] is None


def test_method_proxy_reads_the_metrics_beside_the_weights(tmp_path):
    run = tmp_path / "runs" / "rubik"
    os.makedirs(run)
    (run / "rubik.h5").write_bytes(b"")
    (run / "metrics.json").write_text(json.dumps(
        {"ordering_accuracy": 0.1, "orientation_accuracy": 0.6, "n_val": 64,
         "chance_level": {"ordering_accuracy": 0.1, "orientation_accuracy": 2 / 3}}))
    assert method_proxy("rubik", str(run / "rubik.h5"))["proxy_learned"] is False
    assert method_proxy("he_uniform", None)["proxy_learned"] is None
    assert method_proxy("genesis", str(tmp_path / "Genesis_Chest_CT.h5"))["proxy_learned"] is None


def _runs(flag_rubik: bool):
    rows = []
    for method, scores, learned in (("genesis", (0.80, 0.82, 0.81), True),
                                    ("rubik", (0.70, 0.72, 0.69), not flag_rubik),
                                    ("he_uniform", (0.71, 0.73, 0.70), None)):
        for run, score in enumerate(scores):
            rows.append({"task": "ncc", "method": method, "init": method, "label_fraction": 1.0,
                         "run": run, "score": score,
                         "proxy_metric": None if learned is None else "validation accuracy",
                         "proxy_score": None if learned is None else 0.1,
                         "proxy_chance": None if learned is None else 0.1,
                         "proxy_learned": learned})
    return pd.DataFrame(rows)


def test_table3_flags_a_row_whose_pretraining_learned_nothing(tmp_path):
    out = results_table.summarize_experiment(_runs(True), tmp_path, tasks=["ncc"],
                                      methods=["genesis", "rubik", "he_uniform"])
    assert list(out["proxy_flags"]) == ["rubik"]
    row = next(l for l in out["table"].splitlines() if l.startswith("rubik"))
    assert row.startswith(f"rubik {results_table.NOT_LEARNED_MARK}")
    mark = results_table.NOT_LEARNED_MARK
    assert f"{mark} rubik: its pre-training did not beat chance" in out["table"]
    assert "did not beat chance" in out["markdown"]
    assert (tmp_path / "table.txt").read_text(encoding="utf-8") == out["table"] + "\n"
    plain = results_table.summarize_experiment(_runs(False), tmp_path, tasks=["ncc"])
    assert plain["proxy_flags"] == {} and results_table.NOT_LEARNED_MARK not in plain["table"]


def test_the_runner_records_each_methods_proxy_score(tmp_path, monkeypatch):
    weights = tmp_path / "rubik" / "rubik.h5"
    os.makedirs(weights.parent)
    weights.write_bytes(b"weights")
    (weights.parent / "metrics.json").write_text(json.dumps(
        {"ordering_accuracy": 0.1, "orientation_accuracy": 0.66, "n_val": 64,
         "chance_level": {"ordering_accuracy": 0.1, "orientation_accuracy": 2 / 3}}))
    seen = []

    def fake_finetune(config, data, **kwargs):  # the runner's bookkeeping, not the training
        seen.append(config.init)
        return {"score": 0.5 + 0.01 * config.seed + 0.1 * (config.init == "rubik"),
                "metric": "auc"}

    monkeypatch.setattr(experiment, "finetune", fake_finetune)
    data = type("Data", (), {"x_train": np.zeros((4, 1)), "x_valid": np.zeros((2, 1)),
                             "x_test": np.zeros((2, 1))})()
    result = run_experiment("ncc", [f"rubik={weights}", "he_uniform"], 2, data=data,
                            out_dir=tmp_path / "exp", progress=False)
    assert seen == ["rubik", "he_uniform"] * 2
    df = read_results(tmp_path / "exp" / "results.csv")
    rubik = df[df["method"] == "rubik"]
    assert rubik["proxy_learned"].astype(str).str.lower().eq("false").all()
    assert df.loc[df["method"] == "he_uniform", "proxy_learned"].isna().all()
    assert "rubik †" in result["table"] and "did not beat chance" in result["table"]
