"""Axial slices for Genesis Chest CT 2D: the slice tissue filter, slice files, 2D pairs."""

import numpy as np
import pytest

from models_genesis.data.io.cube_files import save_cubes
from models_genesis.data.pretraining.restoration_dataset import RestorationDataset
from models_genesis.data.pretraining.slices import open_slices, slice_config, slice_tissue_fraction
from models_genesis.pipeline.extract_cubes import extract_slices
from models_genesis.data.pretraining.cubes import extract_cubes_from_volume
from models_genesis.data.io.volumes import write_volume


def test_slice_filter_is_the_share_of_tissue_pixels(rng):
    s = np.full((32, 32), -1000, np.int16)
    s[:8, :10] = 40  # 80 tissue pixels (>= -150 HU)
    s[20, 20] = -150  # exactly the threshold counts
    assert slice_tissue_fraction(s) == pytest.approx(81 / 1024)
    f = rng.uniform(-1000, 1000, (32, 32)).astype(np.float32)
    assert slice_tissue_fraction(f) == pytest.approx(np.mean(f >= -150.0), abs=1e-12)


def _scan():
    """Air with tissue: slices z < 10 are full of tissue, z >= 10 hold a 4x4 tissue square."""
    v = np.full((48, 48, 24), -1000, np.int16)
    v[:, :, :10] = 40
    v[20:24, 20:24, 10:] = 300
    return v


def test_slices_pass_the_filter_only_where_tissue_is_rare(rng):
    config = slice_config((16, 16), scale=20, border_xy=4, border_z=2)
    assert config.cube_shape == (16, 16, 1) and config.lookahead == 2
    slices, info = extract_cubes_from_volume(_scan(), rng=rng, config=config, return_info=True)
    z = info["starts"][:, 2]
    assert len(slices) == 20 and np.all(z >= 10)  # the full-tissue slices are all rejected
    # Kept slices have tissue in at most 15% of pixels and are not constant (contrast check).
    assert np.all((slices >= 0.425).mean(axis=(1, 2, 3)) <= 0.15)


def test_extract_slices_writes_memory_mapped_slice_files(tmp_path):
    for k in range(2):
        write_volume(_scan(), tmp_path / "data" / f"subset{k}" / f"scan{k}.mhd",
                     spacing=(0.8, 0.8, 1.5))
    config = slice_config((16, 16), scale=6, border_xy=4, border_z=2)
    summary = extract_slices(tmp_path / "data", [0, 1], tmp_path / "out", config=config,
                             workers=0, progress=False)
    path = summary["files"]["0"]
    assert path.endswith("bat_6_s_16x16x1_0.npy")
    slices = open_slices(path)
    assert slices.shape == (6, 16, 16) and isinstance(slices.base, np.memmap)
    ds = RestorationDataset([path, summary["files"]["1"]], 4, dims=2, seed=3)
    x, y = ds[0]
    assert x.shape == y.shape == (4, 16, 16, 1)
    x2, y2 = RestorationDataset([path, summary["files"]["1"]], 4, dims=2, seed=3)[0]
    np.testing.assert_array_equal(x, x2)  # same seed, same pairs
    np.testing.assert_array_equal(y, y2)


def test_cubes_are_not_slices(tmp_path, rng):
    path = save_cubes(tmp_path / "bat_2_s_16x16x8_0.npy", rng.random((2, 16, 16, 8)))
    with pytest.raises(ValueError, match="bat_2_s_16x16x8_0.npy.*not 2D slices"):
        open_slices(path)
    with pytest.raises(ValueError, match=r"dims=2 needs 2D slices.*\(16, 16, 8\)"):
        RestorationDataset([path], 2, dims=2)
    with pytest.raises(ValueError, match="one voxel deep"):
        from models_genesis.data.pretraining.cubes import ExtractionConfig

        extract_slices(tmp_path, [0], tmp_path / "o", config=ExtractionConfig())


def test_2d_arrays_give_2d_pairs(rng):
    ds = RestorationDataset(rng.random((5, 32, 32), dtype=np.float32), 2, dims=2, seed=0,
                            data_format="channels_first")
    x, y = ds[1]
    assert x.shape == y.shape == (2, 1, 32, 32)
    assert np.all((x >= 0) & (x <= 1))
