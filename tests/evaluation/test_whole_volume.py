"""Whole-volume prediction with a run's `TargetTask`: preprocessing, grid, scores, task.json."""

import dataclasses

import numpy as np
import pytest

from models_genesis.config import TARGET_TASKS
from models_genesis.data.io.volumes import Volume
from models_genesis.evaluation.whole_volume import (load_run_task, normalize_for_task,
                                                    predict_probabilities, score_volume)


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
