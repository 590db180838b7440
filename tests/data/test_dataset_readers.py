"""The downloaded layouts: LIDC-IDRI (NCS), BraTS 2018 (BMS), candidate CSVs, bad input."""

import glob
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from models_genesis.data.target_tasks import load_target_data
from models_genesis.data.target_tasks.bms import find_brats_cases
from models_genesis.data.target_tasks.common import SkipLog
from models_genesis.data.io.volumes import read_volume, write_volume

SHAPE = (32, 32, 16)
SPLITS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "reference_data",
                          "release_splits")


@pytest.fixture(scope="module")
def lidc(tmp_path_factory):
    from models_genesis.data.phantoms.lidc import make_lidc_phantoms

    out = tmp_path_factory.mktemp("LIDC-IDRI")
    make_lidc_phantoms(out, n=3, seed=1, shape=(80, 80, 40))
    return out


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    from models_genesis.data.phantoms.brain import make_brain_phantoms

    out = tmp_path_factory.mktemp("brats") / "MICCAI_BraTS_2018_Data_Training"
    make_brain_phantoms(out, n=6, seed=0, shape=(48, 48, 32))
    return out


# --- NCS from LIDC-IDRI as downloaded ----------------------------------------------------------

def test_ncs_reads_lidc_download(lidc):
    from models_genesis.data.target_tasks.lidc_consensus import find_lidc_scans, read_lidc_scan

    scans = find_lidc_scans(lidc)
    n_nodules = sum(len(read_lidc_scan(s["folder"]).nodules) for s in scans.values())
    data = load_target_data("ncs", lidc, input_shape=SHAPE, split_fractions=(1, 1, 1),
                            progress=False)
    split = data.info["split"]
    assert sorted(sum(split.values(), [])) == sorted(scans)  # one patient (scan) per split
    assert sum(data.info["counts"].values()) == n_nodules > 0
    for name in ("train", "valid", "test"):
        x, m = data.split(name)
        assert x.shape[1:] == SHAPE + (1,) and x.min() >= 0 and x.max() <= 1
        assert np.all(m.reshape(len(m), -1).max(axis=1) == 1)  # every crop holds its nodule
        centre = m[:, SHAPE[0] // 2, SHAPE[1] // 2, SHAPE[2] // 2, 0]
        assert centre.mean() > 0.5
    assert data.info["consensus_level"] == 0.5


def test_ncs_lidc_unreadable_scan_is_skipped_not_fatal(lidc, tmp_path):
    root = shutil.copytree(lidc, tmp_path / "lidc")
    folder = sorted(glob.glob(str(root / "LIDC-IDRI-0002" / "*" / "*")))[0]
    import SimpleITK as sitk

    files = sorted(glob.glob(os.path.join(folder, "*.dcm")))
    image = sitk.ReadImage(files[5])
    image.SetOrigin(sitk.ReadImage(files[4]).GetOrigin())  # two slices at one position
    image.SetMetaData("0020|0032", "\\".join(f"{v:.4f}" for v in image.GetOrigin()))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(files[5])
    writer.Execute(image)
    with pytest.raises(ValueError, match="same position"):
        load_target_data("ncs", root, input_shape=SHAPE, progress=False)
    data = load_target_data("ncs", root, input_shape=SHAPE, errors="skip", progress=False)
    assert data.info["n_skipped"] == 1 and data.info["skipped"][0]["item"] == folder
    assert sum(len(v) for v in data.info["split"].values()) == 2


def test_ncs_lidc_series_with_a_missing_slice_is_prepared_with_a_note(lidc, tmp_path):
    from models_genesis.pipeline.prepare import prepare_dataset

    root = shutil.copytree(lidc, tmp_path / "lidc")
    folder = sorted(glob.glob(str(root / "LIDC-IDRI-0002" / "*" / "*")))[0]
    os.remove(sorted(glob.glob(os.path.join(folder, "*.dcm")))[1])  # no outline on it
    manifest = prepare_dataset("ncs", root, tmp_path / "prepared", progress=False)
    assert manifest["n_done"] == 3 and not manifest["skipped"]
    notes = {case: entry.get("notes", []) for case, entry in manifest["cases"].items()}
    assert sum(len(n) for n in notes.values()) == 1
    assert any(folder in note and "even grid" in note for n in notes.values() for note in n)


def test_ncs_without_any_layout_names_all_three(tmp_path):
    with pytest.raises(FileNotFoundError, match="release arrays.*annotations.csv.*CT DICOM"):
        load_target_data("ncs", tmp_path, input_shape=SHAPE)


# --- BMS from BraTS 2018 as downloaded ---------------------------------------------------------

def test_brats_case_missing_a_modality(brats, tmp_path):
    root = shutil.copytree(brats, tmp_path / "b")
    case = sorted((root / "HGG").iterdir())[0]
    os.remove(case / f"{case.name}_flair.nii.gz")
    with pytest.raises(ValueError, match=f"{case.name}.*missing {case.name}_flair.nii.gz"):
        find_brats_cases(root, SkipLog("raise"))
    skips = SkipLog("skip")
    cases = find_brats_cases(root, skips)
    assert case.name not in cases and len(cases) == 5
    assert skips.items[0]["item"] == str(case)
    with pytest.raises(ValueError, match="t1ce"):  # the full download has every modality
        find_brats_cases(brats, SkipLog("raise"), required=("flair", "t1", "t1ce", "t2", "seg"))


def test_brats_unreadable_case_skipped_and_per_patient_normalisation(brats, tmp_path):
    root = shutil.copytree(brats, tmp_path / "b")
    ids = sorted(p.name for p in root.glob("*/Brats18_*"))
    # Patient 0 scanned 10x brighter: per-patient min-max ("mri") gives the same crops.
    flair = next(root.glob(f"*/{ids[0]}/{ids[0]}_flair.nii.gz"))
    vol = read_volume(flair)
    write_volume(vol.array.astype(np.int32) * 10, str(flair), like=vol)
    bad = next(root.glob(f"*/{ids[1]}/{ids[1]}_seg.nii.gz"))
    bad.write_bytes(b"not a nifti file")
    folds = [[ids[0], ids[2]], [ids[3], ids[4]], [ids[1], ids[5]]]
    for k, f in enumerate(folds):
        (tmp_path / f"fold_{k + 1}.csv").write_text("\n".join(f) + "\n")
    kwargs = dict(input_shape=SHAPE, fold=3, split_dir=tmp_path, crops_per_volume=2,
                  valid_fraction=0.0, crop_scale=1.0, progress=False)
    with pytest.raises(ValueError, match="Cannot read"):
        load_target_data("bms", root, **kwargs)
    data = load_target_data("bms", root, errors="skip", **kwargs)
    assert data.info["split"]["test"] == [ids[5]] and data.info["n_skipped"] == 1
    assert ids[1] in data.info["skipped"][0]["item"]
    ref = load_target_data("bms", brats, **kwargs)
    np.testing.assert_allclose(data.x_train[:2], ref.x_train[:2], atol=1e-6)
    with pytest.raises(ValueError, match="fold_dir"):  # the older name of split_dir is gone
        load_target_data("bms", root, fold_dir=brats, **kwargs)


@pytest.mark.skipif(not os.path.isdir(SPLITS_DIR), reason="release splits not present")
def test_bms_release_fold_lists_through_split_dir(brats):
    with pytest.raises(ValueError, match="fold 1.*95 patient"):
        load_target_data("bms", brats, input_shape=SHAPE, split_dir=os.path.join(SPLITS_DIR, "bms"))


# --- ECC fold without split files --------------------------------------------------------------

def test_ecc_fold_without_split_files(tmp_path):
    with pytest.raises(ValueError, match=r"`fold` needs the release's split files.*fold=2"):
        load_target_data("ecc", tmp_path, fold=2)


# --- candidate and annotation CSVs -------------------------------------------------------------

def _luna(tmp_path, rows, name="candidates.csv"):
    write_volume(np.zeros((16, 16, 8), np.int16), str(tmp_path / "subset0" / "s1.mhd"))
    pd.DataFrame(rows).to_csv(tmp_path / name, index=False)
    return tmp_path


GOOD = {"seriesuid": ["s1"] * 3, "coordX": [1.0, 2.0, 3.0], "coordY": [1.0, 2.0, 3.0],
        "coordZ": [1.0, 2.0, 3.0], "class": [0, 1, 0]}


def test_candidates_missing_column(tmp_path):
    rows = {k: v for k, v in GOOD.items() if k != "coordY"}
    path = str(_luna(tmp_path, rows, "candidates_V2.csv") / "candidates_V2.csv")
    with pytest.raises(ValueError, match=r"V2.csv must have columns.*missing \['coordY'\]"):
        load_target_data("ncc", tmp_path, input_shape=SHAPE, subsets={"train": [0]})
    assert os.path.isfile(path)


@pytest.mark.parametrize("column, value", [("coordX", "n/a"), ("coordZ", ""), ("class", "yes")])
def test_candidates_non_numeric_value_names_column_and_row(tmp_path, column, value):
    rows = {k: list(v) for k, v in GOOD.items()}
    rows[column][2] = value
    _luna(tmp_path, rows)
    with pytest.raises(ValueError, match=rf"candidates.csv: column {column} must hold numbers; "
                                         r"row 3 \(line 4\)"):
        load_target_data("ncc", tmp_path, input_shape=SHAPE)


def test_annotations_csv_checked(tmp_path):
    rows = {k: v for k, v in GOOD.items() if k != "class"}
    rows["diameter_mm"] = [4.0, "big", 5.0]
    _luna(tmp_path, rows, "annotations.csv")
    with pytest.raises(ValueError, match=r"annotations.csv: column diameter_mm.*row 2"):
        load_target_data("ncs", tmp_path, input_shape=SHAPE)


# --- loader options for the command line -------------------------------------------------------

def test_loader_option_table_matches_the_loaders():
    import inspect

    from models_genesis.data.target_tasks import TARGET_LOADERS
    from models_genesis.data.target_tasks.options import LOADER_OPTIONS

    for option in LOADER_OPTIONS:
        for task in option.tasks:
            assert option.name in inspect.signature(TARGET_LOADERS[task]).parameters, \
                (option.name, task)
    for task, loader in TARGET_LOADERS.items():  # every loader reports progress and skips
        assert {"errors", "progress"} <= set(inspect.signature(loader).parameters), task


def test_loader_options_from_the_command_line(tmp_path):
    import argparse

    from models_genesis.data.target_tasks.options import (add_loader_arguments, loader_options,
                                                          options_from_args)

    parser = argparse.ArgumentParser()
    add_loader_arguments(parser)
    args = parser.parse_args(["--on-error", "stop", "--split-dir", str(tmp_path), "--fold", "2",
                              "--crops-per-volume", "4"])
    assert options_from_args("bms", args) == {"errors": "raise", "split_dir": str(tmp_path),
                                              "fold": 2, "crops_per_volume": 4}
    with pytest.raises(ValueError, match="--crops-per-volume does not apply to ecc"):
        options_from_args("ecc", args)
    assert loader_options("ncs", "d", spacing=[1, 1, 2], consensus_level=None,
                          min_readers=3) == {"spacing": (1.0, 1.0, 2.0), "min_readers": 3}
    with pytest.raises(FileNotFoundError, match="--split-dir folder not found"):
        loader_options("ecc", "d", split_dir=str(tmp_path / "nope"))
