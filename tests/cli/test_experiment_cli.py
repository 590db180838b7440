"""`models-genesis finetune / experiment / predict-volume`: argument mapping and real runs."""

import json

import keras
import numpy as np
import pytest

from models_genesis.cli import main
from models_genesis.config import FinetuneConfig
from models_genesis.data.volumes import normalize_intensity, read_volume, write_volume
from models_genesis.evaluation.sliding_window import sliding_window_inference
from models_genesis.models.heads import segmentation_model
from tests.training.test_finetune import SHAPE, make_data

TRAINING = ["--epochs", "1", "--batch-size", "4", "--n-base-filters", "2", "--input-shape",
            "16", "16", "8", "--no-augment", "--patience", "3", "--verbose", "0"]


def test_experiment_command_maps_its_options(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run_experiment(*args, **kwargs):
        calls.append((args, kwargs))
        return {"table": "TABLE", "annotation_saved": {"baseline": "he_uniform", "saved": 0.5,
                                                       "lower_bound": False},
                "n_trained": 4, "n_resumed": 0, "results_csv": "r.csv"}

    monkeypatch.setattr("models_genesis.pipeline.experiment.run_experiment",
                        fake_run_experiment)
    code = main(["experiment", "--task", "ncs", "--inits", "genesis", "he_uniform", "--runs", "3",
                 "--label-fractions", "1.0", "0.5", "--data", "D", "--out", "O", "--weights",
                 "W.h5", "--seed", "7"] + TRAINING)
    assert code == 0
    (args, kwargs), = calls
    assert args == ("ncs", ["genesis", "he_uniform"], 3, [1.0, 0.5], "D", "O")
    assert kwargs["weights"] == "W.h5" and kwargs["seed"] == 7
    assert kwargs["overrides"] == {"epochs": 1, "batch_size": 4, "n_base_filters": 2,
                                   "input_shape": (16, 16, 8), "patience": 3, "augment": False}
    # The overrides are valid FinetuneConfig fields.
    FinetuneConfig(task="ncs", init="he_uniform", **kwargs["overrides"])
    printed = capsys.readouterr().out
    assert "TABLE" in printed and "50%" in printed


def test_bad_choices_exit_with_usage(capsys):
    with pytest.raises(SystemExit):
        main(["finetune", "--task", "ncs", "--init", "xavier", "--data", "D", "--out", "O"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.large
def test_finetune_command_trains_on_release_arrays(rng, tmp_path, capsys):
    data = make_data(rng, n=(8, 4, 4))
    folder = tmp_path / "ncs"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        np.save(folder / f"x_{split}_16x16x8.npy", getattr(data, f"x_{split}")[..., 0])
        np.save(folder / f"m_{split}_16x16x8.npy", getattr(data, f"y_{split}")[..., 0])
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
    prob = sliding_window_inference(model, normalize_intensity(hu, "ct"), window=SHAPE,
                                    overlap=0.25, progress=False)
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
    hu = rng.uniform(-1000, 400, (20, 18, 8)).astype(np.int16)
    scan = write_volume(hu, tmp_path / "scan.nii.gz")
    assert main(["predict-volume", "--model", str(tmp_path / "model.keras"), "--input", scan,
                 "--output", str(tmp_path / "mask.nii.gz"), "--normalization", "none"]) == 0
    prob = sliding_window_inference(model, hu.astype(np.float32), window=SHAPE, progress=False)
    np.testing.assert_array_equal(read_volume(tmp_path / "mask.nii.gz").array, prob > 0.5)
