"""Genesis X-ray's data: reading radiographs, DRR phantoms, ChestX-ray14 layout, crop files."""

import numpy as np
import pytest
from PIL import Image

from models_genesis.data.phantoms.xray import (
    MU_WATER_PER_MM, attenuation_integral, drr, make_xray_phantoms, to_png_levels, write_png,
)
from models_genesis.data.pretraining.restoration_dataset import RestorationDataset
from models_genesis.data.pretraining.slices import open_slices
from models_genesis.data.pretraining.xray_crops import (
    patient_subsets, prepare_xray_crops, read_data_entry, read_radiograph,
)


def slab_volume(thickness_vox=10):
    """Air (-1000 HU) with a water slab (0 HU) `thickness_vox` voxels thick along y, over
    x < 8 only; 1 mm voxels."""
    hu = np.full((16, 32, 12), -1000.0)
    hu[:8, 5:5 + thickness_vox, :] = 0.0
    return hu


def test_drr_of_a_slab_is_the_known_integral():
    hu, spacing = slab_volume(10), (1.0, 1.0, 1.0)
    L = attenuation_integral(hu, spacing)
    np.testing.assert_allclose(L[:8], MU_WATER_PER_MM * 10.0)  # water: mu_w * 10 mm
    np.testing.assert_allclose(L[8:], 0.0)  # air attenuates nothing
    image = drr(hu, spacing)
    assert image.shape == (12, 16)  # rows z, columns x
    np.testing.assert_allclose(image[:, :8], 1 - np.exp(-MU_WATER_PER_MM * 10.0))
    np.testing.assert_allclose(image[:, 8:], 0.0)
    # Twice as thick: transmission squared.
    np.testing.assert_allclose(1 - drr(slab_volume(20), spacing)[0, 0],
                               np.exp(-MU_WATER_PER_MM * 10.0) ** 2)


@pytest.mark.parametrize("bits", [8, 16])
def test_png_levels_round_trip(tmp_path, bits):
    image = drr(slab_volume(10), (1.0, 1.0, 1.0))
    image[0, 0] = 0.9  # a second grey level
    path = write_png(tmp_path / "a.png", to_png_levels(image, bits))
    raw = np.asarray(Image.open(path))
    assert raw.dtype == (np.uint8 if bits == 8 else np.uint16)
    top = 2 ** bits - 1
    assert raw[1, 0] == round((1 - np.exp(-MU_WATER_PER_MM * 10.0)) * top)
    got = read_radiograph(path)  # min-max per image, no clipping (Sec. 2.1)
    np.testing.assert_allclose(got, (raw - raw.min()) / (raw.max() - raw.min()), rtol=1e-6)
    assert got.min() == 0.0 and got.max() == 1.0


def test_rgb_and_odd_range_and_constant_are_refused(tmp_path):
    grey = np.tile(np.arange(16, dtype=np.uint8)[None] * 10, (8, 1))
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "grey_rgb.png")
    np.testing.assert_allclose(read_radiograph(tmp_path / "grey_rgb.png"), grey / 150.0, rtol=1e-6)
    colour = np.stack([grey, grey[:, ::-1], grey], -1)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(ValueError, match=r"colour.png.*colour image \(mode 'RGB'"):
        read_radiograph(tmp_path / "colour.png")
    Image.fromarray(np.array([[-5, 3], [7, 9]], np.int32)).save(tmp_path / "signed.tif")
    with pytest.raises(ValueError, match=r"signed.tif.*values in \[-5, 9\].*\[0, 65535\]"):
        read_radiograph(tmp_path / "signed.tif")
    Image.fromarray(np.full((4, 4), 7, np.uint8)).save(tmp_path / "flat.png")
    with pytest.raises(ValueError, match="flat.png.*constant"):
        read_radiograph(tmp_path / "flat.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_radiograph(tmp_path / "missing.png")


def test_chestxray14_layout_and_crop_files(tmp_path):
    summary = make_xray_phantoms(tmp_path / "cxr", n=3, shape=(64, 64, 32), bits=16, progress=False)
    assert summary["n_images"] == 3
    rows = read_data_entry(tmp_path / "cxr")
    assert [r["Image Index"] for r in rows] == ["00000001_000.png", "00000002_000.png",
                                                "00000003_000.png"]
    split = patient_subsets(rows, 3, seed=0)
    assert sorted(sum(split.values(), [])) == [r["Image Index"] for r in rows]
    out = prepare_xray_crops(tmp_path / "cxr", tmp_path / "crops", n_subsets=3, scale=4,
                             crop_shape=(32, 32), image_size=(64, 64), progress=False)
    assert out["n_crops"] == {"0": 4, "1": 4, "2": 4}
    path = out["files"]["0"]
    assert path.endswith("bat_4_s_32x32x1_0.npy")
    crops = open_slices(path)
    assert crops.shape == (4, 32, 32) and 0.0 <= crops.min() and crops.max() <= 1.0
    again = prepare_xray_crops(tmp_path / "cxr", tmp_path / "crops2", n_subsets=3, scale=4,
                               crop_shape=(32, 32), image_size=(64, 64), progress=False)
    np.testing.assert_array_equal(open_slices(again["files"]["0"]), crops)  # seeded
    with pytest.raises(FileExistsError, match="bat_4_s_32x32x1_0.npy"):
        prepare_xray_crops(tmp_path / "cxr", tmp_path / "crops", n_subsets=3, scale=4,
                           crop_shape=(32, 32), image_size=(64, 64), progress=False)
    ds = RestorationDataset([path], 2, dims=2, seed=1)
    x, y = ds[0]
    assert x.shape == y.shape == (2, 32, 32, 1)
    sums = np.round(crops.reshape(4, -1).sum(1), 2)  # flips keep a crop's sum
    assert all(np.round(s, 2) in sums for s in y[..., 0].reshape(2, -1).sum(1))


def test_missing_layout_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="Data_Entry_2017.csv"):
        read_data_entry(tmp_path)
