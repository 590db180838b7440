"""The plain-words verdict of a read-out (linear probe, full fine-tuning)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models_genesis.pipeline import readouts
from models_genesis.pipeline.readouts import verdict
from tests.helpers import probe_data


def _runs(a, b):
    return pd.DataFrame({"method": ["genesis"] * len(a) + ["he_uniform"] * len(b),
                         "score": list(a) + list(b)})


def test_verdict_states_better_worse_or_no_difference():
    a, b = [0.80, 0.82, 0.81], [0.60, 0.62, 0.61]
    p = stats.ttest_ind(a, b).pvalue
    line = verdict(_runs(a, b), method="genesis", baseline="he_uniform", what="probe, NCC AUC")
    assert line == (f"probe, NCC AUC: genesis is better than he_uniform (81.0 ± 1.0% vs "
                     f"61.0 ± 1.0%, 3 and 3 runs, p = {p:.2g}).")
    assert "is worse than" in verdict(_runs(b, a), method="genesis", baseline="he_uniform")
    same = verdict(_runs([0.5, 0.7], [0.6, 0.62]), method="genesis", baseline="he_uniform")
    assert same.startswith("no significant difference") and "cannot tell" in same
    one = verdict(_runs([0.5], [0.6]), method="genesis", baseline="he_uniform")
    assert "one run no test is possible" in one and "better" not in one.split(":")[0]
    assert "p =" not in one and "worse" not in one
    with pytest.raises(ValueError, match="No runs of 'rubik'"):
        verdict(_runs(a, b), method="rubik", baseline="he_uniform")


def test_verdict_of_identical_runs_is_no_t_test_and_scipy_stays_quiet():

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a scipy warning would fail the test
        line = verdict(_runs([0.7, 0.7, 0.7], [0.6, 0.65, 0.62]), method="genesis",
                       baseline="he_uniform")
    assert "identical runs of genesis" in line and "p =" not in line
    assert "better" not in line and "worse" not in line


def test_run_readouts_runs_the_probe_frozen_and_fine_tuning_in_full(tmp_path, monkeypatch,
                                                                       capsys):
    calls = []

    def fake_run_experiment(task, inits, runs, fractions, **kwargs):
        calls.append((task, inits, runs, fractions, kwargs))
        return {"results": _runs([0.8, 0.82], [0.6, 0.61])}

    monkeypatch.setattr(readouts, "run_experiment", fake_run_experiment)
    out = readouts.run_readouts(tmp_path, probe_data="phantoms", finetune_data="phantoms",
                                weights="g.h5", runs=2, label_fraction=0.25,
                                overrides={"n_base_filters": 2})
    (t1, i1, r1, f1, k1), (t2, i2, r2, f2, k2) = calls
    assert (t1, f1, t2, f2) == ("ncc", [1.0], "ncs", [0.25]) and i1 == i2 == ["genesis=g.h5",
                                                                               "he_uniform"]
    assert k1["overrides"] == {"n_base_filters": 2, "head": "linear", "freeze_encoder": True}
    assert k2["overrides"] == {"n_base_filters": 2} and k1["data_dir"] == "phantoms"
    printed = capsys.readouterr().out.splitlines()
    assert printed == out["verdicts"] and printed[0].startswith("linear probe")
    assert "genesis is better than he_uniform" in printed[1]


def test_recompute_batchnorm_normalises_its_inputs_exactly():
    import keras

    from models_genesis.models.heads import target_model

    keras.utils.set_random_seed(0)
    model = target_model("classification", (16, 16, 8, 1), n_base_filters=2, head="linear")
    x = np.random.default_rng(1).random((6, 16, 16, 8, 1)).astype("float32") * 3 + 2
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert readouts.recompute_batchnorm(model, x) == len(bns) > 0
    assert all(l.momentum == 0.99 for l in bns)  # restored afterwards
    for layer in bns[:3]:  # each normalises, in inference mode, what reaches it
        a = np.asarray(keras.Model(model.inputs, layer.input)(x, training=False), np.float64)
        a = a.reshape(-1, a.shape[-1])
        np.testing.assert_allclose(layer.moving_mean.numpy(), a.mean(0), rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy(), a.var(0), rtol=1e-2,
                                   atol=1e-5)


def test_labelled_rows_are_the_crops_finetune_labels():
    from models_genesis.data.target_tasks.common import subsample_fraction

    data = probe_data()
    rows = readouts.labelled_rows(data, 0.25, seed=3)
    kept = subsample_fraction(data, 0.25, rng=np.random.default_rng([3, 0x1ABE1]))
    np.testing.assert_array_equal(data.x_train[rows], kept.x_train)
    assert len(rows) == 6 and list(readouts.labelled_rows(data, 1.0, seed=3)) == list(range(24))


def test_run_probe_fits_a_linear_classifier_on_frozen_features(tmp_path):
    data = probe_data()
    results = readouts.run_probe(data, {"random": None}, runs=2, label_fractions=(0.5, 1.0),
                                 n_base_filters=2, out_csv=tmp_path / "probe.csv",
                                 progress=False)
    assert len(results) == 4 and set(results["n_train"]) == {12, 24}
    assert (results["n_test"] == 20).all()
    assert results["score"].min() > 0.8  # the label is in the intensity: linearly separable
    assert pd.read_csv(tmp_path / "probe.csv")["score"].tolist() == pytest.approx(
        results["score"].tolist())


def test_run_probe_reuses_a_pretrained_encoders_features(monkeypatch):
    calls = []

    def fake_features(data, *, weights, seed, **options):
        calls.append((weights, seed))
        f = np.c_[data.y_train + 0.1 * seed, np.ones(len(data.y_train))]
        return f, np.c_[data.y_test, np.ones(len(data.y_test))]

    monkeypatch.setattr(readouts, "encoder_features", fake_features)
    results = readouts.run_probe(probe_data(), {"genesis": "g.h5", "he_uniform": None}, runs=3,
                                 label_fractions=(0.5,), seed=10, progress=False)
    assert calls == [("g.h5", 10), (None, 10), (None, 11), (None, 12)]
    assert results["seed"].tolist() == [10, 11, 12] * 2
    lines = readouts.verdicts(results, method="genesis", baseline="he_uniform", what="probe")
    assert lines == [verdict(results, method="genesis", baseline="he_uniform",
                             what="probe, 50% of the labels")]


def test_labelled_rows_at_all_labels_bootstrap_per_run():
    data = probe_data()
    draws = [readouts.labelled_rows(data, 1.0, seed=s, bootstrap=True) for s in (3, 3, 4)]
    np.testing.assert_array_equal(draws[0], draws[1])  # seeded
    assert not np.array_equal(draws[0], draws[2])  # another run, another resample
    assert len(draws[0]) == 24 and len(np.unique(draws[0])) < 24  # with replacement


def test_a_fixed_encoders_probe_runs_differ_at_all_labels(monkeypatch):
    # A pre-trained encoder's features are the same in every run; at 100% of the labels the
    # runs used to be identical (zero variance, a meaningless t-test). Noisy features make the
    # AUC depend on which crops train the classifier.

    def fake_features(data, *, weights, seed, **options):
        noise = np.random.default_rng(0)
        return (np.c_[data.y_train + noise.normal(0, 1.5, len(data.y_train)),
                      noise.normal(size=len(data.y_train))],
                np.c_[data.y_test + noise.normal(0, 1.5, len(data.y_test)),
                      noise.normal(size=len(data.y_test))])

    monkeypatch.setattr(readouts, "encoder_features", fake_features)
    results = readouts.run_probe(probe_data(), {"genesis": "g.h5"}, runs=4, label_fractions=(1.0,),
                                 progress=False)
    assert results["score"].nunique() > 1
