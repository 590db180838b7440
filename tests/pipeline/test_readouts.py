"""The plain-words verdict of a read-out (linear probe, full fine-tuning)."""

import pandas as pd
import pytest
from scipy import stats

from models_genesis.pipeline import readouts
from models_genesis.pipeline.readouts import verdict


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
    assert "no conclusion" in one
    with pytest.raises(ValueError, match="No runs of 'rubik'"):
        verdict(_runs(a, b), method="rubik", baseline="he_uniform")


def test_run_readouts_runs_the_probe_frozen_and_fine_tuning_in_full(tmp_path, monkeypatch,
                                                                       capsys):
    calls = []

    def fake_run_experiment(task, inits, runs, fractions, **kwargs):
        calls.append((task, inits, runs, fractions, kwargs))
        return {"results": _runs([0.8, 0.82], [0.6, 0.61])}

    monkeypatch.setattr("models_genesis.pipeline.experiment.run_experiment", fake_run_experiment)
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
