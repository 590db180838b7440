"""Task `custom`: dataset.json of the Decathlon and nnU-Net v2 layouts, intensity per channel,
the split, and every bad input named in one line (or skipped with --on-error skip)."""

import dataclasses
import json
import os

import numpy as np
import pytest

from models_genesis.cli import main
from models_genesis.config import TARGET_TASKS
from models_genesis.data.io.volumes import read_volume, resample_mask, write_volume
from models_genesis.data.phantoms.own_data import write_4d, write_own_dataset
from models_genesis.data.target_tasks import load_target_data
from models_genesis.data.target_tasks.custom import (channel_intensities, normalize_channels,
                                                     read_custom_case, split_cases)
from models_genesis.data.target_tasks.dataset_json import read_dataset_spec
from models_genesis.data.target_tasks.options import loader_options
from models_genesis.evaluation.whole_volume import load_run_task

SHAPE = (16, 16, 16)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    return {layout: write_own_dataset(root / layout, layout=layout, n=6, shape=SHAPE)["out_dir"]
            for layout in ("nnunetv2", "decathlon")}


@pytest.mark.parametrize("layout", ["nnunetv2", "decathlon"])
def test_both_layouts_are_detected_and_read(sets, layout):
    spec = read_dataset_spec(sets[layout])
    assert (spec.layout, spec.channel_names, spec.label_values) == \
        (layout, ("FLAIR", "T1"), (0, 1, 2))
    assert len(spec.cases) == 6 and spec.kind == "segmentation"
    assert len(spec.cases[sorted(spec.cases)[0]][0]) == (2 if layout == "nnunetv2" else 1)
    data = load_target_data("custom", sets[layout], input_shape=(8, 8, 8), crops_per_volume=2,
                            progress=False)
    assert data.x_train.shape[1:] == (8, 8, 8, 2) and data.y_train.shape[1:] == (8, 8, 8, 1)
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert set(np.unique(data.y_train)) <= {0.0, 1.0, 2.0}
    # the crops' channels are the files' channels: channel 1 (T1) is not channel 0 (FLAIR)
    assert not np.allclose(data.x_train[..., 0], data.x_train[..., 1])


def test_a_4d_file_and_one_file_per_channel_read_alike(sets):
    (a_images, a_label), (b_images, b_label) = (
        read_dataset_spec(sets[k]).cases[c] for k, c in (("nnunetv2", "case_000"),
                                                         ("decathlon", "PHANTOM_000")))
    a, la = read_custom_case(a_images, a_label, n_channels=2, label_values=(0, 1, 2))
    b, lb = read_custom_case(b_images, b_label, n_channels=2, label_values=(0, 1, 2))
    for va, vb in zip(a, b):  # same phantom (seed 0, case 0), same geometry
        np.testing.assert_array_equal(va.array, vb.array)
        assert va.spacing == vb.spacing and va.direction == vb.direction
    np.testing.assert_array_equal(la, lb)


def test_intensity_per_channel():
    rng = np.random.default_rng(0)
    ct = rng.uniform(-2000, 2000, (8, 8, 8))
    mr = rng.uniform(0, 5000, (8, 8, 8))
    z = rng.normal(0, 1, (8, 8, 8))
    out = normalize_channels(np.stack([ct, mr, z], -1), ("ct", "mr", "zscore"))
    np.testing.assert_allclose(out[..., 0], np.clip((ct + 1000) / 2000, 0, 1), atol=1e-6)
    lo, hi = np.percentile(mr, (0.5, 99.5))
    np.testing.assert_allclose(out[..., 1], np.clip((mr - lo) / (hi - lo), 0, 1), atol=1e-5)
    np.testing.assert_allclose(out[..., 2], np.clip((z + 3) / 6, 0, 1), atol=1e-6)
    assert channel_intensities(("CT", "T2", "ADC")) == ("ct", "mr", "mr")
    assert channel_intensities(("CT", "T2"), "zscore") == ("zscore", "zscore")
    assert channel_intensities(("CT", "T2"), ["none", "ct"]) == ("none", "ct")
    with pytest.raises(ValueError, match="once per channel"):
        channel_intensities(("CT", "T2", "ADC"), ["ct", "mr"])


def test_split_folds_are_fixed_and_splits_final_is_used():
    ids = [f"c{i}" for i in range(10)]
    a, _ = split_cases(ids, fold=2, seed=0)
    b, _ = split_cases(ids, fold=2, seed=7)
    assert a["test"] == b["test"] and len(a["test"]) == 2  # the folds do not move with the seed
    assert set(a["train"] + a["valid"]) == set(ids) - set(a["test"])
    tests = [split_cases(ids, fold=k)[0]["test"] for k in range(5)]
    assert sorted(sum(tests, [])) == sorted(ids)
    splits = [{"train": ids[:6], "val": ids[6:]}, {"train": ids[4:], "val": ids[:4]}]
    split, source = split_cases(ids, fold=1, splits=splits)
    assert split["test"] == ids[:4] and "splits_final.json" in source
    with pytest.raises(ValueError, match="fold"):
        split_cases(ids, fold=2, splits=splits)


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("models-genesis prepare: error: "), err
    return err[0]


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _edit_json(folder, edit):
    path = os.path.join(folder, "dataset.json")
    with open(path) as f:
        meta = json.load(f)
    edit(meta)
    with open(path, "w") as f:
        json.dump(meta, f)


@pytest.mark.parametrize("layout, key", [("nnunetv2", "labels"), ("nnunetv2", "channel_names"),
                                         ("decathlon", "modality")])
def test_dataset_json_without_a_key_is_named(sets, tmp_path, capsys, layout, key):
    folder = _copy(sets[layout], tmp_path / "d")
    _edit_json(folder, lambda m: m.pop(key))
    err = _error(capsys, ["prepare", "--task", "custom", "--data", str(folder), "--out",
                          str(tmp_path / "out")])
    assert "dataset.json" in err and (key in err or "channel_names" in err)
    assert not (tmp_path / "out").exists()


def _bad_case(folder, problem):
    """Break the last case (case_005) of a nnU-Net v2 copy; return the file to be named."""
    images, labels = os.path.join(folder, "imagesTr"), os.path.join(folder, "labelsTr")
    label = os.path.join(labels, "case_005.nii.gz")
    if problem == "missing channel":
        os.remove(os.path.join(images, "case_005_0001.nii.gz"))
        return "case_005_0001.nii.gz"
    if problem == "other grid":
        volume = read_volume(label)
        write_volume(volume.array, label, spacing=(2.0, 1.0, 1.0), origin=volume.origin,
                     direction=volume.direction)
        return label
    if problem == "unknown label":
        volume = read_volume(label)
        write_volume(np.where(volume.array == 2, 7, volume.array).astype(np.uint8), label,
                     like=volume)
        return label
    path = os.path.join(images, "case_005_0000.nii.gz")  # "4D image"
    volume = read_volume(path)
    os.remove(path)
    write_4d((volume.array, volume.array), path, spacing=volume.spacing, origin=volume.origin,
             direction=volume.direction)
    return path


@pytest.mark.parametrize("problem, says", [
    ("missing channel", "channel files"), ("other grid", "grid"),
    ("unknown label", "not in dataset.json's labels"), ("4D image", "expected a 3D image")])
def test_bad_case_stops_keeps_the_finished_cases_or_is_skipped(sets, tmp_path, capsys, problem,
                                                               says):
    folder = _copy(sets["nnunetv2"], tmp_path / "Dataset9_Bad")
    named = _bad_case(str(folder), problem)
    out = tmp_path / "out"
    argv = ["prepare", "--task", "custom", "--data", str(folder), "--out", str(out), "--quiet"]
    err = _error(capsys, argv)
    assert named in err and says in err, err
    done = {}
    if problem != "missing channel":  # found while reading: the cases before it are kept
        done = {p: os.stat(p).st_mtime_ns for p in map(str, out.rglob("*.nii.gz"))}
        assert len(done) == 5 * 3  # cases 000..004: two channels and a label each
    assert main(argv + ["--on-error", "skip"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["skipped"]) == 1 and says in manifest["skipped"][0]["reason"]
    assert sorted(manifest["cases"]) == [f"case_{k:03d}" for k in range(5)]
    assert all(os.stat(p).st_mtime_ns == t for p, t in done.items())  # not redone
    assert "case_005" not in (out / "splits_final.json").read_text()


def test_classification_csv(sets, tmp_path, capsys):
    folder = _copy(sets["decathlon"], tmp_path / "Task9_Cls")
    rows = "case,label\n" + "".join(f"PHANTOM_{k:03d},{k % 2}\n" for k in range(6))
    (folder / "classification.csv").write_text(rows)
    data = load_target_data("custom", folder, input_shape=(8, 8, 8), progress=False)
    assert data.info["task_fields"]["kind"] == "classification"
    assert data.x_test.shape[1:] == (8, 8, 8, 2) and data.y_test.ndim == 1
    (folder / "classification.csv").write_text(rows + "PHANTOM_999,1\n")
    err = _error(capsys, ["prepare", "--task", "custom", "--data", str(folder), "--out",
                          str(tmp_path / "out")])
    assert "classification.csv" in err and "PHANTOM_999" in err


def test_intensity_override_on_the_command_line_and_in_task_json(sets, tmp_path):
    assert loader_options("custom", intensity=["zscore"]) == {"intensity": ["zscore"]}
    with pytest.raises(ValueError, match="--intensity"):
        loader_options("custom", intensity=["pet"])
    with pytest.raises(ValueError, match="does not apply"):
        loader_options("lcs", intensity=["ct"])
    data = load_target_data("custom", sets["nnunetv2"], input_shape=(8, 8, 8), progress=False,
                            crops_per_volume=2, intensity=["ct", "none"])
    assert data.info["task_fields"]["channels"] == ("ct", "none")
    task = TARGET_TASKS["custom"]
    dataclasses.replace(task, channels=("ct", "mr")).to_json(tmp_path / "task.json")
    loaded, notes = load_run_task(str(tmp_path), normalization="none")
    assert loaded.channels == ("none", "none") and "channels" in notes[0]


def test_labels_resampled_to_a_spacing_follow_the_mask_rule_of_the_other_tasks(tmp_path, rng):
    # Each label's indicator resampled linearly, > 0.5 (`resample_mask`), as for NCS, LCS, BMS.
    labels = np.zeros((12, 12, 9), np.int16)
    labels[3:8, 4:9, 2:7] = 1
    labels[5:7, 5:7, 3:5] = 2
    image = write_volume(rng.normal(size=labels.shape).astype(np.float32),
                         tmp_path / "case_0000.nii.gz", spacing=(1.0, 1.0, 3.0))
    label = write_volume(labels, tmp_path / "case.nii.gz", spacing=(1.0, 1.0, 3.0))
    volumes, resampled = read_custom_case([image], label, n_channels=1, label_values=(0, 1, 2),
                                          spacing=(1.5, 1.5, 2.0))
    expected = resample_mask(read_volume(label), (1.5, 1.5, 2.0)).array
    assert resampled.shape == volumes[0].shape == expected.shape
    np.testing.assert_array_equal(resampled, expected)
