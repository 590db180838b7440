"""NCC/ECC crops on disk: crop files, the bounded reader, per-epoch negative sampling, and the
prepared crops against the in-memory loader's."""

import os

import numpy as np
import pytest

from models_genesis.data.target_tasks.candidate_crops import CandidateDataset, epoch_rows
from models_genesis.data.io.crop_files import CropReader, read_crop_header, write_crop_file

SHAPE = (8, 8, 8)


def _files(tmp_path, rng, counts=(5, 3, 4)):
    crops = [rng.random((n,) + SHAPE).astype(np.float32) for n in counts]
    paths = []
    for k, c in enumerate(crops):
        path = tmp_path / f"scan{k}.npy"
        write_crop_file(path, (c[i:i + 2] for i in range(0, len(c), 2)), len(c), SHAPE)
        paths.append(str(path))
    return crops, paths


def test_crop_files_round_trip_with_a_bounded_reader(tmp_path, rng):
    crops, paths = _files(tmp_path, rng)
    np.testing.assert_array_equal(np.load(paths[0], mmap_mode="r"), crops[0].astype(np.float16))
    assert read_crop_header(paths[1])[0] == (3,) + SHAPE
    reader = CropReader(max_open=2)
    order = [(2, 3), (0, 4), (1, 0), (2, 1), (0, 0)]
    got = reader.read([paths[f] for f, _ in order], [i for _, i in order])
    want = np.stack([crops[f][i] for f, i in order]).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(got, want)
    assert len(reader._open) <= 2  # never more open files than allowed
    with pytest.raises(IndexError, match="outside"):
        reader.read([paths[1]], [3])
    reader.close()


def test_write_refuses_a_wrong_count(tmp_path, rng):
    with pytest.raises(ValueError, match="announced"):
        write_crop_file(tmp_path / "x.npy", [rng.random((2,) + SHAPE)], 3, SHAPE)
    assert not os.listdir(tmp_path)  # no file left behind


def test_epoch_rows_sample_negatives_afresh_each_epoch():
    labels = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    first = epoch_rows(labels, 2, seed=0, epoch=0, shuffle=True)
    assert len(first) == 2 + 4 and set(np.flatnonzero(labels)) <= set(first)
    assert len(set(first)) == len(first)
    np.testing.assert_array_equal(first, epoch_rows(labels, 2, seed=0, epoch=0, shuffle=True))
    negatives = [frozenset(r for r in epoch_rows(labels, 2, seed=0, epoch=e, shuffle=False)
                           if labels[r] == 0) for e in range(6)]
    assert len(set(negatives)) > 1  # a new draw of negatives per epoch
    assert len(epoch_rows(labels, None, seed=0, epoch=0, shuffle=False)) == len(labels)


def test_candidate_dataset_serves_batches_from_disk(tmp_path, rng):
    crops, paths = _files(tmp_path, rng)
    file_of = np.repeat(np.arange(3), [len(c) for c in crops])
    index = np.concatenate([np.arange(len(c)) for c in crops])
    labels = np.zeros(len(index), np.int64)
    labels[[0, 6]] = 1
    ds = CandidateDataset(np.asarray(paths, dtype=object)[file_of], index, labels, batch_size=3,
                          negative_ratio=1.5, seed=1)
    assert len(ds) == 2  # 2 positives + 3 negatives, batches of 3
    x, y = ds[0]
    assert x.shape == (3,) + SHAPE + (1,) and x.dtype == np.float32
    rows = ds.rows()[:3]
    want = np.stack([crops[file_of[r]][index[r]] for r in rows]).astype(np.float16)
    np.testing.assert_array_equal(x[..., 0], want.astype(np.float32))
    np.testing.assert_array_equal(y, labels[rows])
    valid = CandidateDataset(np.asarray(paths, dtype=object)[file_of], index, labels,
                             batch_size=3, negative_ratio=1.5, seed=1, resample_each_epoch=False,
                             shuffle=False)
    before = valid.rows().copy()
    valid.on_epoch_end()
    np.testing.assert_array_equal(valid.rows(), before)  # validation keeps one draw


@pytest.mark.large
def test_prepared_ncc_crops_equal_the_loaders(tmp_path):
    from models_genesis.data.phantoms.chest import make_chest_phantoms
    from models_genesis.data.target_tasks import load_target_data
    from models_genesis.pipeline.prepare import prepare_dataset

    raw = tmp_path / "chest"
    make_chest_phantoms(raw, n=3, n_subsets=3, seed=0, shape=(64, 64, 32), progress=False)
    subsets = {"train": [0], "valid": [1], "test": [2]}
    prepare_dataset("ncc", raw, tmp_path / "prepared", input_shape=(16, 16, 8), progress=False)
    lazy = load_target_data("ncc", tmp_path / "prepared", subsets=subsets, negative_ratio=None)
    eager = load_target_data("ncc", raw, subsets=subsets, input_shape=(16, 16, 8))
    for name in ("train", "valid", "test"):
        paths, indices, labels = lazy.split(name)
        x = CropReader().read(paths, indices)
        np.testing.assert_array_equal(labels, eager.split(name)[1])
        np.testing.assert_allclose(x, eager.split(name)[0][..., 0], atol=1e-3)  # float16
    assert lazy.info["counts"] == eager.info["counts"]


def test_prepared_ecc_split_files_and_fold(tmp_path):
    from models_genesis.data.phantoms.pe import make_pe_phantoms
    from models_genesis.data.target_tasks import load_target_data
    from models_genesis.pipeline.prepare import prepare_dataset

    make_pe_phantoms(tmp_path / "pe", n=4, seed=0, shape=(32, 32, 32), fp_per_tp=2)
    prepare_dataset("ecc", tmp_path / "pe", tmp_path / "prep", input_shape=(8, 8, 8),
                    progress=False)
    splits = tmp_path / "splits"
    splits.mkdir()
    for name, ids in (("train", ["Patient10000", "Patient10003"]), ("val", ["Patient10001"]),
                      ("test", ["Patient10002"])):
        (splits / f"{name}_cv-2.csv").write_text("FileName\n" + "\n".join(ids) + "\n")
    data = load_target_data("ecc", tmp_path / "prep", split_dir=splits, fold=2)
    assert data.info["split"]["train"] == ["Patient10000", "Patient10003"]
    assert data.info["split"]["test"] == ["Patient10002"]
    assert data.info["negative_ratio"] == 10  # the default: every positive + 10 negatives each
    with pytest.raises(ValueError, match="split_dir"):
        load_target_data("ecc", tmp_path / "prep", fold=2)
    with pytest.raises(ValueError, match="prepared with input_shape"):
        load_target_data("ecc", tmp_path / "prep", input_shape=(16, 16, 16))
