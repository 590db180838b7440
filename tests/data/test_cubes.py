"""Tests for models_genesis.data.pretraining.cubes: the tissue filter, seeding, files and skips."""

import json
import os

import numpy as np
import pytest

from models_genesis.data.io.cube_files import find_cube_files, open_cubes
from models_genesis.data.pretraining.cubes import (ExtractionConfig, ScanTooSmallError, extract_cubes_from_volume, sample_cube_starts, tissue_fractions, tissue_weights)
from models_genesis.pipeline.extract_cubes import extract_cubes
from models_genesis.data.io.intensity import normalize_intensity
from models_genesis.data.io.volumes import write_volume

SMALL = ExtractionConfig(cube_shape=(8, 8, 4), scale=4, border_xy=2, border_z=1)


def _loop_weights(crop01, threshold, rows, cols, deps, lookahead):
    """Plain transcription of the release's 4-deep voxel loop (the reference)."""
    d_img = np.zeros((rows, cols, deps))
    for d in range(deps):
        for i in range(rows):
            for j in range(cols):
                for k in range(lookahead):
                    if crop01[i, j, d + k] >= threshold:
                        d_img[i, j, d] = k
                        break
                    if k == lookahead - 1:
                        d_img[i, j, d] = k
    d_img = d_img.astype("float32") / (lookahead - 1)
    return 1.0 - d_img


def _lung_like(rng, shape, tissue=0.1):
    """-850 HU with noise and a fraction `tissue` of soft-tissue voxels."""
    hu = rng.normal(-850, 40, size=shape)
    hu[rng.random(shape) < tissue] = 40
    return hu


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize("lookahead", [2, 3, 4])
def test_weights_and_fractions_equal_the_loop(rng, dtype, lookahead):
    config = ExtractionConfig(cube_shape=(6, 5, 4), scale=4, border_xy=1, border_z=1,
                              lookahead=lookahead)
    hu = rng.uniform(-1000, 300, size=(16, 15, 14)).astype(dtype)
    x01 = normalize_intensity(hu)
    thr = normalize_intensity(np.float32(-150))[()]
    weights = tissue_weights(x01, threshold=thr, lookahead=lookahead)
    starts = sample_cube_starts(hu.shape, rng=rng, config=config, n=12)
    by_crops = tissue_fractions(hu, starts, config=config, method="crops")
    by_table = tissue_fractions(hu, starts, config=config, method="table")
    for (x, y, z), f1, f2 in zip(starts, by_crops, by_table):
        ref = _loop_weights(x01[x:x + 6, y:y + 5, z:z + 4 + lookahead], thr, 6, 5, 4, lookahead)
        np.testing.assert_array_equal(weights[x:x + 6, y:y + 5, z:z + 4], ref)
        assert f1 == f2 and np.isclose(f1, ref.sum() / ref.size)
        # The release's decision, made on its own float32 sum.
        assert (ref.sum() > 0.15 * ref.size) == (f1 > 0.15)
    assert 0 < by_crops.min() and by_crops.max() < 1  # a mixed volume: non-trivial fractions


def test_first_scale_accepted_candidates_are_kept(rng):
    hu = _lung_like(rng, (40, 40, 30), tissue=0.1).astype(np.int16)
    cubes, info = extract_cubes_from_volume(hu, rng=np.random.default_rng(3), config=SMALL,
                                            return_info=True)
    starts = sample_cube_starts(hu.shape, rng=np.random.default_rng(3), config=SMALL)
    ok = tissue_fractions(hu, starts, config=SMALL) <= SMALL.tissue_fraction
    assert 0 < ok.mean() < 1
    first = np.flatnonzero(ok)[:SMALL.scale]
    np.testing.assert_array_equal(info["starts"], starts[first])
    assert info["n_tries"] == first[-1] + 1
    assert cubes.shape == (4, 8, 8, 4) and cubes.dtype == np.float32
    x, y, z = starts[first[1]]
    np.testing.assert_array_equal(cubes[1], normalize_intensity(hu[x:x + 8, y:y + 8, z:z + 4]))
    assert cubes.min() >= 0 and cubes.max() <= 1


def test_seeded_and_filter_can_be_turned_off(rng):
    hu = _lung_like(rng, (40, 40, 30), tissue=0.3)
    a = extract_cubes_from_volume(hu, rng=np.random.default_rng(1), config=SMALL)
    b = extract_cubes_from_volume(hu, rng=np.random.default_rng(1), config=SMALL)
    c = extract_cubes_from_volume(hu, rng=np.random.default_rng(2), config=SMALL)
    assert len(a) == 0  # 30% tissue: every crop has too much
    np.testing.assert_array_equal(a, b)
    off = ExtractionConfig(**{**SMALL.to_dict(), "hu_threshold": None})
    d = extract_cubes_from_volume(hu, rng=np.random.default_rng(1), config=off)
    e = extract_cubes_from_volume(hu, rng=np.random.default_rng(2), config=off)
    assert len(d) == 4 and not np.array_equal(d, e) and len(c) == 0


def test_bad_volumes_and_configs(rng):
    with pytest.raises(ScanTooSmallError, match="too small"):
        extract_cubes_from_volume(np.zeros((40, 40, 8)), rng=rng, config=SMALL)
    with pytest.raises(ValueError, match="3D"):
        extract_cubes_from_volume(np.zeros((40, 40)), rng=rng, config=SMALL)
    bad = np.zeros((40, 40, 30))
    bad[3, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        extract_cubes_from_volume(bad, rng=rng, config=SMALL)
    with pytest.raises(ValueError, match="lookahead"):
        ExtractionConfig(lookahead=1)
    with pytest.raises(ValueError, match="cube_shape"):
        ExtractionConfig(cube_shape=(64, 64))
    assert ExtractionConfig.demo().cube_shape == (32, 32, 16)


def _data_set(root, rng):
    """Two subsets of small lung-like scans plus one of each kind of bad scan."""
    for subset in (0, 1):
        for i in range(3):
            write_volume(_lung_like(rng, (40, 40, 30), 0.05).astype(np.int16),
                         root / f"subset{subset}" / f"s{subset}_{i}.mhd", spacing=(0.7, 0.7, 2))
    write_volume(np.zeros((40, 40, 8), np.int16), root / "subset1" / "short.mhd")
    write_volume(np.full((40, 40, 30), -1000, np.int16), root / "subset1" / "truncated.mhd")
    with open(root / "subset1" / "truncated.raw", "r+b") as f:
        f.truncate(100)
    write_volume(np.zeros((40, 40, 30), np.int16), root / "subset1" / "noraw.mhd")
    os.remove(root / "subset1" / "noraw.raw")
    tissue = np.full((40, 40, 30), 40, np.int16)
    write_volume(tissue, root / "subset1" / "tissue.mhd")
    (root / "empty").mkdir()


def test_extract_cubes_files_manifest_skips_and_workers(tmp_path, rng):
    _data_set(tmp_path, rng)
    one = extract_cubes(tmp_path, [0, 1], tmp_path / "w0", config=SMALL, seed=5, workers=0,
                        progress=False)
    two = extract_cubes(tmp_path, [0, 1], tmp_path / "w2", config=SMALL, seed=5, workers=2,
                        progress=False)
    for subset in ("0", "1"):
        a = open_cubes(one["files"][subset], cube_shape=(8, 8, 4))
        b = open_cubes(two["files"][subset], cube_shape=(8, 8, 4))
        np.testing.assert_array_equal(a, b)
        assert len(a) == one["n_cubes"][subset] == 12 and a.dtype == np.float32
    assert find_cube_files(tmp_path / "w0", [0, 1]) == [one["files"]["0"], one["files"]["1"]]
    assert one["n_skipped"] == 4
    assert one["skipped_by_reason"] == {"too small": 1, "unreadable": 2,
                                        "no cube passed the tissue filter": 1}
    details = {os.path.basename(s["path"]): s["detail"] for s in one["skipped"]}
    assert "truncated" in details["truncated.mhd"] and "noraw.raw" in details["noraw.mhd"]
    manifest = json.loads((tmp_path / "w0" / "bat_4_s_8x8x4_1.json").read_text(encoding="utf-8"))
    assert manifest["n_scans"] == 7 and manifest["n_cubes"] == 12 and manifest["seed"] == 5
    assert [s["seriesuid"] for s in manifest["sources"]] == ["s1_0", "s1_1", "s1_2"]
    assert manifest["parameters"]["hu_threshold"] == -150.0
    other = extract_cubes(tmp_path, [0], tmp_path / "s6", config=SMALL, seed=6, workers=0,
                          progress=False)
    assert not np.array_equal(np.load(other["files"]["0"]), np.load(one["files"]["0"]))
    half = extract_cubes(tmp_path, [0], tmp_path / "f16", seed=5, workers=0, progress=False,
                         config=ExtractionConfig(**{**SMALL.to_dict(), "dtype": "float16"}))
    f16 = np.load(half["files"]["0"])
    assert f16.dtype == np.float16
    np.testing.assert_allclose(f16, np.load(one["files"]["0"]), atol=1e-3)


def test_extract_cubes_missing_or_empty_subset(tmp_path):
    (tmp_path / "subset0").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        extract_cubes(tmp_path, [0], tmp_path / "out", config=SMALL, progress=False)
    with pytest.raises(FileNotFoundError, match="subset3"):
        extract_cubes(tmp_path, [3], tmp_path / "out", config=SMALL, progress=False)
    assert not (tmp_path / "out").exists()


def test_find_scans_any_layout_and_dicom_with_a_missing_slice(tmp_path, rng):
    from models_genesis.data.phantoms.lidc import write_dicom_series
    from models_genesis.pipeline.extract_cubes import extract_cubes_from_folder, find_scans

    hu = _lung_like(rng, (20, 20, 12)).astype(np.int16)
    root = tmp_path / "scans"
    write_volume(hu, root / "a" / "scan.nii.gz")
    write_volume(hu, root / "a" / "scan.mhd")  # its .raw is not a scan
    series = root / "b" / "study" / "series"
    write_dicom_series(series, hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), series_uid="1.2.3.4",
                       study_uid="1.2.3", patient_id="P1", omit_slices=(5,))
    (root / "b" / "README.txt").write_text("notes", encoding="utf-8")
    assert find_scans(root) == [(str(root / "a" / "scan.mhd"), None),
                                (str(root / "a" / "scan.nii.gz"), None), (str(series), "1.2.3.4")]
    summary = extract_cubes_from_folder(root, tmp_path / "out", config=SMALL, val_ratio=0.0,
                                        workers=0, progress=False)
    assert summary["split"] == {"train": ["a/scan.mhd", "a/scan.nii.gz",
                                          "b/study/series#1.2.3.4"]}
    assert summary["n_cubes"] == {"train": 12} and not summary["skipped"]
    manifest = json.loads((tmp_path / "out" / "bat_4_s_8x8x4_train.json").read_text("utf-8"))
    dicom = manifest["sources"][2]
    assert dicom["seriesuid"] == "1.2.3.4" and dicom["shape"] == [20, 20, 12]
    assert "resampled from 11 slices" in dicom["note"]
    with pytest.raises(FileNotFoundError, match="No scan"):
        find_scans(tmp_path / "out")


def test_split_and_modality_rules():
    from models_genesis.pipeline.extract_cubes import scan_modality, split_scans

    names = [f"s{i}.nii.gz" for i in range(10)]
    split = split_scans(names, val_ratio=0.3, seed=1)
    assert len(split["val"]) == 3 and sorted(split["train"] + split["val"]) == names
    assert split == split_scans(names, val_ratio=0.3, seed=1)
    assert split != split_scans(names, val_ratio=0.3, seed=2)
    assert len(split_scans(names[:2], val_ratio=0.1)["val"]) == 1  # at least one each
    rules = ["t1/*=mr", "*_0000.nii.gz=ct", "*=mr"]
    assert [scan_modality(n, rules) for n in ("t1/a.nii", "x/c_0000.nii.gz", "d.nrrd")] == \
        ["mr", "ct", "mr"]
    assert scan_modality("anything", "ct") == "ct"
    with pytest.raises(ValueError, match="No modality rule"):
        scan_modality("d.nrrd", ["*.nii=mr"])
    with pytest.raises(ValueError, match="val_ratio"):
        split_scans(names, val_ratio=1.0)


def test_mr_filter_keeps_anatomy_rejects_background_and_ignores_outliers(rng):
    config = ExtractionConfig(cube_shape=(8, 8, 4), scale=200, border_xy=0, border_z=0,
                              modality="mr", max_tries_factor=1)
    mri = rng.normal(5, 2, (32, 16, 12)).clip(0)  # dark background ...
    mri[16:] += 800  # ... and anatomy in the upper half of x
    mri[0, 0, 0] = 1e6  # a single outlier
    cubes, info = extract_cubes_from_volume(mri, rng=rng, config=config, return_info=True)
    starts = info["starts"]
    fractions = ((starts[:, 0] + 8).clip(16) - starts[:, 0].clip(16)) / 8  # anatomy in x
    assert len(cubes) and (fractions >= 0.5).all()  # no crop mostly background
    assert cubes.mean() > 0.3  # the outlier did not squash the anatomy to ~0
    assert (cubes >= 0).all() and (cubes <= 1).all()
    off = ExtractionConfig(**{**config.to_dict(), "min_foreground": 0.0})
    assert len(extract_cubes_from_volume(mri, rng=np.random.default_rng(0), config=off)) == 200
