"""Your own data from the command line: `prepare --task custom` -> `finetune --init genesis` ->
`predict-volume --model RUN`, for a nnU-Net v2 and a Decathlon miniature (2 channels, 2 labels)."""

import json

import numpy as np
import pytest

from models_genesis.cli import main
from models_genesis.config import TargetTask
from models_genesis.data.io.volumes import read_volume
from models_genesis.data.phantoms.own_data import write_own_dataset
from models_genesis.models.unet3d import unet_model_3d
from models_genesis.models.weights import save_keras2_weights

TINY = ["--epochs", "1", "--batch-size", "4", "--n-base-filters", "2", "--input-shape", "16",
        "16", "16", "--no-augment", "--verbose", "0", "--crops-per-volume", "4"]
OBLIQUE = tuple(np.round([0.96, -0.28, 0.0, 0.28, 0.96, 0.0, 0.0, 0.0, 1.0], 6))


@pytest.fixture(scope="module")
def genesis(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "Genesis_tiny.h5"
    return str(save_keras2_weights(unet_model_3d((16, 16, 16, 1), n_base_filters=2), path))


@pytest.mark.parametrize("layout, folder, direction", [
    ("nnunetv2", "Dataset501_Phantom", None), ("decathlon", "Task05_Phantom", OBLIQUE)])
def test_prepare_finetune_predict(tmp_path, genesis, capsys, layout, folder, direction):
    data = tmp_path / folder
    made = write_own_dataset(data, layout=layout, n=6, shape=(24, 24, 20), direction=direction)
    prepared, run = tmp_path / "prepared", tmp_path / "run"
    assert main(["prepare", "--task", "custom", "--data", str(data), "--out", str(prepared),
                 "--fold", "1", "--quiet"]) == 0
    meta = json.loads((prepared / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "FLAIR", "1": "T1"}
    assert sorted(meta["labels"].values()) == [0, 1, 2]
    assert (prepared / "imagesTr" / f"{made['cases'][0]}_0001.nii.gz").is_file()
    assert len(json.loads((prepared / "splits_final.json").read_text())) == 5

    assert main(["finetune", "--task", "custom", "--init", "genesis", "--weights", genesis,
                 "--data", str(prepared), "--out", str(run), *TINY]) == 0
    result = json.loads((run / "results.json").read_text())
    assert result["metric"] == "volume_mean_dice" and result["n_test_volumes"] == 1
    assert len(result["volume_label_dice"]) == 2  # one Dice per foreground label
    assert 0.0 <= result["score"] <= 1.0
    task = TargetTask.from_json(run / "task.json")
    assert (task.channels, task.n_classes, task.label_values) == (("mr", "mr"), 3, (0, 1, 2))

    test_case = result["volume_scores"][0]["image"]
    case = [c for c in made["cases"] if c in test_case][0]
    inputs = ([str(data / "imagesTr" / f"{case}_{c:04d}.nii.gz") for c in range(2)]
              if layout == "nnunetv2" else [str(data / "imagesTr" / f"{case}.nii.gz")])
    out = tmp_path / "pred.nii.gz"
    assert main(["predict-volume", "--model", str(run), "--input", *inputs,
                 "--output", str(out)]) == 0
    pred, label = read_volume(out), read_volume(data / "labelsTr" / f"{case}.nii.gz")
    assert pred.shape == label.shape
    assert np.allclose(pred.spacing, label.spacing) and np.allclose(pred.origin, label.origin)
    assert np.allclose(pred.direction, label.direction, atol=1e-5)
    assert set(np.unique(pred.array)) <= {0, 1, 2}


def test_volume_classification_from_a_csv(tmp_path):
    data = tmp_path / "Task06_Cls"
    write_own_dataset(data, layout="decathlon", n=20, shape=(16, 16, 16), classification=True)
    run = tmp_path / "run"
    assert main(["finetune", "--task", "custom", "--init", "he_uniform", "--data", str(data),
                 "--out", str(run), *TINY[:-2]]) == 0
    result = json.loads((run / "results.json").read_text())
    assert result["metric"] == "auc" and result["n_test"] == 4
    task = TargetTask.from_json(run / "task.json")
    assert (task.kind, task.n_classes, task.label_values) == ("classification", 1, (0, 1))
    out = tmp_path / "case.json"
    assert main(["predict-volume", "--model", str(run), "--input",
                 str(data / "imagesTr" / "PHANTOM_000.nii.gz"), "--output", str(out)]) == 0
    probabilities = json.loads(out.read_text())["probabilities"]
    assert set(probabilities) == {"0", "1"}
    assert abs(sum(probabilities.values()) - 1.0) < 1e-5
