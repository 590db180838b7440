"""LIDC-IDRI as downloaded: DICOM series + reading XML -> consensus nodule masks, by hand."""

import os

import numpy as np
import pytest

from models_genesis.data.io.dicom import read_dicom_series
from models_genesis.data.target_tasks.lidc_consensus import find_lidc_scans, read_lidc_scan, reader_mask
from models_genesis.data.io.lidc_xml import read_lidc_xml
from models_genesis.data.phantoms.lidc import slice_uid, write_dicom_series, write_lidc_xml

SERIES, STUDY, PATIENT = "1.2.826.0.1.99.7", "1.2.826.0.1.99", "LIDC-IDRI-0007"
SPACING, ORIGIN = (0.7, 0.7, 2.5), (-10.0, -20.0, -100.0)
SHAPE = (32, 32, 12)


def ring(x0, y0, x1, y1):
    """The pixels of the rectangle [x0, x1] x [y0, y1]'s border, in order round it (x, y)."""
    top = [(x, y0) for x in range(x0, x1 + 1)]
    right = [(x1, y) for y in range(y0 + 1, y1 + 1)]
    bottom = [(x, y1) for x in range(x1 - 1, x0 - 1, -1)]
    left = [(x0, y) for y in range(y1 - 1, y0, -1)]
    return top + right + bottom + left


def z_of(k):
    return ORIGIN[2] + k * SPACING[2]


def roi(k, box, *, inclusion=True, by=("uid", "z")):
    out = {"points": ring(*box), "inclusion": inclusion}
    if "uid" in by:
        out["sop_uid"] = slice_uid(SERIES, k)
    if "z" in by:
        out["z"] = z_of(k)
    return out


# Nodule A: readers R1, R2, R3 (R4 missed it); R1 cuts a hole on slice 5. Nodule B: R3, R4 on
# slice 9. Nodule C: R2 alone on slice 2. R1 also leaves a point mark (a nodule < 3 mm).
READERS = [
    [{"id": "A1", "rois": [roi(4, (8, 8, 16, 16)), roi(5, (8, 8, 16, 16)),
                           roi(5, (11, 11, 13, 13), inclusion=False), roi(6, (8, 8, 16, 16))]},
     {"id": "small", "rois": [{"points": [(25, 5)], "sop_uid": slice_uid(SERIES, 3)}]}],
    [{"id": "A2", "rois": [roi(k, (10, 10, 18, 18), by=("z",)) for k in (5, 6, 7)]},
     {"id": "C", "rois": [roi(2, (2, 2, 6, 6))]}],
    [{"id": "A3", "rois": [roi(5, (8, 8, 16, 16), by=("uid",)), roi(6, (8, 8, 16, 16))]},
     {"id": "B3", "rois": [roi(9, (20, 20, 26, 26))]}],
    [{"id": "B4", "rois": [roi(9, (22, 22, 28, 28))]}],
]


def box(mask, k, x0, x1, y0=None, y1=None):
    y0, y1 = (x0, x1) if y0 is None else (y0, y1)
    mask[x0:x1 + 1, y0:y1 + 1, k] = True


def expected(level):
    """Hand-made consensus masks {name: bool (X, Y, Z)} for `consensus_level` 0.5 or 1.0."""
    a, b, c = (np.zeros(SHAPE, bool) for _ in range(3))
    if level == 0.5:  # A: >= 2 of its 3 readers; the hole of R1 is covered by R2 and R3
        box(a, 5, 9, 15)
        box(a, 6, 9, 15)
    else:  # A: all 3 readers
        box(a, 5, 11, 15)
        a[11:14, 11:14, 5] = False
        box(a, 6, 11, 15)
    box(b, 9, 21, 25)  # B: R3 alone (1 of 2 readers >= 50 %) ...
    box(b, 9, 23, 27)  # ... or R4 alone: the union
    if level == 1.0:
        b[:] = False
        box(b, 9, 23, 25)
    box(c, 2, 3, 5)  # C: its only reader
    return {"A": a, "B": b, "C": c}


def write_case(root, readers=READERS, omit=(), xml_name="069.xml"):
    hu = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 1500 - 1000).astype(np.int16)
    folder = os.path.join(root, PATIENT, STUDY, SERIES)
    write_dicom_series(folder, hu, SPACING, ORIGIN, series_uid=SERIES, study_uid=STUDY,
                       patient_id=PATIENT, omit_slices=omit)
    write_lidc_xml(os.path.join(folder, xml_name), series_uid=SERIES, study_uid=STUDY,
                   readers=readers)
    return folder, hu


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return write_case(str(tmp_path_factory.mktemp("lidc")))


def _by_name(scan):
    """Map the nodules to A/B/C by their centres and return {name: boolean mask}."""
    names = {"A": (12, 12), "B": (24, 24), "C": (4, 4)}
    out = {}
    for nod in scan.nodules:
        ijk = scan.image.world_to_voxel(nod["center_mm"])
        name = min(names, key=lambda n: np.hypot(*(np.asarray(names[n]) - ijk[:2])))
        out[name] = scan.labels.array == nod["label"]
    return out


def test_dicom_series_reads_hu_and_slice_identity(case):
    folder, hu = case
    series = read_dicom_series(folder)
    np.testing.assert_array_equal(series.volume.array, hu)
    np.testing.assert_allclose(series.volume.spacing, SPACING, atol=1e-4)
    np.testing.assert_allclose(series.volume.origin, ORIGIN, atol=1e-4)
    assert series.sop_uids == tuple(slice_uid(SERIES, k) for k in range(12))
    np.testing.assert_allclose(series.z_positions, [z_of(k) for k in range(12)], atol=1e-3)
    assert (series.series_uid, series.patient_id, series.modality) == (SERIES, PATIENT, "CT")


def test_xml_readers_outlines_and_point_marks(case):
    folder, _ = case
    reading = read_lidc_xml(os.path.join(folder, "069.xml"))
    assert reading.series_uid == SERIES and reading.readers == ("R1", "R2", "R3", "R4")
    assert [n.nodule_id for n in reading.nodules] == ["A1", "A2", "C", "A3", "B3", "B4"]
    assert reading.n_point_marks == 1
    first = reading.nodules[0].outlines
    assert [o.inclusion for o in first] == [True, True, False, True]
    np.testing.assert_array_equal(first[0].points[:3], [[8, 8], [9, 8], [10, 8]])


def test_reader_mask_fills_inside_outline_minus_hole(case):
    folder, _ = case
    series = read_dicom_series(folder)
    reading = read_lidc_xml(os.path.join(folder, "069.xml"))
    flat = reader_mask(reading.nodules[0], series, reading.path)
    mask = np.zeros(SHAPE, bool)
    mask.reshape(-1)[flat] = True
    want = np.zeros(SHAPE, bool)
    for k in (4, 5, 6):
        box(want, k, 9, 15)  # inside the outline, outline pixels excluded
    want[11:14, 11:14, 5] = False  # the inclusion=FALSE hole, its outline included
    np.testing.assert_array_equal(mask, want)
    with_outline = reader_mask(reading.nodules[1], series, reading.path, include_outline=True)
    assert with_outline.size == 3 * 81  # 9 x 9 per slice, matched by imageZposition alone


@pytest.mark.parametrize("level", [0.5, 1.0])
def test_consensus_masks_voxel_for_voxel(case, level):
    folder, _ = case
    scan = read_lidc_scan(folder, spacing=None, consensus_level=level)
    masks = _by_name(scan)
    want = expected(level)
    assert sorted(masks) == ["A", "B", "C"]
    for name in "ABC":
        np.testing.assert_array_equal(masks[name], want[name], err_msg=name)
    readers = {n["label"]: n["n_readers"] for n in scan.nodules}
    assert sorted(readers.values()) == [1, 2, 3]
    a = next(n for n in scan.nodules if n["n_readers"] == 3)
    assert a["readers"] == ["R1", "R2", "R3"]
    np.testing.assert_allclose(a["volume_mm3"], want["A"].sum() * np.prod(SPACING))
    centre = scan.image.voxel_to_world(np.argwhere(want["A"]).mean(axis=0))
    np.testing.assert_allclose(a["center_mm"], centre)
    assert scan.info["point_marks"] == 1 and scan.info["readers"] == 4


def test_min_readers_drops_single_reader_nodules(case):
    folder, _ = case
    scan = read_lidc_scan(folder, spacing=None, min_readers=2)
    assert sorted(n["n_readers"] for n in scan.nodules) == [2, 3]
    assert scan.info["groups_dropped"] == 1


def test_resampled_to_1mm(case):
    folder, _ = case
    scan = read_lidc_scan(folder)
    assert scan.image.spacing == (1.0, 1.0, 1.0) and scan.image.shape == (22, 22, 30)
    assert scan.labels.shape == scan.image.shape and scan.image.array.dtype == np.int16
    assert sorted(np.unique(scan.labels.array).tolist()) == [0, 1, 2, 3]
    native = read_lidc_scan(folder, spacing=None)
    for nod, ref in zip(scan.nodules, native.nodules):
        n_vox = int((scan.labels.array == nod["label"]).sum())  # 1 mm^3 voxels
        assert 0.6 * ref["volume_mm3"] < n_vox < 1.6 * ref["volume_mm3"]


def test_find_scans_ignores_radiographs(case, tmp_path):
    folder, _ = case
    root = os.path.dirname(os.path.dirname(os.path.dirname(folder)))
    dx = os.path.join(root, PATIENT, "1.2.3.9", "1.2.3.9.1")
    write_dicom_series(dx, np.zeros((8, 8, 1), np.int16), (0.2, 0.2, 1.0), (0, 0, 0),
                       series_uid="1.2.3.9.1", study_uid="1.2.3.9", patient_id=PATIENT,
                       modality="DX")
    scans = find_lidc_scans(root)
    assert list(scans) == [SERIES] and scans[SERIES]["patient_id"] == PATIENT


# --- bad input ---------------------------------------------------------------------------------

def test_missing_slice_is_resampled_onto_an_even_grid_with_a_note(tmp_path):
    folder, hu = write_case(str(tmp_path), omit=(6,))
    series = read_dicom_series(folder)
    assert series.volume.shape == hu.shape  # 11 files, 12 slices again
    np.testing.assert_allclose(series.volume.spacing, SPACING, atol=1e-4)
    keep = [k for k in range(12) if k != 6]
    np.testing.assert_array_equal(series.volume.array[:, :, keep], hu[:, :, keep])
    # The missing slice half-way between its neighbours, rounded back to integer HU.
    between = np.rint((hu[:, :, 5].astype(np.float32) + hu[:, :, 7]) / 2).astype(np.int16)
    np.testing.assert_array_equal(series.volume.array[:, :, 6], between)
    assert series.slice_index()[slice_uid(SERIES, 7)] == 7  # file 7 of 11 is slice 7 again
    assert folder in series.note and "resampled from 11 slices" in series.note
    assert read_dicom_series(write_case(str(tmp_path / "even"))[0]).note == ""


def test_two_slices_at_one_position_are_an_error_naming_the_folder(tmp_path):
    import SimpleITK as sitk

    folder, _ = write_case(str(tmp_path))
    name = os.path.join(folder, "000007.dcm")
    image = sitk.ReadImage(name)
    origin = image.GetOrigin()
    image.SetOrigin((origin[0], origin[1], z_of(5)))  # file 7 claims file 6's position
    image.SetMetaData("0020|0032", "\\".join(f"{v:.4f}" for v in image.GetOrigin()))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(name)
    writer.Execute(image)
    with pytest.raises(ValueError, match=r"two slices at the same position") as err:
        read_dicom_series(folder)
    assert folder in str(err.value)


def test_mixed_series_pick_ct_or_refuse_two(tmp_path):
    folder, hu = write_case(str(tmp_path))
    write_dicom_series(folder, np.zeros((32, 32, 1), np.int16), SPACING, ORIGIN,
                       series_uid="1.2.3.4.5", study_uid=STUDY, patient_id=PATIENT, modality="CR",
                       name_prefix="cr-")
    np.testing.assert_array_equal(read_dicom_series(folder).volume.array, hu)
    write_dicom_series(folder, hu[:, :, :3], SPACING, ORIGIN, series_uid="1.2.3.4.6",
                       study_uid=STUDY, patient_id=PATIENT, name_prefix="ct2-")
    with pytest.raises(ValueError, match="exactly one CT series"):
        read_dicom_series(folder)


def test_xml_slice_not_in_series(tmp_path):
    bad = {"id": "X", "rois": [{"points": ring(3, 3, 7, 7), "sop_uid": "9.9.9", "z": 500.0}]}
    folder, _ = write_case(str(tmp_path), readers=[READERS[0] + [bad]] + READERS[1:])
    xml = os.path.join(folder, "069.xml")
    with pytest.raises(ValueError, match=r"not in the series.*9\.9\.9") as err:
        read_lidc_scan(folder, spacing=None)
    assert xml in str(err.value)
    scan = read_lidc_scan(folder, spacing=None, errors="skip")
    assert len(scan.skipped) == 1 and "9.9.9" in scan.skipped[0]["reason"]
    assert len(scan.nodules) == 3


def test_bad_xml_files(tmp_path):
    folder, _ = write_case(str(tmp_path))
    xml = os.path.join(folder, "069.xml")
    text = open(xml, encoding="utf-8").read()
    with open(xml, "w", encoding="utf-8") as f:
        f.write(text.replace("<inclusion>FALSE", "<inclusion>MAYBE", 1))
    with pytest.raises(ValueError, match="inclusion.*MAYBE"):
        read_lidc_xml(xml)
    with open(xml, "w", encoding="utf-8") as f:
        f.write(text.replace("LidcReadMessage", "IdriReadMessage"))
    with pytest.raises(FileNotFoundError, match="No LIDC XML"):
        read_lidc_scan(folder)
    with pytest.raises(ValueError, match="LidcReadMessage"):
        read_lidc_xml(xml)


def test_reading_found_in_a_separate_xml_folder(tmp_path):
    folder, _ = write_case(str(tmp_path / "images"))
    xml_dir = tmp_path / "tcia-lidc-xml" / "185"
    xml_dir.mkdir(parents=True)
    os.replace(os.path.join(folder, "069.xml"), xml_dir / "069.xml")
    with pytest.raises(FileNotFoundError, match=f"No LIDC XML reading.*{SERIES}"):
        read_lidc_scan(folder, spacing=None)
    scan = read_lidc_scan(folder, spacing=None, xml_dirs=[tmp_path / "tcia-lidc-xml"])
    assert scan.xml_path == str(xml_dir / "069.xml") and len(scan.nodules) == 3
