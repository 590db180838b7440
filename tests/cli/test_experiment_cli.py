"""`models-genesis finetune / experiment / predict-volume`: argument mapping and real runs."""

import json

import keras
import numpy as np
import pytest

from models_genesis.cli import main
from models_genesis.config import FinetuneConfig
from models_genesis.data.io.volumes import read_volume, write_volume
from models_genesis.evaluation.sliding_window import sliding_window_inference
from models_genesis.models.heads import segmentation_model
from tests.helpers import SHAPE, make_data, write_release_arrays

TRAINING = ["--epochs", "1", "--batch-size", "4", "--n-base-filters", "2", "--input-shape",
            "16", "16", "8", "--no-augment", "--patience", "3", "--verbose", "0"]


def _fake_run(monkeypatch):
    calls = []

    def fake_run_experiment(*args, **kwargs):
        calls.append((args, kwargs))
        return {"table": "TABLE", "n_trained": 4, "n_resumed": 0, "results_csv": "r.csv",
                "figures": {"bars": "fig3_bars.png"}}

    monkeypatch.setattr("models_genesis.pipeline.experiment.run_experiment",
                        fake_run_experiment)
    return calls


def test_experiment_command_maps_its_options(tmp_path, monkeypatch, capsys):
    calls = _fake_run(monkeypatch)
    out = str(tmp_path / "O")
    code = main(["experiment", "--task", "ncs", "--inits", "genesis", "he_uniform", "--runs", "3",
                 "--label-fractions", "1.0", "0.5", "--data", "D", "--out", out, "--weights",
                 "W.h5", "--seed", "7"] + TRAINING)
    assert code == 0
    (args, kwargs), = calls
    assert args == (["ncs"], ["genesis", "he_uniform"], 3, [1.0, 0.5], "D", out)
    assert kwargs["weights"] == "W.h5" and kwargs["seed"] == 7 and kwargs["curve"] == "metric"
    assert kwargs["overrides"] == {"epochs": 1, "batch_size": 4, "n_base_filters": 2,
                                   "input_shape": (16, 16, 8), "patience": 3, "augment": False}
    # The overrides are valid FinetuneConfig fields.
    FinetuneConfig(task="ncs", init="he_uniform", **kwargs["overrides"])
    printed = capsys.readouterr().out
    assert "TABLE" in printed and "fig3_bars.png" in printed


def test_experiment_command_takes_named_inits_tasks_and_probe(tmp_path, monkeypatch):
    calls = _fake_run(monkeypatch)
    code = main(["experiment", "--tasks", "ncs", "ncc", "--inits", "genesis=G.h5",
                 "genesis_nonlinear=N.h5", "rubik=R.h5", "he_uniform", "--data", "ncs=A",
                 "ncc=B", "--out", str(tmp_path / "O"), "--head", "linear", "--freeze-encoder",
                 "--curve", "loss"] + TRAINING)
    assert code == 0
    (args, kwargs), = calls
    assert args[:2] == (["ncs", "ncc"], ["genesis=G.h5", "genesis_nonlinear=N.h5", "rubik=R.h5",
                                         "he_uniform"])
    assert args[4] == {"ncs": "A", "ncc": "B"} and kwargs["curve"] == "loss"
    assert kwargs["overrides"]["head"] == "linear" and kwargs["overrides"]["freeze_encoder"]
    # NCC's negative sampling is NCC's own loader option, not NCS's.
    assert "ncs" not in kwargs["data_options"] and "negative_ratio" in kwargs["data_options"]["ncc"]


@pytest.mark.parametrize("data, message", [
    (["A", "B"], "one folder, or TASK=DIR"), (["ncs=A", "B"], "mixes"),
    (["ncs=A", "ncs=B"], "twice")])
def test_experiment_data_errors_are_one_line(tmp_path, capsys, data, message):
    code = main(["experiment", "--tasks", "ncs", "--inits", "he_uniform", "--data", *data,
                 "--out", str(tmp_path / "O")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_experiment_refuses_a_resume_with_changed_weights(tmp_path, capsys):
    from models_genesis.pipeline.experiment import append_result, run_experiment

    weights = tmp_path / "g.h5"
    weights.write_bytes(b"first weights")
    out = tmp_path / "exp"
    out.mkdir()
    for method in ("genesis", "he_uniform"):
        for run, score in enumerate((0.5, 0.6)):
            append_result(out / "results.csv", {"task": "ncs", "method": method, "run": run,
                                                "label_fraction": 1.0, "score": score})
    run_experiment("ncs", [f"genesis={weights}", "he_uniform"], 2, out_dir=out, progress=False)
    weights.write_bytes(b"other weights")
    (tmp_path / "data").mkdir()  # beside the experiment's folder, not above it
    code = main(["experiment", "--tasks", "ncs", "--inits", f"genesis={weights}", "he_uniform",
                 "--runs", "2", "--data", str(tmp_path / "data"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "the weights of 'genesis' changed" in err and "Traceback" not in err


def test_bad_choices_exit_with_usage(capsys):
    assert main(["finetune", "--task", "ncs", "--init", "xavier", "--data", "D", "--out", "O"]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.large
def test_finetune_command_trains_on_release_arrays(rng, tmp_path, capsys):
    folder = write_release_arrays(tmp_path / "ncs", make_data(rng, n=(8, 4, 4)))
    out = tmp_path / "run"
    assert main(["finetune", "--task", "ncs", "--init", "he_uniform", "--data", str(folder),
                 "--out", str(out), "--label-fraction", "0.5"] + TRAINING) == 0
    captured = capsys.readouterr().out
    printed = json.loads(captured[captured.index("{"):])
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert printed["mean_iou"] == saved["mean_iou"] and saved["n_train"] == 4
    assert saved["init"] == "he_uniform" and saved["epochs"] == 1

    # predict-volume with the trained model on a scan larger than the crop.
    hu = rng.uniform(-1000, 400, (40, 36, 20)).astype(np.int16)
    scan = write_volume(hu, tmp_path / "scan.nii.gz", spacing=(0.8, 0.7, 2.0),
                        origin=(10.0, -5.0, 3.0))
    mask_path = tmp_path / "pred" / "mask.nii.gz"
    assert main(["predict-volume", "--model", str(out), "--input", scan, "--output",
                 str(mask_path), "--overlap", "0.25"]) == 0
    mask = read_volume(mask_path)
    assert mask.array.shape == hu.shape
    np.testing.assert_allclose(mask.spacing, (0.8, 0.7, 2.0), rtol=1e-6)
    np.testing.assert_allclose(mask.origin, (10.0, -5.0, 3.0), rtol=1e-6)
    model = keras.saving.load_model(out / "model.keras", compile=False)
    # No preprocessing flag given: the run's task.json says NCS (CT window, 1 mm, the crop).
    from models_genesis.config import TargetTask
    from models_genesis.evaluation.whole_volume import predict_probabilities

    task = TargetTask.from_json(out / "task.json")
    assert (task.code, task.spacing, task.input_shape) == ("ncs", (1.0, 1.0, 1.0), SHAPE)
    prob = predict_probabilities(model, read_volume(scan), task, overlap=0.25)
    np.testing.assert_array_equal(mask.array, (prob > 0.5).astype(np.uint8))


def test_predict_volume_needs_a_model_file(tmp_path, capsys):
    assert main(["predict-volume", "--model", str(tmp_path), "--input", "x.nii.gz", "--output",
                 str(tmp_path / "m.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("models-genesis predict-volume: error:") and "model.keras" in err
    assert "Traceback" not in err


def test_predict_volume_window_defaults_to_the_model_input(rng, tmp_path):
    model = segmentation_model(SHAPE + (1,), n_base_filters=2)
    model.save(tmp_path / "model.keras")
    x = rng.random((20, 18, 8), dtype=np.float32)  # already in [0, 1]: --normalization none
    scan = write_volume(x, tmp_path / "scan.nii.gz")
    assert main(["predict-volume", "--model", str(tmp_path / "model.keras"), "--input", scan,
                 "--output", str(tmp_path / "mask.nii.gz"), "--normalization", "none"]) == 0
    prob = sliding_window_inference(model, x, window=SHAPE, progress=False)
    np.testing.assert_array_equal(read_volume(tmp_path / "mask.nii.gz").array, prob > 0.5)
