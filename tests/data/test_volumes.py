"""Tests for models_genesis.data.io.volumes: formats, geometry, resampling, intensities, CSVs."""

import os

import numpy as np
import pytest
import SimpleITK as sitk

from models_genesis.data.io.intensity import normalize_intensity
from models_genesis.data.io.volumes import (Volume, index_volumes, match_csv_to_volumes, read_volume, resample_volume, write_volume)

# A proper rotation (about z by 30 degrees, then about x by 10 degrees), row-major.
_RZ = np.array([[np.cos(0.52), -np.sin(0.52), 0], [np.sin(0.52), np.cos(0.52), 0], [0, 0, 1]])
_RX = np.array([[1, 0, 0], [0, np.cos(0.17), -np.sin(0.17)], [0, np.sin(0.17), np.cos(0.17)]])
ROTATION = tuple((_RX @ _RZ).reshape(-1))
SPACING, ORIGIN = (0.7, 0.8, 2.5), (-120.5, 33.0, -310.25)


def _sitk_image(array_zyx):
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(ROTATION)
    return image


def test_world_voxel_round_trip_with_direction(rng):
    vol = Volume(np.zeros((5, 6, 7)), SPACING, ORIGIN, ROTATION)
    ijk = rng.uniform(-3, 10, size=(20, 3))
    world = vol.voxel_to_world(ijk)
    np.testing.assert_allclose(vol.world_to_voxel(world), ijk, atol=1e-9)
    # One voxel step along x moves spacing[0] mm along the first column of the direction.
    step = vol.voxel_to_world([1.0, 0, 0]) - vol.voxel_to_world([0.0, 0, 0])
    np.testing.assert_allclose(step, np.asarray(ROTATION).reshape(3, 3)[:, 0] * SPACING[0])
    assert vol.voxel_to_world(ijk[0]).shape == (3,)


@pytest.mark.parametrize("ext", [".mhd", ".mha", ".nii", ".nii.gz", ".nrrd"])
def test_every_format_reads_back_with_geometry(tmp_path, rng, ext):
    array = rng.integers(-1000, 1000, size=(6, 5, 4)).astype(np.int16)  # (z, y, x)
    image = _sitk_image(array)
    path = str(tmp_path / f"scan{ext}")
    sitk.WriteImage(image, path)
    vol = read_volume(path)
    assert vol.shape == (4, 5, 6)
    np.testing.assert_array_equal(vol.array, array.transpose(2, 1, 0))
    np.testing.assert_allclose(vol.spacing, SPACING, rtol=1e-5)
    for ijk in [(0, 0, 0), (3, 1, 5), (1.5, 2.25, 0.5)]:
        expected = image.TransformContinuousIndexToPhysicalPoint(ijk)
        np.testing.assert_allclose(vol.voxel_to_world(ijk), expected, atol=1e-3)
        np.testing.assert_allclose(vol.world_to_voxel(expected), ijk, atol=1e-4)


def test_dicom_series_folder(tmp_path, rng):
    array = rng.integers(-1000, 1000, size=(4, 8, 6)).astype(np.int16)
    folder = tmp_path / "dicom"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        sl = sitk.GetImageFromArray(array[k:k + 1])[:, :, 0]
        sl.SetSpacing((0.7, 0.8))
        for tag, value in [("0008|0060", "CT"), ("0020|000d", "1.2.3"), ("0020|000e", "1.2.3.4"),
                           ("0020|0013", str(k + 1)), ("0020|0032", f"-10\\20\\{-50 + 2.5 * k}"),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0028|1052", "0"),
                           ("0028|1053", "1")]:
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(sl)
    vol = read_volume(folder)
    np.testing.assert_array_equal(vol.array, array.transpose(2, 1, 0))
    np.testing.assert_allclose(vol.spacing, (0.7, 0.8, 2.5), rtol=1e-4)
    np.testing.assert_allclose(vol.origin, (-10, 20, -50), atol=1e-4)


def test_write_volume_mhd_is_atomic_and_consistent(tmp_path, rng):
    array = rng.integers(-1000, 1000, size=(7, 6, 5)).astype(np.int16)
    path = tmp_path / "out" / "a.b.mhd"
    write_volume(Volume(array, SPACING, ORIGIN, ROTATION), path)
    assert sorted(os.listdir(tmp_path / "out")) == ["a.b.mhd", "a.b.raw"]
    assert "ElementDataFile = a.b.raw" in path.read_text(encoding="utf-8")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, array)
    np.testing.assert_allclose(back.direction, ROTATION, atol=1e-6)
    # `like=` copies geometry; bool is written as uint8; compression writes a .zraw.
    write_volume(array > 0, tmp_path / "m.mhd", like=back, compress=True)
    mask = read_volume(tmp_path / "m.mhd")
    assert mask.array.dtype == np.uint8 and mask.origin == back.origin
    assert os.path.exists(tmp_path / "m.zraw")


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_volume(tmp_path / "nope.mhd")
    sitk.WriteImage(_sitk_image(np.zeros((6, 5, 4), np.int16)), str(tmp_path / "t.mhd"))
    raw = (tmp_path / "t.raw").read_bytes()
    (tmp_path / "t.raw").write_bytes(raw[:50])
    with pytest.raises(ValueError, match="truncated: 50 bytes, the header needs 240"):
        read_volume(tmp_path / "t.mhd")
    os.remove(tmp_path / "t.raw")
    with pytest.raises(FileNotFoundError, match="t.raw"):
        read_volume(tmp_path / "t.mhd")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 4), np.int16)), str(tmp_path / "flat.nii"))
    with pytest.raises(ValueError, match="must be a 3D scalar image"):
        read_volume(tmp_path / "flat.nii")
    nan = np.zeros((3, 4, 5), np.float32)
    nan[1, 2, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(tmp_path / "nan.nrrd"))
    with pytest.raises(ValueError, match="1 NaN"):
        read_volume(tmp_path / "nan.nrrd")
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="Cannot read volume"):
        read_volume(tmp_path / "junk.nii.gz")


def test_resample_spacing_shape_and_values():
    x = np.arange(40, dtype=np.float32)[:, None, None] * 0.5  # world x (mm) of each voxel
    vol = Volume(np.broadcast_to(x, (40, 30, 10)).copy(), (0.5, 0.5, 2.0), (3.0, 4.0, 5.0))
    out = resample_volume(vol, 1.0)
    assert out.shape == (20, 15, 20) and out.spacing == (1.0, 1.0, 1.0)
    assert out.origin == vol.origin and out.array.dtype == np.float32
    # Linear interpolation of a linear ramp is exact: voxel i sits at i * 1 mm.
    np.testing.assert_allclose(out.array[:, 0, 0], np.arange(20.0), atol=1e-5)
    labels = resample_volume(Volume((vol.array > 5).astype(np.uint8), vol.spacing), (1, 1, 1),
                             order=0)
    assert labels.array.dtype == np.uint8 and set(np.unique(labels.array)) == {0, 1}
    with pytest.raises(ValueError, match="spacing"):
        resample_volume(vol, (1.0, 0.0, 1.0))


def test_normalize_intensity_ranges():
    hu = np.array([-3000, -1000, 0, 500, 1000, 3000], np.int16)
    np.testing.assert_allclose(normalize_intensity(hu), [0, 0, 0.5, 0.75, 1, 1])
    # "mri" is the BMS rule, per-patient min-max (the same as "minmax"); the release's MRI
    # pre-training advice, clip [0, 4000], is an explicit window.
    np.testing.assert_allclose(normalize_intensity([100, 300, 500], "mri"), [0, 0.5, 1])
    np.testing.assert_allclose(normalize_intensity([-5, 0, 2000, 4000, 9000], (0, 4000)),
                               [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(normalize_intensity([0, 5, 10], (0, 20)), [0, 0.25, 0.5])
    np.testing.assert_allclose(normalize_intensity([2.0, 4.0, 6.0], "minmax"), [0, 0.5, 1])
    assert normalize_intensity(np.full(4, 7.0), "minmax").tolist() == [0, 0, 0, 0]
    assert normalize_intensity(hu).dtype == np.float32
    with pytest.raises(ValueError, match="NaN"):
        normalize_intensity([0.0, np.nan])
    with pytest.raises(ValueError, match="modality"):
        normalize_intensity(hu, "pet")
    with pytest.raises(ValueError, match="lo < hi"):
        normalize_intensity(hu, (5, 5))


def test_csv_rows_without_volume_are_counted(tmp_path):
    for uid in ("1.2.3", "1.2.4"):
        write_volume(np.zeros((2, 2, 2), np.int16), tmp_path / "subset0" / f"{uid}.mhd")
    index = index_volumes(tmp_path)
    assert sorted(index) == ["1.2.3", "1.2.4"]
    (tmp_path / "a.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n"
                                    "1.2.3,1,2,3,4\n9.9,1,2,3,4\n9.9,0,0,0,5\n1.2.4,0,0,0,6\n")
    table, report = match_csv_to_volumes(tmp_path / "a.csv", index)
    assert list(table["seriesuid"]) == ["1.2.3", "1.2.4"]
    assert table["path"][0] == index["1.2.3"]
    assert report["skipped"] == {"no volume for seriesuid": 2}
    assert report["missing_seriesuids"] == ["9.9"]
    (tmp_path / "b.csv").write_text("seriesuid,x\n1.2.3,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing"):
        match_csv_to_volumes(tmp_path / "b.csv", index)
    with pytest.raises(FileNotFoundError):
        index_volumes(tmp_path, pattern="subset9/*.mhd")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mha", ".nrrd", ".mhd"])
@pytest.mark.parametrize("compress", [False, True])
def test_a_truncated_volume_is_refused_in_every_format(tmp_path, suffix, compress):
    """SimpleITK reads a truncated file as a volume with zeros (or garbage) where data is missing;
    `read_volume` checks the voxel count against the header (compressed data inflated to its
    end) and names the file."""
    hu = np.random.default_rng(0).integers(-1000, 400, (12, 10, 6)).astype(np.int16)
    path = str(tmp_path / f"scan{suffix}")
    sitk.WriteImage(sitk.GetImageFromArray(hu.transpose(2, 1, 0)), path, compress)
    np.testing.assert_array_equal(read_volume(path).array, hu)  # complete: read as written
    data_file = path[:-4] + (".zraw" if compress else ".raw") if suffix == ".mhd" else path
    data = open(data_file, "rb").read()
    with open(data_file, "wb") as f:
        f.write(data[:len(data) - max(len(data) // 4, 20)])
    with pytest.raises(ValueError, match="truncated") as info:
        read_volume(path)
    assert os.path.basename(data_file) in str(info.value) or os.path.basename(path) in str(
        info.value)
