"""`predict_volume`, the one entry point of whole-scan inference: the run's task picks the path."""

import dataclasses

import keras
import numpy as np
import pytest

from models_genesis.config import TARGET_TASKS
from models_genesis.data.io.volumes import Volume, read_volume, write_volume
from models_genesis.evaluation.whole_volume import predict_volume


def _threshold_model(shape=(8, 8, 8, 1)):
    """A model returning its input: the mask is the scan above the threshold."""
    inputs = keras.Input(shape)
    return keras.Model(inputs, keras.layers.Identity()(inputs))


@pytest.fixture
def scan(tmp_path):
    x = np.zeros((16, 16, 8), np.float32)
    x[4:10, 5:12, 2:6] = 1.0
    return write_volume(Volume(array=x, spacing=(1.0, 1.0, 1.0)), str(tmp_path / "scan.nii.gz")), x


def test_without_a_task_it_slides_the_model_s_window(tmp_path, scan):
    path, x = scan
    out = predict_volume(_threshold_model(), path, tmp_path / "mask.nii.gz", normalization="none",
                         progress=False)
    assert out["mode"] == "segmentation" and out["notes"] == []
    np.testing.assert_array_equal(read_volume(out["path"]).array, (x > 0.5).astype(np.uint8))


def test_a_segmentation_task_uses_the_run_s_preprocessing(tmp_path, scan):
    path, x = scan
    # the task's CT window [-1000, 1000] HU: the scan's 0 HU -> 0.5, its 1 HU -> 0.5005
    task = dataclasses.replace(TARGET_TASKS["lcs"], input_shape=(8, 8, 8), spacing=None)
    assert task.intensity_window == (-1000.0, 1000.0)
    for threshold, expected in ((0.5006, 0 * x), (0.5003, x)):
        out = predict_volume(_threshold_model(), path, tmp_path / "m.nii.gz", task=task,
                             threshold=threshold, progress=False)
        assert out["mode"] == "segmentation"
        np.testing.assert_array_equal(read_volume(out["path"]).array, expected.astype(np.uint8))


def test_classifier_needs_candidates_and_a_segmenter_refuses_them(tmp_path, scan):
    path, _ = scan
    with pytest.raises(ValueError, match="classifier.*candidates"):
        predict_volume(_threshold_model(), path, tmp_path / "p.csv", task=TARGET_TASKS["ncc"])
    with pytest.raises(ValueError, match="candidates.*c.csv"):
        predict_volume(_threshold_model(), path, tmp_path / "m.nii.gz", candidates="c.csv")
    assert not list(tmp_path.glob("m*")) and not (tmp_path / "p.csv").exists()
