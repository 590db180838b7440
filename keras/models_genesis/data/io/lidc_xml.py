"""The LIDC-IDRI reading file: four radiologists' nodule outlines for one CT series (XML).

TCIA ships one XML file per CT series (`NNN.xml`, in the series folder of an NBIA download, or
in the separate `LIDC-XML-only` archive). Its structure, as read here (namespace
`http://www.nih.gov`; tags are matched by local name, so any namespace or none is accepted):

    LidcReadMessage
      ResponseHeader          SeriesInstanceUid, StudyInstanceUID
      readingSession          one per radiologist (servicingRadiologistID)
        unblindedReadNodule   one nodule as this reader saw it (noduleID, characteristics)
          roi                 one outline on one slice
            imageZposition    the slice's ImagePositionPatient z (mm)
            imageSOP_UID      the slice's SOPInstanceUID
            inclusion         TRUE: the outlined area is nodule; FALSE: a hole to remove
            edgeMap           xCoord (DICOM column), yCoord (DICOM row): one outline point
        nonNodule             a single point (ignored)

A nodule >= 3 mm is outlined on every slice it touches (dense, pixel-by-pixel outlines); a
nodule < 3 mm is marked by one point (an `roi` with a single `edgeMap`) and has no volume.
Radiographs (DX/CR) use another schema (`IdriReadMessage`), refused here.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

MIN_OUTLINE_POINTS = 3  # fewer edgeMap points: a point mark (nodule < 3 mm), not an outline


@dataclass(frozen=True, eq=False)
class Outline:
    """One `roi`: a closed outline on one slice.

    Attributes:
        sop_uid: `imageSOP_UID` ("" when absent).
        z_position: `imageZposition` in mm (NaN when absent).
        inclusion: True for nodule, False for an excluded hole.
        points: `(P, 2)` int64 pixel indices `(x, y)` = (`xCoord` column, `yCoord` row).
    """

    sop_uid: str
    z_position: float
    inclusion: bool
    points: np.ndarray


@dataclass(frozen=True, eq=False)
class ReaderNodule:
    """One `unblindedReadNodule` of one reader, with its outlines (>= 3 points each)."""

    reader: str
    nodule_id: str
    outlines: Tuple[Outline, ...]


@dataclass(frozen=True, eq=False)
class LidcReading:
    """A parsed LIDC XML file.

    Attributes:
        path: the XML file.
        series_uid, study_uid: from `ResponseHeader` ("" when absent).
        readers: the reader of each `readingSession` (its `servicingRadiologistID`, else
            `"session-k"`), in file order; readers who marked nothing are included.
        nodules: every outlined nodule of every reader.
        n_point_marks: `unblindedReadNodule`s with no outline of 3 or more points (< 3 mm).
    """

    path: str
    series_uid: str
    study_uid: str
    readers: Tuple[str, ...]
    nodules: Tuple[ReaderNodule, ...]
    n_point_marks: int


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element, name: str) -> Optional[str]:
    """Text of the first child whose local tag is `name` (case-insensitive), or None."""
    name = name.lower()
    for child in element:
        if _local(child.tag).lower() == name:
            return (child.text or "").strip()
    return None


def _children(element, name: str):
    return [c for c in element if _local(c.tag) == name]


def _outline(roi, path: str, where: str) -> Optional[Outline]:
    points = []
    for k, edge in enumerate(_children(roi, "edgeMap")):
        x, y = _child_text(edge, "xCoord"), _child_text(edge, "yCoord")
        try:
            points.append((int(x), int(y)))
        except (TypeError, ValueError):
            raise ValueError(f"LIDC XML {path}: {where}, edgeMap {k + 1} must hold integer xCoord "
                             f"and yCoord. Received: xCoord={x!r}, yCoord={y!r}.") from None
    if len(points) < MIN_OUTLINE_POINTS:
        return None
    inclusion = (_child_text(roi, "inclusion") or "").upper()
    if inclusion not in ("TRUE", "FALSE"):
        raise ValueError(f"LIDC XML {path}: {where}: `inclusion` must be TRUE or FALSE. "
                         f"Received: inclusion={inclusion!r}.")
    sop_uid = _child_text(roi, "imageSOP_UID") or ""
    z_text = _child_text(roi, "imageZposition")
    try:
        z = float(z_text) if z_text else float("nan")
    except ValueError:
        raise ValueError(f"LIDC XML {path}: {where}: `imageZposition` must be a number. "
                         f"Received: imageZposition={z_text!r}.") from None
    if not sop_uid and not np.isfinite(z):
        raise ValueError(f"LIDC XML {path}: {where} names its slice by neither imageSOP_UID nor "
                         f"imageZposition.")
    return Outline(sop_uid, z, inclusion == "TRUE", np.asarray(points, dtype=np.int64))


def read_lidc_header(path) -> Tuple[str, str, str]:
    """Return `(root tag, SeriesInstanceUid, StudyInstanceUID)` of an XML file ("" when absent)."""
    path = os.fspath(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"LIDC XML {path} is not well-formed XML: {exc}.") from None
    header = next((c for c in root if _local(c.tag) == "ResponseHeader"), None)
    if header is None:
        return _local(root.tag), "", ""
    return (_local(root.tag), _child_text(header, "SeriesInstanceUid") or "",
            _child_text(header, "StudyInstanceUID") or "")


def read_lidc_xml(path) -> LidcReading:
    """Parse a LIDC-IDRI CT reading file (`LidcReadMessage`).

    Args:
        path: the XML file.

    Returns:
        `LidcReading` with every reader's outlined nodules.

    Raises:
        FileNotFoundError: `path` is missing.
        ValueError: not well-formed XML, not a `LidcReadMessage`, or an `roi` with a bad
            coordinate, `inclusion` or slice reference (the message names the file, the reader
            and the nodule).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"LIDC XML file not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"LIDC XML {path} is not well-formed XML: {exc}.") from None
    if _local(root.tag) != "LidcReadMessage":
        raise ValueError(f"{path} must be a LIDC CT reading file (root element LidcReadMessage). "
                         f"Received root element {_local(root.tag)!r}.")
    header = next((c for c in root if _local(c.tag) == "ResponseHeader"), root)
    readers, nodules, n_points = [], [], 0
    for s, session in enumerate(_children(root, "readingSession")):
        reader = _child_text(session, "servicingRadiologistID") or f"session-{s + 1}"
        if reader in readers:
            reader = f"{reader}#{s + 1}"
        readers.append(reader)
        for n, node in enumerate(_children(session, "unblindedReadNodule")):
            nodule_id = _child_text(node, "noduleID") or f"nodule-{n + 1}"
            outlines = []
            for r, roi in enumerate(_children(node, "roi")):
                where = f"reader {reader}, nodule {nodule_id}, roi {r + 1}"
                outline = _outline(roi, path, where)
                if outline is not None:
                    outlines.append(outline)
            if outlines:
                nodules.append(ReaderNodule(reader, nodule_id, tuple(outlines)))
            else:
                n_points += 1
    return LidcReading(path=path, series_uid=_child_text(header, "SeriesInstanceUid") or "",
                       study_uid=_child_text(header, "StudyInstanceUID") or "",
                       readers=tuple(readers), nodules=tuple(nodules), n_point_marks=n_points)
