import os

import keras
import numpy as np
import pytest

from models_genesis.data.io.cube_files import save_cubes
from models_genesis.data.pretraining.restoration_dataset import RestorationDataset
from models_genesis.transformations.unified import TransformConfig

CFG = TransformConfig(local_windows=50, local_max_window=(1, 4), margin=1)


@pytest.fixture
def cubes(rng):
    return rng.random((10, 16, 16, 8), dtype=np.float32)


def test_batches_shapes_formats_and_targets(cubes):
    ds = RestorationDataset(cubes, batch_size=4, config=CFG, seed=3)
    assert len(ds) == 3
    x, y = ds[0]
    assert x.shape == y.shape == (4, 16, 16, 8, 1) and x.dtype == y.dtype == np.float32
    assert ds[2][0].shape[0] == 2
    order = ds.epoch_order(0)
    assert sorted(order) == list(range(10))
    ident = RestorationDataset(cubes, batch_size=4, scheme="identity", seed=3, shuffle=False,
                               data_format="channels_first")
    xi, yi = ident[1]
    assert xi.shape == (4, 1, 16, 16, 8) and np.array_equal(xi, yi)
    flat = {tuple(np.sort(c.ravel())[:5]) for c in cubes}  # flips permute voxels only
    assert all(tuple(np.sort(c.ravel())[:5]) in flat for c in yi[:, 0])


def test_determinism_epochs_and_validation(cubes):
    ds = RestorationDataset(cubes, batch_size=4, config=CFG, seed=3)
    a = ds[1]
    assert all(np.array_equal(u, v) for u, v in zip(a, ds[1]))
    ds.on_epoch_begin()
    ds.on_epoch_end()
    assert ds.epoch == 1 and not np.array_equal(ds[1][0], a[0])
    ds.on_epoch_end()  # without on_epoch_begin (fit's reset): ignored
    assert ds.epoch == 1
    ds.set_epoch(0)
    assert np.array_equal(ds[1][0], a[0])
    other = RestorationDataset(cubes, batch_size=4, config=CFG, seed=4)
    assert not np.array_equal(other[1][0], a[0])
    val = RestorationDataset(cubes, batch_size=4, config=CFG, seed=3, validation=True)
    first = val[0][0]
    for _ in range(2):
        val.on_epoch_begin()
        val.on_epoch_end()
    assert np.array_equal(val[0][0], first)
    assert not np.array_equal(np.random.default_rng(np.random.SeedSequence((3, 0), spawn_key=(1,))).random(4),
                              np.random.default_rng((3, 0, 1)).random(4))


def test_sources_npy_list_folder_and_samples_per_epoch(tmp_path, cubes):
    save_cubes(tmp_path / "bat_8_s_16x16x8_0.npy", cubes[:6], dtype="float16")
    save_cubes(tmp_path / "bat_8_s_16x16x8_1.npy", cubes[6:])
    paths = [tmp_path / "bat_8_s_16x16x8_0.npy", tmp_path / "bat_8_s_16x16x8_1.npy"]
    half = cubes.astype(np.float16).astype(np.float32)
    ref = RestorationDataset(np.concatenate([half[:6], cubes[6:]]), batch_size=3, config=CFG, seed=1)
    lst = RestorationDataset(paths, batch_size=3, config=CFG, seed=1)
    folder = RestorationDataset.from_cube_folder(tmp_path, [0, 1], batch_size=3, config=CFG, seed=1)
    for i in range(len(ref)):
        assert np.array_equal(ref[i][0], lst[i][0]) and np.array_equal(ref[i][1], folder[i][1])
    one = RestorationDataset(paths[1], batch_size=2, config=CFG, samples_per_epoch=9, shuffle=False)
    assert len(one) == 5 and one.epoch_order(0).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]


def test_sample_pngs_once_per_epoch(tmp_path, cubes):
    ds = RestorationDataset(cubes, batch_size=2, config=CFG, sample_dir=tmp_path / "samples")
    for _ in range(2):
        ds.on_epoch_begin()
        ds.on_epoch_end()
    assert sorted(os.listdir(tmp_path / "samples")) == ["pairs_epoch_0000.png", "pairs_epoch_0001.png"]


def test_bad_input(tmp_path, cubes):
    with pytest.raises(ValueError, match="cubes.shape"):
        RestorationDataset(cubes[0])
    bad = cubes.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        RestorationDataset(bad)
    bad = cubes.copy()
    bad[7] += 2
    ds = RestorationDataset(bad, batch_size=10, shuffle=False, config=CFG)  # spot check passes
    with pytest.raises(ValueError, match=r"Cubes .*7.* of 'cubes'"):
        ds[0]
    np.save(tmp_path / "wrong.npy", cubes[:, :, :, 0])
    with pytest.raises(ValueError, match="wrong.npy"):
        RestorationDataset(tmp_path / "wrong.npy")
    np.save(tmp_path / "other.npy", cubes[:, :8])
    np.save(tmp_path / "good.npy", cubes)
    with pytest.raises(ValueError, match="different shapes"):
        RestorationDataset([tmp_path / "good.npy", tmp_path / "other.npy"])
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        RestorationDataset(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="batch_size"):
        RestorationDataset(cubes, batch_size=0)
    with pytest.raises(ValueError, match="data_format"):
        RestorationDataset(cubes, data_format="NCDHW")
    with pytest.raises(ValueError, match="scheme"):
        RestorationDataset(cubes, scheme="rotation")
    with pytest.raises(TypeError, match="cubes"):
        RestorationDataset({"a": 1})


class _Recorder(keras.Model):
    """Records the batches `fit` feeds it (run eagerly)."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def call(self, x):
        return x

    def train_step(self, data):
        x, _ = data
        self.seen.append(keras.ops.convert_to_numpy(x).copy())
        return {"mean": keras.ops.mean(x)}


@pytest.mark.large
def test_fit_with_processes_matches_no_workers_over_epochs(tmp_path, cubes):
    np.save(tmp_path / "cubes.npy", cubes)
    seen = {}
    for kw in ({"workers": 0}, {"workers": 2, "use_multiprocessing": True}):
        ds = RestorationDataset(tmp_path / "cubes.npy", batch_size=4, config=CFG, seed=5, **kw)
        model = _Recorder()
        model.compile(run_eagerly=True)
        model.fit(ds, epochs=2, verbose=0, shuffle=False)
        seen[kw["workers"]] = model.seen
        assert ds.epoch == 2
    ref = RestorationDataset(cubes, batch_size=4, config=CFG, seed=5)
    expected = [ref.pairs(i, e)[0] for e in range(2) for i in range(3)]
    assert len(seen[0]) == len(seen[2]) == 6
    for a, b, c in zip(seen[0], seen[2], expected):
        assert np.array_equal(a, c) and np.array_equal(b, c)
    assert not np.array_equal(expected[0], expected[3])
