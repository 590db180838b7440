"""LIDC-IDRI in miniature: a CT series as DICOM slices plus its reading XML, laid out like TCIA.

    {out}/LIDC-IDRI-NNNN/{study UID}/{series UID}/000001.dcm ... + NNN.xml

`write_dicom_series` writes one single-slice file per z (SimpleITK/GDCM) with known
SOPInstanceUIDs and ImagePositionPatient; `write_lidc_xml` writes the readers' outlines in the
`LidcReadMessage` schema (namespace `http://www.nih.gov`). `make_lidc_phantoms` turns chest
phantoms into such folders, each nodule outlined slice by slice by up to four simulated readers
(some miss it, some draw it one pixel larger). Tests and `prepare` use them to exercise the LIDC
reader (`models_genesis.data.target_tasks.lidc_consensus`) exactly on the real layout.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from typing import Optional, Sequence

import numpy as np

from models_genesis.data.phantoms.chest import make_chest_phantom, phantom_series_uid

NAMESPACE = "http://www.nih.gov"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def slice_uid(series_uid: str, k: int) -> str:
    """The SOPInstanceUID these phantoms give slice `k` (0-based) of a series."""
    return f"{series_uid}.{k + 1}"


def write_dicom_series(folder, hu: np.ndarray, spacing, origin, *, series_uid: str,
                       study_uid: str, patient_id: str, modality: str = "CT",
                       omit_slices: Sequence[int] = (), name_prefix: str = "") -> list:
    """Write an `(x, y, z)` int16 HU volume as one DICOM file per slice; return the SOP UIDs.

    Args:
        folder: created; files `{name_prefix}000001.dcm`, ... (numbered by slice, 1-based).
        hu: `(X, Y, Z)` int16.
        spacing, origin: (x, y, z) mm; the direction is the identity (axial slices).
        series_uid, study_uid, patient_id, modality: header fields.
        omit_slices: slice indices not written (to make a series with a missing slice).
        name_prefix: file name prefix (to put a second series in the same folder).
    """
    # SimpleITK (0.5 s) on first use: `make-phantoms` of the other layouts never needs it.
    import SimpleITK as sitk

    os.makedirs(folder, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    hu = np.asarray(hu)
    uids = []
    for k in range(hu.shape[2]):
        uids.append(slice_uid(series_uid, k))
        if k in set(omit_slices):
            continue
        image = sitk.GetImageFromArray(np.ascontiguousarray(hu[:, :, k:k + 1].transpose(2, 1, 0)))
        image.SetSpacing(tuple(float(s) for s in spacing))
        z = float(origin[2]) + k * float(spacing[2])
        image.SetOrigin((float(origin[0]), float(origin[1]), z))
        for tag, value in (("0008|0060", modality), ("0008|0016", CT_IMAGE_STORAGE),
                           ("0008|0018", uids[-1]), ("0020|000e", series_uid),
                           ("0020|000d", study_uid), ("0010|0020", patient_id),
                           ("0020|0013", str(k + 1)), ("0020|0037", "1\\0\\0\\0\\1\\0"),
                           ("0020|0032", f"{origin[0]:.4f}\\{origin[1]:.4f}\\{z:.4f}"),
                           ("0028|0030", f"{spacing[1]:.6f}\\{spacing[0]:.6f}"),
                           ("0018|0050", f"{spacing[2]:.4f}")):
            image.SetMetaData(tag, value)
        writer.SetFileName(os.path.join(folder, f"{name_prefix}{k + 1:06d}.dcm"))
        writer.Execute(image)
    return uids


def write_lidc_xml(path, *, series_uid: str, study_uid: str, readers: Sequence[Sequence[dict]],
                   reader_ids: Optional[Sequence[str]] = None) -> str:
    """Write a `LidcReadMessage` reading file.

    Args:
        path: the XML file.
        series_uid, study_uid: the `ResponseHeader`.
        readers: one list per reader (`readingSession`) of nodules, each
            `{"id": str, "rois": [{"points": [(x, y), ...], "inclusion": bool,
            "sop_uid": str (optional), "z": float (optional)}]}`.
        reader_ids: `servicingRadiologistID` of each reader; default `"R1"`, `"R2"`, ...
    """
    ET.register_namespace("", NAMESPACE)

    def sub(parent, tag, text=None):
        element = ET.SubElement(parent, f"{{{NAMESPACE}}}{tag}")
        if text is not None:
            element.text = str(text)
        return element

    root = ET.Element(f"{{{NAMESPACE}}}LidcReadMessage", {"uid": f"{series_uid}.xml"})
    header = sub(root, "ResponseHeader")
    sub(header, "SeriesInstanceUid", series_uid)
    sub(header, "StudyInstanceUID", study_uid)
    for r, nodules in enumerate(readers):
        session = sub(root, "readingSession")
        sub(session, "annotationVersion", "3.12")
        sub(session, "servicingRadiologistID", reader_ids[r] if reader_ids else f"R{r + 1}")
        for nodule in nodules:
            node = sub(session, "unblindedReadNodule")
            sub(node, "noduleID", nodule["id"])
            for roi in nodule["rois"]:
                element = sub(node, "roi")
                if "z" in roi:
                    sub(element, "imageZposition", f"{roi['z']:.4f}")
                if "sop_uid" in roi:
                    sub(element, "imageSOP_UID", roi["sop_uid"])
                sub(element, "inclusion", "TRUE" if roi.get("inclusion", True) else "FALSE")
                for x, y in roi["points"]:
                    edge = sub(element, "edgeMap")
                    sub(edge, "xCoord", int(x))
                    sub(edge, "yCoord", int(y))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def outline_points(mask2d: np.ndarray) -> np.ndarray:
    """Pixels just outside a 2D region, ordered by angle round its centre: `(P, 2)` (x, y)."""
    # scipy (0.8 s) on first use: `make-phantoms` / `prepare` import this Keras-free module.
    from scipy import ndimage

    ring = ndimage.binary_dilation(mask2d) & ~mask2d
    pts = np.argwhere(ring)
    centre = np.argwhere(mask2d).mean(axis=0)
    angle = np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0])
    return pts[np.argsort(angle, kind="stable")]


def make_lidc_phantoms(out_dir, n: int = 3, seed: int = 0, *, shape=(64, 64, 32),
                       n_readers: int = 4, miss_rate: float = 0.25) -> dict:
    """Write `n` chest phantoms in LIDC-IDRI's layout, each nodule outlined by simulated readers.

    Each reader outlines each nodule on every slice it touches (the ring of pixels just outside
    it, as LIDC readers drew) with probability `1 - miss_rate`; every other reader draws it one
    pixel wider. Seeded: `(seed, scan index)`.

    Returns:
        `{patient_id: {"folder", "series_uid", "nodules"}}` (the phantom's true nodules).
    """
    # scipy (0.8 s) on first use: `make-phantoms` / `prepare` import this Keras-free module.
    from scipy import ndimage

    out = {}
    for i in range(n):
        rng = np.random.default_rng((seed, i))
        scan = make_chest_phantom(rng, shape=shape)
        patient = f"LIDC-IDRI-{i + 1:04d}"
        series_uid = phantom_series_uid(seed, i)
        study_uid = series_uid + ".0"
        folder = os.path.join(os.fspath(out_dir), patient, study_uid, series_uid)
        uids = write_dicom_series(folder, scan["hu"], scan["spacing"], scan["origin"],
                                  series_uid=series_uid, study_uid=study_uid, patient_id=patient)
        readers = []
        for r in range(n_readers):
            nodules = []
            for nod in scan["nodules"]:
                if rng.random() < miss_rate:
                    continue
                mask = scan["nodule_mask"] == nod["label"]
                if r % 2:
                    mask = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 1), bool))
                rois = [{"points": outline_points(mask[:, :, k]), "sop_uid": uids[k],
                         "z": scan["origin"][2] + k * scan["spacing"][2], "inclusion": True}
                        for k in np.flatnonzero(mask.any(axis=(0, 1)))]
                nodules.append({"id": f"N{nod['label']}", "rois": rois})
            readers.append(nodules)
        write_lidc_xml(os.path.join(folder, f"{i + 1:03d}.xml"), series_uid=series_uid,
                       study_uid=study_uid, readers=readers)
        out[patient] = {"folder": folder, "series_uid": series_uid, "nodules": scan["nodules"]}
    return out
