"""Whole-volume prediction with a run's `TargetTask`: preprocessing, grid, scores, task.json,
the mask written to a file."""

import dataclasses

import numpy as np
import pytest

from models_genesis.config import TARGET_TASKS
from models_genesis.data.io.volumes import Volume
from models_genesis.evaluation.whole_volume import (load_run_task, normalize_for_task,
                                                    predict_probabilities, preprocessing_task,
                                                    score_volume, segment_volume_to_file)


def identity(batch):
    """A 'model' whose foreground probability is its input: shows what the model was fed."""
    return batch


def test_ct_volume_is_windowed_and_mapped_back_to_its_grid(rng):
    task = dataclasses.replace(TARGET_TASKS["lcs"], input_shape=(16, 16, 8))
    hu = rng.uniform(-1500, 1500, (40, 36, 20)).astype(np.float32)
    prob = predict_probabilities(identity, Volume(hu, (1.0, 1.0, 2.0)), task)
    np.testing.assert_allclose(prob, np.clip((hu + 1000) / 2000, 0, 1), atol=1e-5)


def test_mri_min_max_and_crop_scale(rng):
    task = dataclasses.replace(TARGET_TASKS["bms"], input_shape=(16, 16, 8))
    assert task.modality == "mri" and task.crop_scale == 100 / 64
    smooth = np.add.outer(np.add.outer(np.arange(48.0), np.arange(40.0)), np.arange(24.0))
    flair = (200 + 10 * smooth).astype(np.float32)
    prob = predict_probabilities(identity, Volume(flair, (1.0, 1.0, 1.0)), task)
    assert prob.shape == flair.shape  # shrunk by the crop scale, then back to the scan's grid
    expected = normalize_for_task(flair, task)
    assert expected.min() == 0 and expected.max() == 1  # the patient's own min and max
    inner = (slice(4, -4),) * 3
    np.testing.assert_allclose(prob[inner], expected[inner], atol=0.03)


def test_spacing_resamples_and_returns_to_the_scan(rng):
    task = dataclasses.replace(TARGET_TASKS["ncs"], input_shape=(16, 16, 8))  # 1 mm
    hu = np.zeros((30, 30, 12), np.float32)
    hu[10:20, 10:20, 4:8] = 1000.0
    prob = predict_probabilities(identity, Volume(hu, (0.7, 0.7, 2.5)), task)
    assert prob.shape == hu.shape
    assert prob[15, 15, 6] > 0.9 and prob[2, 2, 1] < 0.6


def test_score_volume():
    mask = np.zeros((8, 8, 8), np.uint8)
    mask[2:6, 2:6, 2:6] = 2  # any label > 0 is foreground
    perfect = score_volume(mask, (mask > 0).astype(np.float32))
    assert perfect == {"mean_iou": 1.0, "dice": 1.0, "foreground_iou": 1.0}
    half = np.zeros_like(mask, np.float32)
    half[2:4, 2:6, 2:6] = 1.0
    assert score_volume(mask, half)["foreground_iou"] == pytest.approx(0.5)


def test_load_run_task_reads_task_json_and_notes_overrides(tmp_path):
    assert load_run_task(tmp_path)[0] is None
    assert "has no task.json" in load_run_task(tmp_path)[1][0]
    TARGET_TASKS["bms"].to_json(tmp_path / "task.json")
    task, notes = load_run_task(tmp_path / "model.keras")
    assert task == TARGET_TASKS["bms"] and notes == []
    task, notes = load_run_task(tmp_path, normalization="ct", crop_scale=1.0)
    assert (task.modality, task.intensity_window, task.crop_scale) == ("ct", (-1000.0, 1000.0),
                                                                      1.0)
    assert len(notes) == 3 and all(n.startswith("note:") for n in notes)


def test_segment_volume_to_file_keeps_geometry(tmp_path, rng):
    from models_genesis.data.io.volumes import read_volume, write_volume

    hu = rng.uniform(-1000, 1000, (12, 10, 6)).astype(np.float32)
    src = Volume(array=hu, spacing=(0.7, 0.8, 2.5), origin=(10.0, -5.0, 3.0))
    in_path = write_volume(src, str(tmp_path / "scan.nii.gz"))
    task = preprocessing_task((8, 8, 8), normalization="ct")  # the scan is padded in z
    out_path = segment_volume_to_file(identity, in_path, tmp_path / "pred" / "mask.nii.gz", task,
                                      overlap=0.5, threshold=0.5, progress=False)
    mask = read_volume(out_path)
    np.testing.assert_array_equal(mask.array, (hu > 0).astype(np.uint8))  # HU 0 -> 0.5
    np.testing.assert_allclose(mask.spacing, (0.7, 0.8, 2.5), rtol=1e-6)
    np.testing.assert_allclose(mask.origin, (10.0, -5.0, 3.0), rtol=1e-6)
    with pytest.raises(ValueError, match="out_path"):
        segment_volume_to_file(identity, in_path, in_path, task, progress=False)


def test_crop_scale_predicts_on_the_resized_scan_and_maps_back(tmp_path):
    """A model trained on resized crops (BMS) sees the scan at its training scale."""
    from models_genesis.data.io.volumes import read_volume, write_volume

    x = np.zeros((40, 40, 20), np.float32)
    x[10:30, 8:28, 5:15] = 1.0  # a bright box on a dark background, already in [0, 1]
    in_path = write_volume(Volume(array=x, spacing=(1.0, 1.0, 1.0)), str(tmp_path / "flair.nii.gz"))
    seen = []

    def model(batch):
        seen.append(batch.shape)
        return batch

    task = preprocessing_task((16, 16, 8), normalization="none", crop_scale=2.0)
    out = segment_volume_to_file(model, in_path, tmp_path / "mask.nii.gz", task, progress=False)
    assert seen and all(s[1:4] == (16, 16, 8) for s in seen)
    mask = read_volume(out).array
    assert mask.shape == x.shape
    # Identity at half resolution, resized back: the box is recovered up to its edge voxels.
    assert (mask == (x > 0.5)).mean() > 0.97


@pytest.mark.parametrize("kwargs, field", [
    (dict(crop_scale=0), "crop_scale"), (dict(normalization="zscore"), "normalization"),
    (dict(spacing=(1, 1)), "spacing")])
def test_preprocessing_task_checks_its_settings(kwargs, field):
    with pytest.raises(ValueError, match=field):
        preprocessing_task((16, 16, 8), **kwargs)


def test_preprocessing_task_normalisations():
    assert preprocessing_task((8, 8, 8)).intensity_window == (-1000.0, 1000.0)
    none = preprocessing_task((8, 8, 8), normalization="none")
    assert (none.modality, none.intensity_window) == ("ct", (0.0, 1.0))
    assert preprocessing_task((8, 8, 8), normalization="minmax").modality == "mri"


def test_prediction_of_an_oblique_ras_scan_is_written_in_its_own_geometry(tmp_path, rng):
    from models_genesis.data.io.volumes import orientation_of, read_volume, write_volume

    # x Right, y Anterior, z Superior (a RAS NIfTI), tilted by 20 degrees about z.
    c, s = np.cos(0.35), np.sin(0.35)
    direction = (-c, s, 0.0, -s, -c, 0.0, 0.0, 0.0, 1.0)
    hu = rng.uniform(-1000, 1000, (12, 10, 6)).astype(np.float32)
    in_path = write_volume(hu, tmp_path / "oblique.nii.gz", spacing=(0.7, 0.8, 2.5),
                           origin=(10.0, -5.0, 3.0), direction=direction)
    seen = []

    def identity_recording(batch):
        seen.append(np.array(batch))
        return batch

    out = segment_volume_to_file(identity_recording, in_path, tmp_path / "mask.nii.gz",
                                 preprocessing_task((16, 16, 8), normalization="ct"),
                                 overlap=0.0, progress=False)
    stored = read_volume(in_path, orientation=None)
    assert orientation_of(stored.direction) == "RAS"
    # The model saw the scan in the standard orientation (x and y flipped) ...
    np.testing.assert_allclose(seen[0][0, :12, :10, :6, 0], (hu[::-1, ::-1] + 1000) / 2000,
                               atol=1e-6)  # one window, the scan padded to its size
    # ... and the mask is on the file's own grid, voxel for voxel.
    mask = read_volume(out, orientation=None)
    np.testing.assert_array_equal(mask.array, (hu > 0).astype(np.uint8))
    assert mask.shape == stored.shape
    np.testing.assert_allclose(mask.spacing, stored.spacing, rtol=1e-6)
    np.testing.assert_allclose(mask.origin, stored.origin, atol=1e-5)
    np.testing.assert_allclose(mask.direction, stored.direction, atol=1e-6)
