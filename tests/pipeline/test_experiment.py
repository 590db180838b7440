"""The paper's tables in one runner: Table 3 layout, t-test marks, Figs. 3/5/6, resume key."""

import json
import os
import shutil

import keras
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models_genesis.data.phantoms.targets import get_phantom_maker
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import save_keras2_weights
from models_genesis.pipeline.experiment import (
    append_result,
    parse_methods,
    read_results,
    run_experiment,
)
from models_genesis.pipeline.experiment_key import check_experiment_key, method_entry, task_entry

SHAPE = (16, 16, 8)
TINY = dict(n_base_filters=2, epochs=2, batch_size=8, patience=2, input_shape=SHAPE,
            augment=False, steps_per_epoch=1, validation_steps=1)


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


def _genesis_file(path, seed):
    keras.utils.set_random_seed(seed)
    return save_keras2_weights(unet_model_3d(SHAPE + (1,), n_base_filters=2), path)


def _markdown_cells(markdown: str, fraction: str) -> tuple:
    """(header, {method: [cells]}) of one label-fraction block of `table3.md`."""
    lines = markdown.splitlines()
    start = lines.index(f"**label fraction {fraction}**") + 2
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return header, rows


def _expected_cell(df, task, method, fraction):
    """A Table 3 cell computed by hand from results.csv: mean ± s.d. and the t-test mark."""
    part = df[(df["task"] == task) & (df["label_fraction"] == fraction)]
    scores = {m: g["score"].to_numpy() for m, g in part.groupby("method")}
    best = max(scores, key=lambda m: scores[m].mean())
    values = scores[method]
    text = f"{100 * values.mean():.2f} ± {100 * values.std(ddof=1):.2f}"
    if method == best:
        return f"**{text}**"
    p = stats.ttest_ind(values, scores[best]).pvalue
    return text + (" =" if p >= 0.05 else "")


@pytest.mark.large
def test_two_tasks_table3_figures_and_safe_resume(tmp_path, fit_counter):
    make = get_phantom_maker("chest")
    ncs_dir, ncc_dir = tmp_path / "chest_a", tmp_path / "chest_b"
    make(ncs_dir, n=10, seed=0, shape=(96, 96, 48), progress=False)
    make(ncc_dir, n=10, seed=1, shape=(96, 96, 48), progress=False)
    genesis = _genesis_file(tmp_path / "genesis.h5", 1)
    out = tmp_path / "exp"
    args = (["ncs", "ncc"], [f"genesis={genesis}", "he_uniform"], 2, [1.0, 0.5],
            {"ncs": str(ncs_dir), "ncc": str(ncc_dir)}, out)
    kwargs = dict(overrides=TINY, run_eagerly=True, progress=False)

    fit_counter["fail_after"] = 3  # interrupted during the 4th run
    with pytest.raises(KeyboardInterrupt):
        run_experiment(*args, **kwargs)
    partial = read_results(out / "results.csv")
    assert list(zip(partial["task"], partial["method"], partial["label_fraction"],
                    partial["run"])) == [("ncs", "genesis", 1.0, 0), ("ncs", "he_uniform", 1.0, 0),
                                         ("ncs", "genesis", 0.5, 0)]
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]

    fit_counter["fail_after"] = None
    result = run_experiment(*args, **kwargs)
    assert fit_counter["fits"] == 16 and (result["n_trained"], result["n_resumed"]) == (13, 3)
    key = json.loads((out / "experiment.json").read_text(encoding="utf-8"))
    assert key["tasks"]["ncs"]["data_dir"] == str(ncs_dir.resolve())
    assert key["tasks"]["ncc"]["counts"] == {s: int(v) for s, v in zip(
        ("test", "train", "valid"), result["results"].query("task == 'ncc'")[
            ["n_test", "n_train", "n_valid"]].iloc[0])}
    assert key["methods"]["genesis"]["sha256"] and key["methods"]["he_uniform"]["sha256"] is None

    # Table 3's layout: rows the methods, columns the tasks, cells computed by hand.
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 16 and not df.duplicated(["task", "method", "label_fraction", "run"]).any()
    assert (df["seed"] == df["run"]).all() and set(df["init"]) == {"genesis", "he_uniform"}
    markdown = (out / "table3.md").read_text(encoding="utf-8")
    for fraction, label in ((1.0, "100%"), (0.5, "50%")):
        header, rows = _markdown_cells(markdown, label)
        assert header == ["method", "ncs", "ncc"] and list(rows) == ["genesis", "he_uniform"]
        for method, cells in rows.items():
            assert cells == [_expected_cell(df, t, method, fraction) for t in ("ncs", "ncc")]
    table = (out / "table.txt").read_text(encoding="utf-8")
    assert "label fraction 100%" in table and "NCC: AUC" in table
    # Fig. 5's curves: the hand mean over runs of each run's history.csv.
    curves = pd.read_csv(out / "learning_curves.csv")
    runs = df[(df["task"] == "ncs") & (df["method"] == "genesis") & (df["label_fraction"] == 1.0)]
    first = [pd.read_csv(out / d / "history.csv")["val_dice"].iloc[0] for d in runs["run_dir"]]
    row = curves[(curves["task"] == "ncs") & (curves["method"] == "genesis")
                 & (curves["epoch"] == 1)]
    assert row["column"].item() == "val_dice" and row["n"].item() == 2
    assert row["mean"].item() == pytest.approx(np.mean(first))
    assert set(curves.loc[curves["task"] == "ncc", "column"]) == {"val_auc"}
    for name in ("fig3_bars.png", "fig5_learning_curves.png", "fig6_label_efficiency.png"):
        assert os.path.getsize(out / name) > 1000
    assert set(result["figures"]) == {"bars", "learning_curves", "annotation_efficiency"}
    saved = pd.read_csv(out / "annotation_saved.csv")
    assert sorted(zip(saved["task"], saved["method"], saved["baseline"])) == [
        ("ncc", "genesis", "he_uniform"), ("ncs", "genesis", "he_uniform")]
    assert [(r["task"], r["method"]) for r in result["annotation_saved"]] == [
        ("ncs", "genesis"), ("ncc", "genesis")]

    # Same settings: nothing new is trained (the data are not even reloaded).
    again = run_experiment(*args, **kwargs)
    assert fit_counter["fits"] == 16 and (again["n_trained"], again["n_resumed"]) == (0, 16)

    # Changed weights (same path, new content) or another data folder: refused, nothing trained.
    before = (out / "results.csv").read_bytes()
    _genesis_file(genesis, 2)
    with pytest.raises(ValueError, match="the weights of 'genesis' changed"):
        run_experiment(*args, **kwargs)
    _genesis_file(genesis, 1)  # the same weights again: accepted
    assert run_experiment(*args, **kwargs)["n_trained"] == 0
    copy = tmp_path / "chest_copy"
    shutil.copytree(ncs_dir, copy)
    moved = (args[0], args[1], args[2], args[3], {"ncs": str(copy), "ncc": str(ncc_dir)}, out)
    with pytest.raises(ValueError, match="the data folder of 'ncs' changed"):
        run_experiment(*moved, **kwargs)
    assert fit_counter["fits"] == 16 and (out / "results.csv").read_bytes() == before


def test_append_result_keeps_earlier_rows(tmp_path):
    path = tmp_path / "results.csv"
    append_result(path, {"method": "genesis", "label_fraction": 1.0, "run": 0, "score": 0.7})
    append_result(path, {"method": "uniform", "label_fraction": 1.0, "run": 0, "score": 0.6,
                         "unknown_key": 1})
    df = read_results(path)
    assert df["score"].tolist() == [0.7, 0.6] and "unknown_key" not in df
    assert sorted(os.listdir(tmp_path)) == ["results.csv"]


def test_named_initialisations(tmp_path):
    assert parse_methods(["genesis", "he_uniform"], "W.h5") == {
        "genesis": ("genesis", "W.h5"), "he_uniform": ("he_uniform", None)}
    assert parse_methods(["genesis_nonlinear=A.h5", "rubik=B.h5", "patch_shuffling_x=C.h5"]) == {
        "genesis_nonlinear": ("genesis", "A.h5"), "rubik": ("rubik", "B.h5"),
        "patch_shuffling_x": ("patch_shuffling", "C.h5")}


@pytest.mark.parametrize("inits, weights, message", [
    (["genesis", "rubik"], "W.h5", "give each its file"),
    (["he_uniform=W.h5"], None, "takes no weights"),
    (["mine=W.h5"], None, "Unknown initialisation 'mine'"),
    (["genesis_x"], "W.h5", "Unknown initialisation"),  # a label needs its own file
])
def test_bad_named_initialisations(inits, weights, message):
    with pytest.raises(ValueError, match=message):
        parse_methods(inits, weights)


@pytest.mark.parametrize("kwargs, message", [
    (dict(inits=["genesis"]), "needs `weights`"),
    (dict(inits=["he_uniform", "he_uniform"]), "distinct"),
    (dict(inits=["xavier"]), "init"),
    (dict(runs=0), "runs"),
    (dict(label_fractions=[0.0]), "label_fraction"),
    (dict(overrides={"seed": 3}), "may not set"),
    (dict(overrides={"input_shape": (12, 12, 8)}), "multiple of 8"),
    (dict(task="xyz"), "Unknown target task"),
    (dict(task=["ncs", "ncs"]), "distinct target tasks"),
    (dict(data_dir={"lcs": "D"}), "not run"),
])
def test_bad_arguments_fail_before_any_file(tmp_path, kwargs, message):
    args = dict(tasks="ncs", inits=["he_uniform"], runs=1, label_fractions=[1.0],
                out_dir=tmp_path / "exp", data=object())
    if "task" in kwargs:
        kwargs["tasks"] = kwargs.pop("task")
    with pytest.raises(ValueError, match=message):
        run_experiment(**{**args, **kwargs})
    assert not (tmp_path / "exp").exists()


def test_missing_weight_file_or_data_folder_fails_before_any_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        run_experiment("ncs", ["genesis=missing.h5"], 1, out_dir=tmp_path / "exp",
                       data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run_experiment("ncs", ["he_uniform"], 1, out_dir=tmp_path / "exp",
                       data_dir=tmp_path / "nowhere")
    assert not (tmp_path / "exp").exists()


def test_finished_csv_gives_table3_by_hand(tmp_path):
    # No run left to do: the key is recorded and Table 3 is made from the CSV alone.
    out = tmp_path / "exp"
    os.makedirs(out)
    scores = {("ncs", "uniform"): (0.5, 0.7), ("ncs", "he_uniform"): (0.90, 0.80),
              ("ncc", "uniform"): (0.60, 0.62), ("ncc", "he_uniform"): (0.61, 0.60)}
    for (task, method), values in scores.items():
        for run, score in enumerate(values):
            append_result(out / "results.csv", {"task": task, "method": method, "run": run,
                                                "label_fraction": 1.0, "score": score,
                                                "dice": score})
    result = run_experiment(["ncs", "ncc"], ["uniform", "he_uniform"], 2, [1.0], out_dir=out,
                            progress=False)
    assert result["n_trained"] == 0
    assert json.loads((out / "experiment.json").read_text(encoding="utf-8"))["seed"] == 0
    header, rows = _markdown_cells(result["markdown"], "100%")
    assert header == ["method", "ncs", "ncc"]
    # ncs: he_uniform 85 ± 7.07 best; uniform 60 ± 14.14, t-test p = 0.272 -> "=".
    # ncc: uniform 61 ± 1.41 best; he_uniform 60.5 ± 0.71, p = 0.698 -> "=".
    assert rows == {"uniform": ["60.00 ± 14.14 =", "**61.00 ± 1.41**"],
                    "he_uniform": ["**85.00 ± 7.07**", "60.50 ± 0.71 ="]}
    p = stats.ttest_ind([0.5, 0.7], [0.9, 0.8]).pvalue
    summary = result["summary"].set_index(["task", "method"])
    assert summary.loc[("ncs", "uniform"), "p_value"] == pytest.approx(p)
    line = next(l for l in result["table"].splitlines() if l.startswith("uniform "))
    assert line.split()[1:] == ["60.00", "±", "14.14", "=", "61.00", "±", "1.41", "*"]
    assert os.path.isfile(result["figures"]["bars"]) and "learning_curves" not in result["figures"]


def test_key_names_what_changed(tmp_path):
    base = {"seed": 0, "overrides": {"epochs": 1},
            "methods": {"he_uniform": method_entry("he_uniform", None)},
            "tasks": {"ncs": task_entry(tmp_path / "a")}}
    check_experiment_key(tmp_path, base)
    # Counts learnt later and a new method and task extend the key.
    w = tmp_path / "w.h5"
    w.write_bytes(b"weights")
    grown = {**base, "methods": {**base["methods"], "genesis": method_entry("genesis", w)},
             "tasks": {"ncs": task_entry(tmp_path / "a", {"train": 3, "valid": 1, "test": 2}),
                       "lcs": task_entry(None)}}
    stored = check_experiment_key(tmp_path, grown)
    assert stored["tasks"]["ncs"]["counts"] == {"test": 2, "train": 3, "valid": 1}
    assert set(stored["methods"]) == {"he_uniform", "genesis"}
    for change, message in [
        ({"seed": 1}, "`seed` changed"),
        ({"tasks": {"ncs": task_entry(tmp_path / "a", {"train": 4, "valid": 1, "test": 2})}},
         "data counts of 'ncs' changed"),
        ({"methods": {"genesis": method_entry("rubik", w)}}, "'genesis' is now `rubik`"),
    ]:
        with pytest.raises(ValueError, match=message) as info:
            check_experiment_key(tmp_path, {**base, **change})
        assert "\n" not in str(info.value)
    w.write_bytes(b"other weights")
    with pytest.raises(ValueError, match="weights of 'genesis' changed"):
        check_experiment_key(tmp_path, {**base, "methods": {"genesis": method_entry("genesis", w)}})


@pytest.mark.large
def test_parallel_runs_give_the_results_of_runs_one_after_another(tmp_path):
    """`parallel_runs=2` (two worker processes sharing the CPU) gives the same results table as
    the same runs trained one after another in this process."""
    from models_genesis.data.target_tasks.common import TargetData

    rng = np.random.default_rng(3)

    def split(n):
        x = rng.random((n, *SHAPE, 1), dtype=np.float32)
        return x, (x > 0.6).astype(np.float32)

    (a, b), (c, d), (e, f) = split(8), split(8), split(4)
    data = TargetData(task="ncs", x_train=a, y_train=b, x_valid=c, y_valid=d, x_test=e, y_test=f)
    kwargs = dict(data=data, overrides=dict(TINY, epochs=1), progress=False, run_eagerly=True)
    one = run_experiment(["ncs"], ["he_uniform", "uniform"], 2, [1.0], None,
                         tmp_path / "sequential", **kwargs)
    two = run_experiment(["ncs"], ["he_uniform", "uniform"], 2, [1.0], None,
                         tmp_path / "parallel", parallel_runs=2, **kwargs)
    columns = ["task", "method", "run", "seed", "score", "dice", "mean_iou", "epochs",
               "best_epoch", "n_train", "run_dir"]
    assert len(one["results"]) == 4 and one["results"]["score"].nunique() > 1
    pd.testing.assert_frame_equal(two["results"][columns], one["results"][columns],
                                  check_exact=False, rtol=1e-5)
    assert two["table"] == one["table"]
