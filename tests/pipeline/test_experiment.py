"""The paper's protocol: resumable results CSV, mean ± s.d. table, t-tests, figures."""

import json
import os

import keras
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models_genesis.pipeline.experiment import append_result, read_results, run_experiment
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import save_keras2_weights
from tests.training.test_finetune import SHAPE, TINY, make_data


@pytest.fixture
def fit_counter(monkeypatch):
    """Counts real `keras.Model.fit` calls; `fail_after` makes the next call raise."""
    state = {"fits": 0, "fail_after": None}
    original = keras.Model.fit

    def counting_fit(self, *args, **kwargs):
        if state["fail_after"] is not None and state["fits"] >= state["fail_after"]:
            raise KeyboardInterrupt("interrupted by the test")
        state["fits"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", counting_fit)
    return state


@pytest.mark.large
def test_experiment_resumes_and_summarises_the_csv(rng, tmp_path, fit_counter):
    keras.utils.set_random_seed(1)
    weights = save_keras2_weights(unet_model_3d(SHAPE + (1,), n_base_filters=2),
                                  tmp_path / "genesis.h5")
    data = make_data(rng, n=(4, 4, 4))
    out = tmp_path / "exp"
    kwargs = dict(data=data, out_dir=out, weights=weights, run_eagerly=True, progress=False,
                  overrides=dict(TINY, epochs=1))
    args = ("ncs", ["genesis", "he_uniform"], 2, [1.0, 0.5])

    fit_counter["fail_after"] = 3  # interrupted during the 4th run
    with pytest.raises(KeyboardInterrupt):
        run_experiment(*args, **kwargs)
    partial = read_results(out / "results.csv")
    assert list(zip(partial["method"], partial["label_fraction"], partial["run"])) == [
        ("genesis", 1.0, 0), ("he_uniform", 1.0, 0), ("genesis", 0.5, 0)]
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]

    fit_counter["fail_after"] = None
    result = run_experiment(*args, **kwargs)
    assert fit_counter["fits"] == 8 and (result["n_trained"], result["n_resumed"]) == (5, 3)
    again = run_experiment(*args, **kwargs)
    assert fit_counter["fits"] == 8 and (again["n_trained"], again["n_resumed"]) == (0, 8)

    df = pd.read_csv(out / "results.csv")
    assert len(df) == 8 and not df.duplicated(["method", "label_fraction", "run"]).any()
    # Run r has seed r and the same labelled subset size for both methods.
    assert (df["seed"] == df["run"]).all()
    assert df.groupby(["label_fraction", "run"])["n_train"].nunique().max() == 1
    assert set(df.loc[df["label_fraction"] == 0.5, "n_train"]) == {2}
    assert np.allclose(df["score"], df["mean_iou"])

    summary = result["summary"]
    for (fraction, method), part in df.groupby(["label_fraction", "method"]):
        row = summary[(summary["label_fraction"] == fraction) & (summary["method"] == method)]
        assert row["mean"].item() == pytest.approx(part["score"].mean())
        assert row["sd"].item() == pytest.approx(part["score"].std(ddof=1))
    part = df[df["label_fraction"] == 1.0]
    best = summary[(summary["label_fraction"] == 1.0) & summary["is_best"]]["method"].item()
    other = ({"genesis", "he_uniform"} - {best}).pop()
    p = stats.ttest_ind(part.loc[part["method"] == other, "score"],
                        part.loc[part["method"] == best, "score"]).pvalue
    row = summary[(summary["label_fraction"] == 1.0) & (summary["method"] == other)]
    assert row["p_value"].item() == pytest.approx(p)
    mean_pct = f"{100 * part.loc[part['method'] == best, 'score'].mean():.2f}"
    assert mean_pct in result["table"] and "label fraction 50%" in result["table"]
    assert (out / "table.txt").read_text(encoding="utf-8").strip() == result["table"].strip()
    assert os.path.isfile(result["figures"]["bars"])
    assert os.path.isfile(result["figures"]["annotation_efficiency"])
    assert result["annotation_saved"]["baseline"] == "he_uniform"

    # A resumed experiment must keep its settings.
    with pytest.raises(ValueError, match="other settings"):
        run_experiment(*args, **dict(kwargs, overrides=dict(TINY, epochs=2)))
    assert fit_counter["fits"] == 8


def test_append_result_keeps_earlier_rows(tmp_path):
    path = tmp_path / "results.csv"
    append_result(path, {"method": "genesis", "label_fraction": 1.0, "run": 0, "score": 0.7})
    append_result(path, {"method": "uniform", "label_fraction": 1.0, "run": 0, "score": 0.6,
                         "unknown_key": 1})
    df = read_results(path)
    assert df["score"].tolist() == [0.7, 0.6] and "unknown_key" not in df
    assert sorted(os.listdir(tmp_path)) == ["results.csv"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(inits=["genesis"]), "needs `weights`"),
    (dict(inits=["he_uniform", "he_uniform"]), "distinct"),
    (dict(inits=["xavier"]), "init"),
    (dict(runs=0), "runs"),
    (dict(label_fractions=[0.0]), "label_fraction"),
    (dict(overrides={"seed": 3}), "may not set"),
    (dict(overrides={"input_shape": (12, 12, 8)}), "multiple of 8"),
    (dict(task="xyz"), "Unknown target task"),
])
def test_bad_arguments_fail_before_any_file(tmp_path, kwargs, message):
    args = dict(task="ncs", inits=["he_uniform"], runs=1, label_fractions=[1.0],
                out_dir=tmp_path / "exp", data=object())
    with pytest.raises(ValueError, match=message):
        run_experiment(**{**args, **kwargs})
    assert not (tmp_path / "exp").exists()


def test_finished_csv_is_summarised_without_training(tmp_path):
    # No run left to do: the settings are still recorded and the summary made from the CSV.
    out = tmp_path / "exp"
    os.makedirs(out)
    for method, score in (("uniform", 0.5), ("uniform", 0.7), ("he_uniform", 0.9),
                          ("he_uniform", 0.8)):
        run = 0 if score in (0.5, 0.9) else 1
        append_result(out / "results.csv", {"method": method, "label_fraction": 1.0, "run": run,
                                            "score": score, "dice": score, "foreground_iou": score})
    result = run_experiment("ncs", ["uniform", "he_uniform"], 2, [1.0], out_dir=out,
                            progress=False)
    assert result["n_trained"] == 0
    assert json.loads((out / "experiment.json").read_text(encoding="utf-8"))["task"] == "ncs"
    best = result["summary"].set_index("method")
    assert best.loc["he_uniform", "is_best"] and best.loc["uniform", "mean"] == pytest.approx(0.6)
