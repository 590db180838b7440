"""DICOM series: one CT scan from a folder of slices, checked, with each slice's identity.

The Cancer Imaging Archive ships a scan as one folder of single-slice files (LIDC-IDRI:
`LIDC-IDRI-NNNN/<study UID>/<series UID>/*.dcm`). SimpleITK (GDCM) groups the files of a folder
by SeriesInstanceUID, sorts them along the slice normal and applies RescaleSlope/Intercept, so
the array is in Hounsfield units. On top of that this module:

- picks the series of the wanted modality (CT) when a folder holds several, and refuses two;
- refuses a series with two slices at one position or slices out of order, and resamples a
  series whose slices are not evenly spaced (a missing slice, a change of slice spacing) onto
  an even grid at the median slice gap (linear interpolation between the two nearest slices
  along the normal), with a note saying so (`DicomSeries.note`), instead of reading it with a
  wrong z spacing;
- returns each slice's SOPInstanceUID and position, so annotations that name slices (the LIDC
  XML's `imageSOP_UID`, `imageZposition`) can be matched to the volume's z index.

Arrays are in (x, y, z) order like `models_genesis.data.io.volumes.read_volume` (x = DICOM column,
y = row, z = slice index along the normal).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from models_genesis.data.io.volumes import Volume

TAGS = {"modality": "0008|0060", "sop_uid": "0008|0018", "series_uid": "0020|000e",
        "study_uid": "0020|000d", "position": "0020|0032", "orientation": "0020|0037",
        "patient_id": "0010|0020"}
SPACING_TOLERANCE = 0.1  # a slice gap may differ from the median gap by 10 %


@dataclass(frozen=True, eq=False)
class DicomSeries:
    """A CT series read from one folder.

    Attributes:
        volume: the image, `(x, y, z)` in HU, with spacing, origin and direction.
        folder: the folder the files came from.
        series_uid, study_uid, patient_id, modality: from the DICOM header.
        sop_uids: SOPInstanceUID of slice k, `(Z,)`.
        z_positions: ImagePositionPatient z (mm) of slice k, `(Z,)` (what the LIDC XML's
            `imageZposition` holds).
        files: the file of slice k.
        z_index: the volume's z index of slice k: k itself, or, on a resampled series, the
            index of the even grid's slice nearest to it.
        note: why and how the series was resampled onto an even grid; "" when it was not.
    """

    volume: Volume
    folder: str
    series_uid: str
    study_uid: str
    patient_id: str
    modality: str
    sop_uids: Tuple[str, ...]
    z_positions: np.ndarray
    files: Tuple[str, ...]
    z_index: Tuple[int, ...] = ()
    note: str = ""

    def slice_index(self) -> Dict[str, int]:
        """SOPInstanceUID -> z index of the volume."""
        return {uid: self.grid_index(k) for k, uid in enumerate(self.sop_uids)}

    def grid_index(self, k: int) -> int:
        """The volume's z index of slice `k` of the files."""
        return int(self.z_index[k]) if self.z_index else int(k)


def read_header(path: str) -> Dict[str, str]:
    """The header fields of `TAGS` of one DICOM file ("" when absent)."""
    # SimpleITK (0.5 s) on first use: data.target_tasks.lidc_consensus and the prepare CLI import this module.
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ValueError(f"Cannot read DICOM header of {path!r}: "
                         f"{' '.join(str(exc).split())[-200:]}") from exc
    return {name: reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""
            for name, tag in TAGS.items()}


def list_series(folder) -> Dict[str, Tuple[str, List[str]]]:
    """Map each SeriesInstanceUID in `folder` (not its sub-folders) to `(modality, files)`."""
    # SimpleITK (0.5 s) on first use: data.target_tasks.lidc_consensus and the prepare CLI import this module.
    import SimpleITK as sitk

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"DICOM folder not found: {folder!r}.")
    out = {}
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
        out[uid] = (read_header(files[0])["modality"].upper(), files)
    return out


def _floats(text: str, n: int, what: str, path: str) -> np.ndarray:
    try:
        values = np.asarray([float(v) for v in text.split("\\")], dtype=float)
    except ValueError:
        values = np.zeros(0)
    if values.shape != (n,) or not np.all(np.isfinite(values)):
        raise ValueError(f"DICOM file {path!r}: {what} must be {n} numbers. Received: {text!r}.")
    return values


def check_slice_positions(positions: np.ndarray, normal: np.ndarray, folder: str,
                          files: List[str]) -> Tuple[float, np.ndarray]:
    """The median slice gap (mm) and each slice's distance from the first along the normal.

    Args:
        positions: ImagePositionPatient of each file in reading order, `(Z, 3)` mm.
        normal: unit slice normal (row x column direction cosines).
        folder, files: for the error message.

    Returns:
        `(gap, offsets)`: the median gap, and `(Z,)` distances (mm, increasing from 0).

    Raises:
        ValueError: two slices at one position, or slices not ordered along the normal.
    """
    if len(positions) < 2:
        return 1.0, np.zeros(len(positions))
    d = positions @ normal
    gaps = np.diff(d)
    if np.any(np.abs(gaps) < 1e-3):
        k = int(np.argmax(np.abs(gaps) < 1e-3))
        raise ValueError(f"DICOM series in {folder!r} has two slices at the same position "
                         f"{d[k]:.3f} mm ({os.path.basename(files[k])}, "
                         f"{os.path.basename(files[k + 1])}); expected one slice per position.")
    if np.any(gaps < 0) and np.any(gaps > 0):
        raise ValueError(f"DICOM series in {folder!r}: slices are not ordered along the normal.")
    return float(np.median(np.abs(gaps))), np.abs(d - d[0])


def uneven_gaps(offsets: np.ndarray, gap: float, files: List[str]) -> str:
    """"" when the slices are evenly spaced (every gap within `SPACING_TOLERANCE` of the
    median), else a description of the gaps that are not."""
    gaps = np.diff(offsets)
    bad = np.flatnonzero(np.abs(gaps - gap) > SPACING_TOLERANCE * gap)
    if not bad.size:
        return ""
    where = ", ".join(f"{gaps[k]:.3f} mm after {os.path.basename(files[k])}" for k in bad[:3])
    return f"the slice gap is {gap:.3f} mm but {bad.size} gap(s) differ (a missing slice?): {where}"


def resample_slices(array: np.ndarray, offsets: np.ndarray, gap: float):
    """Linearly interpolate slices at `offsets` (mm along the normal) onto an even grid.

    Returns:
        `(array, z_index)`: the `(X, Y, Z')` array with `Z' = round(offsets[-1] / gap) + 1`
        slices `gap` apart from the first one (integers are rounded back to their dtype), and
        the grid index nearest to each original slice.
    """
    n = int(round(offsets[-1] / gap)) + 1
    grid = np.arange(n) * gap
    upper = np.clip(np.searchsorted(offsets, grid, side="right"), 1, len(offsets) - 1)
    lower = upper - 1
    weight = np.clip((grid - offsets[lower]) / (offsets[upper] - offsets[lower]), 0.0, 1.0)
    weight = weight.astype(np.float32)
    out = array[:, :, lower] * (1 - weight) + array[:, :, upper] * weight
    if np.issubdtype(array.dtype, np.integer):
        out = np.rint(out).astype(array.dtype)
    return out, np.rint(offsets / gap).astype(int)


def read_dicom_series(folder, *, modality: str = "CT",
                      series_uid: Optional[str] = None) -> DicomSeries:
    """Read one series of `modality` from a folder of DICOM slices and check its geometry.

    Args:
        folder: a folder of `.dcm` files (sub-folders are not searched).
        modality: DICOM Modality (0008,0060) to pick when the folder holds several series (a
            LIDC-IDRI study may hold a DX/CR radiograph beside the CT). None accepts any.
        series_uid: read this SeriesInstanceUID instead of choosing by modality.

    Returns:
        `DicomSeries` with the volume in HU and each slice's SOPInstanceUID and z position.

    Raises:
        FileNotFoundError: the folder is missing or holds no DICOM series.
        ValueError: no series or several series of `modality`; unreadable files; two slices
            at one position or slices out of order. Unevenly spaced slices are resampled.
    """
    # SimpleITK (0.5 s) on first use: data.target_tasks.lidc_consensus and the prepare CLI import this module.
    import SimpleITK as sitk

    folder = os.fspath(folder)
    series = list_series(folder)
    if not series:
        raise FileNotFoundError(f"No DICOM series in folder {folder!r}.")
    uid = _choose_series(series, folder, modality, series_uid)
    files = series[uid][1]
    image, reader = _read_series(files, folder)
    # Each slice's position along the normal, then its SOPInstanceUID, checked.
    positions, dz, offsets = _slice_positions(reader, files, folder)
    sop_uids = tuple(_slice_tag(reader, k, "sop_uid") for k in range(len(files)))
    if len(set(sop_uids)) != len(files) or "" in sop_uids:
        raise ValueError(f"DICOM series in {folder!r}: every slice needs its own SOPInstanceUID "
                         f"(0008,0018).")
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))
    array, z_index, note = _on_even_grid(array, offsets, dz, files, folder)
    spacing = image.GetSpacing()[:2] + (dz,)
    volume = Volume(array, spacing, image.GetOrigin(), image.GetDirection(), folder)
    return DicomSeries(volume=volume, folder=folder, series_uid=uid,
                       study_uid=_slice_tag(reader, 0, "study_uid"),
                       patient_id=_slice_tag(reader, 0, "patient_id"),
                       modality=_slice_tag(reader, 0, "modality").upper(), sop_uids=sop_uids,
                       z_positions=positions[:, 2].copy(), files=tuple(files), z_index=z_index,
                       note=note)


def _choose_series(series: Dict[str, Tuple[str, List[str]]], folder: str,
                   modality: Optional[str], series_uid: Optional[str]) -> str:
    """The SeriesInstanceUID to read: `series_uid`, or the one series of `modality`."""
    if series_uid is not None:
        if series_uid not in series:
            raise ValueError(f"`series_uid` must be one of {sorted(series)} in {folder!r}. "
                             f"Received: series_uid={series_uid!r}.")
        return series_uid
    chosen = [uid for uid, (mod, _) in series.items()
              if modality is None or mod == modality.upper()]
    if len(chosen) != 1:
        found = {uid: mod or "?" for uid, (mod, _) in series.items()}
        raise ValueError(f"Folder {folder!r} must hold exactly one {modality} series; it holds "
                         f"{len(chosen)} (series -> modality: {found}).")
    return chosen[0]


def _read_series(files: List[str], folder: str):
    """`(image, reader)`: the series' SimpleITK image (in HU) and the reader holding each
    slice's header."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ValueError(f"Cannot read the DICOM series in {folder!r}: "
                         f"{' '.join(str(exc).split())[-300:]}") from exc
    return image, reader


def _slice_tag(reader, k: int, name: str) -> str:
    """The header field `name` of `TAGS` of slice `k` read by `reader` ("" when absent)."""
    tag = TAGS[name]
    return reader.GetMetaData(k, tag).strip() if reader.HasMetaDataKey(k, tag) else ""


def _slice_positions(reader, files: List[str], folder: str):
    """`(positions, gap, offsets)`: ImagePositionPatient of each slice `(Z, 3)` mm, and the
    median gap and offsets along the slice normal (see `check_slice_positions`)."""
    positions = np.stack([_floats(_slice_tag(reader, k, "position"), 3,
                                  "ImagePositionPatient (0020,0032)", files[k])
                          for k in range(len(files))])
    cosines = _floats(_slice_tag(reader, 0, "orientation"), 6,
                      "ImageOrientationPatient (0020,0037)", files[0])
    normal = np.cross(cosines[:3], cosines[3:])
    gap, offsets = check_slice_positions(positions, normal / np.linalg.norm(normal), folder, files)
    return positions, gap, offsets


def _on_even_grid(array: np.ndarray, offsets: np.ndarray, gap: float, files: List[str],
                  folder: str):
    """`(array, z_index, note)`: the array as read when its slices are evenly spaced (`z_index`
    empty, `note` ""), else resampled onto an even grid `gap` apart (see `resample_slices`)
    with each slice's grid index and a note saying why."""
    uneven = uneven_gaps(offsets, gap, files)
    if not uneven:
        return array, (), ""
    resampled, z_index = resample_slices(array, offsets, gap)
    note = (f"DICOM series in {folder}: {uneven}; resampled from {len(files)} slices onto an "
            f"even grid of {resampled.shape[2]} slices {gap:.3f} mm apart (linear along the "
            f"normal)")
    return resampled, tuple(int(k) for k in z_index), note
