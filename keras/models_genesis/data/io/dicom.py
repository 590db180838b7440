"""DICOM series: one CT scan from a folder of slices, checked, with each slice's identity.

The Cancer Imaging Archive ships a scan as one folder of single-slice files (LIDC-IDRI:
`LIDC-IDRI-NNNN/<study UID>/<series UID>/*.dcm`). SimpleITK (GDCM) groups the files of a folder
by SeriesInstanceUID, sorts them along the slice normal and applies RescaleSlope/Intercept, so
the array is in Hounsfield units. On top of that this module:

- picks the series of the wanted modality (CT) when a folder holds several, and refuses two;
- refuses a series whose slice positions are not evenly spaced (a missing or duplicated slice)
  instead of reading it with a wrong z spacing;
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

    def slice_index(self) -> Dict[str, int]:
        """SOPInstanceUID -> z index."""
        return {uid: k for k, uid in enumerate(self.sop_uids)}


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
                          files: List[str]) -> float:
    """Return the slice spacing (mm); raise when slices are duplicated, unsorted or unevenly spaced.

    Args:
        positions: ImagePositionPatient of each file in reading order, `(Z, 3)` mm.
        normal: unit slice normal (row x column direction cosines).
        folder, files: for the error message.
    """
    if len(positions) < 2:
        return 1.0
    d = positions @ normal
    gaps = np.diff(d)
    if np.any(np.abs(gaps) < 1e-3):
        k = int(np.argmax(np.abs(gaps) < 1e-3))
        raise ValueError(f"DICOM series in {folder!r} has two slices at the same position "
                         f"{d[k]:.3f} mm ({os.path.basename(files[k])}, "
                         f"{os.path.basename(files[k + 1])}); expected one slice per position.")
    if np.any(gaps < 0) and np.any(gaps > 0):
        raise ValueError(f"DICOM series in {folder!r}: slices are not ordered along the normal.")
    gaps = np.abs(gaps)
    median = float(np.median(gaps))
    bad = np.flatnonzero(np.abs(gaps - median) > SPACING_TOLERANCE * median)
    if bad.size:
        where = ", ".join(f"{gaps[k]:.3f} mm after {os.path.basename(files[k])}" for k in bad[:3])
        raise ValueError(f"DICOM series in {folder!r} is not evenly spaced (a missing slice?): the "
                         f"slice gap is {median:.3f} mm but {bad.size} gap(s) differ: {where}.")
    return median


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
        ValueError: no series or several series of `modality`; unreadable files; slices missing,
            duplicated or unevenly spaced.
    """
    # SimpleITK (0.5 s) on first use: data.target_tasks.lidc_consensus and the prepare CLI import this module.
    import SimpleITK as sitk

    folder = os.fspath(folder)
    series = list_series(folder)
    if not series:
        raise FileNotFoundError(f"No DICOM series in folder {folder!r}.")
    if series_uid is not None:
        if series_uid not in series:
            raise ValueError(f"`series_uid` must be one of {sorted(series)} in {folder!r}. "
                             f"Received: series_uid={series_uid!r}.")
        chosen = [series_uid]
    else:
        chosen = [uid for uid, (mod, _) in series.items()
                  if modality is None or mod == modality.upper()]
        if len(chosen) != 1:
            found = {uid: mod or "?" for uid, (mod, _) in series.items()}
            raise ValueError(f"Folder {folder!r} must hold exactly one {modality} series; it holds "
                             f"{len(chosen)} (series -> modality: {found}).")
    files = series[chosen[0]][1]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ValueError(f"Cannot read the DICOM series in {folder!r}: "
                         f"{' '.join(str(exc).split())[-300:]}") from exc

    def meta(k: int, name: str) -> str:
        tag = TAGS[name]
        return reader.GetMetaData(k, tag).strip() if reader.HasMetaDataKey(k, tag) else ""

    n = len(files)
    positions = np.stack([_floats(meta(k, "position"), 3, "ImagePositionPatient (0020,0032)",
                                  files[k]) for k in range(n)])
    cosines = _floats(meta(0, "orientation"), 6, "ImageOrientationPatient (0020,0037)", files[0])
    normal = np.cross(cosines[:3], cosines[3:])
    dz = check_slice_positions(positions, normal / np.linalg.norm(normal), folder, files)
    sop_uids = tuple(meta(k, "sop_uid") for k in range(n))
    if len(set(sop_uids)) != n or "" in sop_uids:
        raise ValueError(f"DICOM series in {folder!r}: every slice needs its own SOPInstanceUID "
                         f"(0008,0018).")
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))
    spacing = image.GetSpacing()[:2] + (dz,)
    volume = Volume(array, spacing, image.GetOrigin(), image.GetDirection(), folder)
    return DicomSeries(volume=volume, folder=folder, series_uid=chosen[0],
                       study_uid=meta(0, "study_uid"), patient_id=meta(0, "patient_id"),
                       modality=meta(0, "modality").upper(), sop_uids=sop_uids,
                       z_positions=positions[:, 2].copy(), files=tuple(files))
