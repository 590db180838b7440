"""Target-task loaders (NCC, NCS, ECC, LCS, BMS) on phantoms written in the real formats."""

import os
import shutil

import numpy as np
import pandas as pd
import pytest

from models_genesis.data.target_tasks import (TARGET_LOADERS, load_target_data,
                                              subsample_fraction)
from models_genesis.data.target_tasks.bms import read_folds
from models_genesis.data.target_tasks.common import extract_crops, seeded_split
from models_genesis.data.target_tasks.ecc import read_release_split
from models_genesis.data.io.volumes import read_volume, write_volume

SHAPE = (32, 32, 16)
SPLITS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "reference_data",
                          "release_splits")
needs_splits = pytest.mark.skipif(not os.path.isdir(SPLITS_DIR),
                                  reason="../shared/reference_data/release_splits not present")


@pytest.fixture(scope="module")
def chest(tmp_path_factory):
    from models_genesis.data.phantoms.chest import make_chest_phantoms

    out = tmp_path_factory.mktemp("chest")
    make_chest_phantoms(out, n=10, seed=0, shape=(64, 64, 32), progress=False)
    return out


@pytest.fixture(scope="module")
def lits(tmp_path_factory):
    from models_genesis.data.phantoms.abdomen import make_abdomen_phantoms

    out = tmp_path_factory.mktemp("lits")
    make_abdomen_phantoms(out, n=6, seed=0, shape=(64, 64, 32), spacing=(4.0, 4.0, 6.0))
    return out


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    from models_genesis.data.phantoms.brain import make_brain_phantoms

    out = tmp_path_factory.mktemp("brats")
    make_brain_phantoms(out, n=6, seed=0, shape=(48, 48, 32))
    return out


@pytest.fixture(scope="module")
def pe(tmp_path_factory):
    from models_genesis.data.phantoms.pe import make_pe_phantoms

    out = tmp_path_factory.mktemp("pe")
    make_pe_phantoms(out, n=5, seed=0, shape=(64, 64, 48), fp_per_tp=4)
    return out


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


# --- shared pieces -----------------------------------------------------------------------------

def test_extract_crops_matches_slicing_and_pads():
    a = np.arange(10 * 12 * 8, dtype=np.float32).reshape(10, 12, 8)
    crops = extract_crops(a, [[5, 6, 4], [0, 0, 0]], (4, 4, 2), pad_value=-1.0)
    np.testing.assert_array_equal(crops[0], a[3:7, 4:8, 3:5])
    # Centred on the corner: the first half of each axis is padding.
    assert np.all(crops[1][:2] == -1) and np.all(crops[1][:, :2] == -1)
    np.testing.assert_array_equal(crops[1][2:, 2:, 1:], a[:2, :2, :1])


def test_seeded_split_counts_disjoint_and_reproducible():
    ids = [f"volume-{i}" for i in range(130)]
    a = seeded_split(ids, (100, 15, 15), rng=np.random.default_rng(0))
    b = seeded_split(ids, (100, 15, 15), rng=np.random.default_rng(0))
    assert a == b
    assert [len(a[k]) for k in ("train", "valid", "test")] == [100, 15, 15]
    assert set(a["train"]) | set(a["valid"]) | set(a["test"]) == set(ids)
    assert not set(a["train"]) & set(a["test"])


@pytest.mark.parametrize("task", sorted(TARGET_LOADERS))
def test_input_shape_not_divisible_by_8(task, tmp_path):
    with pytest.raises(ValueError, match="multiple of 8"):
        load_target_data(task, tmp_path, input_shape=(32, 32, 12))


def test_dispatcher_rejects_unknown_task_and_option(tmp_path):
    with pytest.raises(ValueError, match="Valid tasks"):
        load_target_data("xyz", tmp_path)
    with pytest.raises(ValueError, match="Bad options"):
        load_target_data("lcs", tmp_path, folds=3)


# --- NCC ---------------------------------------------------------------------------------------

def test_ncc_candidates_split_by_subset(chest):
    data = load_target_data("ncc", chest, input_shape=SHAPE)
    table = pd.read_csv(chest / "candidates.csv", dtype={"seriesuid": str})
    for name in ("train", "valid", "test"):
        x, y = data.split(name)
        uids = data.info["split"][name]
        rows = table[table.seriesuid.isin(uids)].sort_values("seriesuid", kind="stable")
        assert x.shape == (len(rows),) + SHAPE + (1,) and x.dtype == np.float32
        np.testing.assert_array_equal(y, rows["class"].to_numpy())
        assert 0.0 <= x.min() and x.max() <= 1.0
    subsets = {u: int(os.path.basename(os.path.dirname(p))[6:])
               for p in (chest.glob("subset*/*.mhd")) for u in [p.stem]}
    assert {subsets[u] for u in data.info["split"]["train"]} <= {0, 1, 2, 3, 4}
    assert {subsets[u] for u in data.info["split"]["test"]} <= {7, 8, 9}
    # The crop centre is the candidate's voxel, in [-1000, 1000] HU scaled to [0, 1].
    uid = data.info["split"]["train"][0]
    row = table[table.seriesuid == uid].iloc[0]
    vol = read_volume(next(chest.glob(f"subset*/{uid}.mhd")))
    ijk = np.rint(vol.world_to_voxel([row.coordX, row.coordY, row.coordZ])).astype(int)
    expected = np.clip((vol.array[tuple(ijk)] + 1000.0) / 2000.0, 0, 1)
    assert data.x_train[0, 16, 16, 8, 0] == pytest.approx(expected, abs=1e-6)


def test_ncc_negative_ratio_caps_false_positives(chest):
    data = load_target_data("ncc", chest, input_shape=SHAPE, negative_ratio=2, seed=1)
    for name in ("train", "valid", "test"):
        y = data.split(name)[1]
        assert (y == 0).sum() <= 2 * max((y == 1).sum(), 1)
        assert (y == 1).sum() == data.info["positives"][name]


def test_ncc_missing_volume_is_counted(chest, tmp_path):
    root = _copy(chest, tmp_path / "c")
    table = pd.read_csv(root / "candidates.csv", dtype={"seriesuid": str})
    extra = table.iloc[:2].assign(seriesuid="1.2.3.missing")
    pd.concat([table, extra]).to_csv(root / "candidates.csv", index=False)
    with pytest.raises(ValueError, match="1.2.3.missing"):
        load_target_data("ncc", root, input_shape=SHAPE)
    data = load_target_data("ncc", root, input_shape=SHAPE, errors="skip")
    assert data.info["n_skipped"] == 1 and "1.2.3.missing" in data.info["skipped"][0]["item"]
    assert sum(data.info["counts"].values()) == len(table)


# --- NCS ---------------------------------------------------------------------------------------

def test_ncs_crops_around_nodules(chest):
    data = load_target_data("ncs", chest, input_shape=SHAPE)
    n_nodules = len(pd.read_csv(chest / "annotations.csv"))
    assert sum(data.info["counts"].values()) + data.info["n_skipped"] == n_nodules
    for name in ("train", "valid", "test"):
        x, m = data.split(name)
        assert x.shape == m.shape and set(np.unique(m).tolist()) <= {0.0, 1.0}
        assert np.all(m.reshape(len(m), -1).max(axis=1) == 1)
        # The masks cover nodules (>= -700 HU, ground glass or solid), not lung (~ -850 HU).
        assert np.all([xi[mi > 0].mean() > 0.15 for xi, mi in zip(x, m)])


def test_ncs_release_arrays(tmp_path, rng):
    for name, n in (("train", 3), ("valid", 2), ("test", 2)):
        np.save(tmp_path / f"x_{name}_64x64x32.npy", rng.random((n, 64, 64, 32), dtype=np.float32))
        np.save(tmp_path / f"m_{name}_64x64x32.npy", (rng.random((n, 64, 64, 32)) > 0.9) * 1.0)
    data = load_target_data("ncs", tmp_path, input_shape=SHAPE)
    x = np.load(tmp_path / "x_train_64x64x32.npy")
    np.testing.assert_array_equal(data.x_train[..., 0], x[:, 16:48, 16:48, 8:24])
    assert data.info["counts"] == {"train": 3, "valid": 2, "test": 2}
    np.save(tmp_path / "m_test_64x64x32.npy", np.full((2, 64, 64, 32), 0.5))
    with pytest.raises(ValueError, match="m_test_64x64x32.npy"):
        load_target_data("ncs", tmp_path)


# --- LCS ---------------------------------------------------------------------------------------

def test_lcs_liver_crops_and_split(lits):
    data = load_target_data("lcs", lits, input_shape=SHAPE, crops_per_volume=4,
                            positive_fraction=1.0)
    assert data.info["patients"] == {"train": 4, "valid": 1, "test": 1}  # 100:15:15 of 6
    assert data.x_train.shape == (16,) + SHAPE + (1,)
    assert np.all(data.y_train[:, 16, 16, 8, 0] == 1)  # every centre on the liver (labels 1 or 2)
    test_id = data.info["split"]["test"][0]
    assert data.test_volumes == ((str(lits / f"{test_id}.nii"),
                                  str(lits / f"segmentation-{test_id[7:]}.nii")),)
    again = load_target_data("lcs", lits, input_shape=SHAPE, crops_per_volume=4,
                             positive_fraction=1.0)
    np.testing.assert_array_equal(again.x_train, data.x_train)


@pytest.mark.parametrize("corruption, message", [
    ("label3", "outside the expected set"),
    ("grid", "spacing"),
    ("empty", "empty"),
])
def test_lcs_bad_masks(lits, tmp_path, corruption, message):
    root = _copy(lits, tmp_path / "l")
    seg = read_volume(root / "segmentation-2.nii")
    array = np.asarray(seg.array).copy()
    spacing = seg.spacing
    if corruption == "label3":
        array[array == 2] = 3
        array[0, 0, 0] = 3
    elif corruption == "grid":
        spacing = (1.0, 1.0, 1.0)
    else:
        array[:] = 0
    write_volume(array, root / "segmentation-2.nii", like=seg, spacing=spacing)
    with pytest.raises(ValueError, match=message):
        load_target_data("lcs", root, input_shape=SHAPE, crops_per_volume=2)
    data = load_target_data("lcs", root, input_shape=SHAPE, crops_per_volume=2, errors="skip")
    assert data.info["n_skipped"] == 1 and "segmentation-2.nii" in data.info["skipped"][0]["item"]
    assert sum(data.info["patients"].values()) == 5


# --- BMS ---------------------------------------------------------------------------------------

def _patients(root):
    return sorted(p.name for p in root.glob("*/Brats18_*"))


def test_bms_folds_from_files(brats, tmp_path):
    ids = _patients(brats)
    for k in range(3):
        (tmp_path / f"fold_{k + 1}.csv").write_text("\n".join(ids[2 * k:2 * k + 2]) + "\n")
    data = load_target_data("bms", brats, input_shape=SHAPE, fold=2, split_dir=tmp_path,
                            crops_per_volume=2, valid_fraction=0.25)
    split = data.info["split"]
    assert split["test"] == ids[2:4]
    assert sorted(split["train"] + split["valid"]) == ids[:2] + ids[4:]
    assert len(split["valid"]) == 1
    assert [os.path.basename(os.path.dirname(p)) for p, _ in data.test_volumes] == ids[2:4]
    assert data.info["crop_scale"] == pytest.approx(100 / 64)
    x = np.concatenate([data.x_train, data.x_test])
    assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.5  # per-patient min-max


def test_bms_seeded_folds_partition(brats):
    folds = [load_target_data("bms", brats, input_shape=SHAPE, fold=k, crops_per_volume=1,
                              valid_fraction=0.0).info["split"]["test"] for k in (1, 2, 3)]
    assert sorted(sum(folds, [])) == _patients(brats)


@needs_splits
def test_bms_release_folds_name_missing_patients(brats):
    folds = read_folds(fold_dir=os.path.join(SPLITS_DIR, "bms"))
    assert [len(f) for f in folds] == [95, 95, 95]
    assert len(set(sum(folds, []))) == 285
    with pytest.raises(ValueError, match="no data"):
        load_target_data("bms", brats, input_shape=SHAPE,
                         split_dir=os.path.join(SPLITS_DIR, "bms"))


# --- ECC ---------------------------------------------------------------------------------------

def test_ecc_candidates_and_release_split_format(pe, tmp_path):
    ids = sorted(p.name[:-len(".nii.gz")] for p in pe.glob("*.nii.gz"))
    lists = {"train": ids[:3], "val": ids[3:4], "test": ids[4:]}
    for name, members in lists.items():
        (tmp_path / f"{name}_cv-2.csv").write_text("FileName\n" + "\n".join(members) + "\n")
    data = load_target_data("ecc", pe, input_shape=(32, 32, 32), split_dir=tmp_path, fold=2)
    assert data.info["split"]["test"] == ids[4:]
    table = pd.read_csv(pe / "candidates.csv")
    assert len(data.y_test) == (table.seriesuid == ids[4]).sum()
    assert data.x_test.shape[1:] == (32, 32, 32, 1)
    # True emboli are dark filling defects (< 200 HU, 0.6 scaled); some false positives sit on
    # contrast-filled arteries (> 200 HU).
    centre = data.x_train[:, 16, 16, 16, 0]
    assert np.all(centre[data.y_train == 1] < 0.6) and np.any(centre[data.y_train == 0] > 0.6)


@needs_splits
def test_ecc_release_split_files(pe):
    split = read_release_split(os.path.join(SPLITS_DIR, "ecc"), fold=1)
    assert [len(split[k]) for k in ("train", "valid", "test")] == [74, 4, 39]
    assert not set(split["train"]) & set(split["test"])
    with pytest.raises(ValueError, match="no data"):
        load_target_data("ecc", pe, split_dir=os.path.join(SPLITS_DIR, "ecc"), fold=1)


# --- label fractions ---------------------------------------------------------------------------

def test_subsample_fraction_is_stratified_training_only():
    from models_genesis.data.target_tasks.common import TargetData

    n = 40
    y = (np.arange(n) % 4 == 0).astype(np.int64)  # 10 positives, 30 negatives
    x = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None, None, None],
                        (n, 8, 8, 8, 1)).copy()  # each crop holds its own index
    data = TargetData("ncc", x, y, x[:3], y[:3], x[:5], y[:5],
                      info={"counts": {"train": n, "valid": 3, "test": 5}})
    half = subsample_fraction(data, 0.5, rng=np.random.default_rng(0))
    assert (half.y_train == 1).sum() == 5 and (half.y_train == 0).sum() == 15
    kept = half.x_train[:, 0, 0, 0, 0].astype(int)
    assert list(kept) == sorted(set(kept)) and np.array_equal(y[kept], half.y_train)
    assert half.x_valid is data.x_valid and half.y_test is data.y_test
    assert half.info["counts"] == {"train": 20, "valid": 3, "test": 5}
    tiny = subsample_fraction(data, 0.01, rng=np.random.default_rng(0))
    assert sorted(tiny.y_train.tolist()) == [0, 1]  # each class keeps one sample
    again = subsample_fraction(data, 0.5, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again.x_train, half.x_train)
    with pytest.raises(ValueError, match="fraction"):
        subsample_fraction(data, 0.0, rng=np.random.default_rng(0))
