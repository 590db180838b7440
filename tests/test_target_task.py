"""`TargetTask`: one definition per task, stored as task.json, agreeing with the loaders."""

import dataclasses
import inspect

import pytest

from models_genesis.config import TARGET_TASKS, TargetTask
from models_genesis.data.target_tasks import TARGET_LOADERS


@pytest.mark.parametrize("code", sorted(TARGET_TASKS))
def test_json_round_trip(tmp_path, code):
    task = TARGET_TASKS[code]
    assert task.layout and task.split and task.head and task.metric in ("auc", "iou", "dice")
    path = task.to_json(tmp_path / "task.json")
    assert TargetTask.from_json(path) == task


def test_preprocessing_agrees_with_the_loaders():
    def default(code, name):
        return inspect.signature(TARGET_LOADERS[code]).parameters[name].default

    assert tuple(default("ncs", "spacing")) == TARGET_TASKS["ncs"].spacing == (1.0, 1.0, 1.0)
    assert default("bms", "crop_scale") == TARGET_TASKS["bms"].crop_scale == 100 / 64
    assert TARGET_TASKS["bms"].modality == "mri" and TARGET_TASKS["bms"].intensity_window is None
    for code in ("ncc", "ncs", "ecc", "lcs"):
        assert TARGET_TASKS[code].intensity_window == (-1000.0, 1000.0)
    assert TARGET_TASKS["ecc"].input_shape == (64, 64, 64)
    assert [TARGET_TASKS[c].kind for c in ("ncc", "ecc")] == ["classification"] * 2


@pytest.mark.parametrize("change, message", [
    ({"modality": "pet"}, "modality"), ({"intensity_window": None}, "intensity_window"),
    ({"intensity_window": (10, -10)}, "lo < hi"), ({"crop_scale": 0.5}, "crop_scale"),
    ({"spacing": (1, 0, 1)}, "spacing"), ({"kind": "detection"}, "kind")])
def test_bad_definitions_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TARGET_TASKS["lcs"], **change)
