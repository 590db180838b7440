"""Tests for models_genesis.data.io.volumes: formats, geometry, resampling, intensities, CSVs."""

import os

import numpy as np
import pytest
import SimpleITK as sitk

from models_genesis.data.io.intensity import normalize_intensity
from models_genesis.data.io.volumes import (Volume, index_volumes, read_volume, resample_volume, write_volume)

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


def test_index_volumes_finds_the_scans_by_seriesuid(tmp_path):
    for uid in ("1.2.3", "1.2.4"):
        write_volume(np.zeros((2, 2, 2), np.int16), tmp_path / "subset0" / f"{uid}.mhd")
    index = index_volumes(tmp_path)
    assert sorted(index) == ["1.2.3", "1.2.4"]
    assert index["1.2.3"].endswith("1.2.3.mhd")
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


# --- orientation (SimpleITK's DICOMOrient) and SimpleITK resampling ------------------------------

# Oblique and not LPS: x points Right, y Anterior (a RAS NIfTI), tilted by ROTATION.
RAS_OBLIQUE = tuple((np.diag([-1.0, -1.0, 1.0]) @ np.reshape(ROTATION, (3, 3))).reshape(-1))


def test_identity_direction_reads_bit_identical(tmp_path, rng):
    from models_genesis.data.io.volumes import orientation_of, reorient_volume

    hu = rng.integers(-1000, 1000, (9, 7, 5)).astype(np.int16)
    path = write_volume(hu, tmp_path / "scan.mhd", spacing=SPACING, origin=ORIGIN)
    volume = read_volume(path)
    assert orientation_of(volume.direction) == "LPS" and volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, hu)
    assert reorient_volume(volume) is volume  # nothing to do: no copy


def test_reorient_keeps_world_positions_and_goes_back_exactly(tmp_path, rng):
    from models_genesis.data.io.volumes import orientation_of, reorient_volume, to_geometry_of

    array = rng.random((9, 7, 5)).astype(np.float32)
    path = write_volume(array, tmp_path / "ras.nii.gz", spacing=SPACING, origin=ORIGIN,
                        direction=RAS_OBLIQUE)
    stored = read_volume(path, orientation=None)
    assert orientation_of(stored.direction) == "RAS"
    volume = read_volume(path)
    assert orientation_of(volume.direction) == "LPS" and volume.shape == (9, 7, 5)
    np.testing.assert_array_equal(volume.array, array[::-1, ::-1, :])  # x and y flipped
    # The same voxel value sits at the same world position in both.
    ijk = np.array([2, 5, 3])
    moved = np.rint(volume.world_to_voxel(stored.voxel_to_world(ijk))).astype(int)
    assert volume.array[tuple(moved)] == array[tuple(ijk)]
    back = to_geometry_of(volume, stored)
    np.testing.assert_array_equal(back.array, array)
    assert back.spacing == stored.spacing and back.origin == stored.origin
    assert back.direction == stored.direction
    with pytest.raises(ValueError, match="reoriented grid"):
        to_geometry_of(resample_volume(volume, 2.0), stored)
    # A permutation too: stored axes 0, 1, 2 point along the patient's y, z, x.
    perm = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    swapped = reorient_volume(Volume(array, SPACING, ORIGIN, perm))
    assert swapped.shape == (5, 9, 7) and swapped.spacing == (SPACING[2], SPACING[0], SPACING[1])
    np.testing.assert_array_equal(swapped.array, array.transpose(2, 0, 1))


def test_resample_matches_linear_interpolation_and_keeps_direction(rng):
    from scipy import ndimage

    array = rng.normal(size=(8, 7, 6)).astype(np.float32)
    volume = Volume(array, (0.7, 0.8, 2.5), ORIGIN, ROTATION)
    out = resample_volume(volume, 1.0)
    # The affine map of voxel indices, edge values beyond the last voxel centre.
    ref = ndimage.affine_transform(array, np.array([1.0, 1.0, 1.0]) / (0.7, 0.8, 2.5),
                                   output_shape=out.shape, order=1, mode="nearest")
    np.testing.assert_allclose(out.array, ref, atol=1e-5)
    assert out.direction == volume.direction and out.origin == volume.origin
    assert out.shape == (6, 6, 15) and out.array.dtype == np.float32


def test_resample_mask_per_label_strictly_above_half():
    from models_genesis.data.io.volumes import resample_mask

    labels = np.zeros((4, 4, 4), np.uint8)
    labels[:, :, 1] = 2  # one slice of label 2
    labels[:2, :, 3] = 1  # and label 1 in the last slice
    out = resample_mask(Volume(labels, (1.0, 1.0, 2.0)), (1.0, 1.0, 1.0))
    assert out.shape == (4, 4, 8) and out.array.dtype == np.uint8
    # New slice 2 is old slice 1; new slices 1 and 3 are exact ties (0.5): background, where a
    # >= 0.5 threshold would have made the one-slice mask three slices thick.
    assert [int(v) for v in out.array[0, 0, :]] == [0, 0, 2, 0, 0, 0, 1, 1]
    assert (out.array[2:, :, 6:] == 0).all() and set(np.unique(out.array)) == {0, 1, 2}


def test_resample_mask_by_bounding_box_equals_the_whole_volume(rng):
    from models_genesis.data.io.volumes import (_resample_image, _resampled_shape, _volume_to_image,
                                             resample_mask)

    for trial in range(6):
        shape = tuple(int(v) for v in rng.integers(5, 16, 3))
        labels = np.zeros(shape, np.uint8)
        for label in (1, 2):  # boxes, some touching the border
            lo = rng.integers(0, np.array(shape) - 1)
            hi = lo + rng.integers(1, 6, 3)
            labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = label
        direction = (0, 1, 0, -1, 0, 0, 0, 0, 1) if trial % 2 else ROTATION
        volume = Volume(labels, tuple(rng.uniform(0.5, 3, 3)), ORIGIN, direction)
        spacing = tuple(rng.uniform(0.5, 3, 3))
        new, out_shape = _resampled_shape(volume, spacing)
        whole = np.zeros(out_shape, np.uint8)
        for label in (1, 2):
            indicator = Volume((labels == label).astype(np.float32), volume.spacing, ORIGIN,
                               direction)
            image = _resample_image(_volume_to_image(indicator), new, out_shape,
                                    sitk.sitkLinear, sitk.sitkFloat32)
            whole[sitk.GetArrayFromImage(image).transpose(2, 1, 0) > 0.5] = label
        np.testing.assert_array_equal(resample_mask(volume, spacing).array, whole)
