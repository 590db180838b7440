"""LIDC-IDRI as TCIA ships it: CT series + XML reading -> image, consensus nodule mask, nodules.

From the readers' outlines to one mask per nodule (NCS, paper Sec. 3.2.2):

1. **Reader masks.** Each `roi` outline is filled on its slice (pixel centres inside the polygon;
   `skimage.draw.polygon`). The outline pixels themselves are left out (`include_outline=False`,
   pylidc's default: LIDC readers drew the outline just outside the nodule). On one slice a
   reader's mask is the union of its `inclusion=TRUE` areas minus its `inclusion=FALSE` areas
   (holes, outline included). Slices are matched by `imageSOP_UID`, else by `imageZposition`
   (within a quarter of the slice gap); an outline naming a slice the series lacks is an error
   naming the XML file and the UID (or, with `errors="skip"`, that reader's nodule is left out
   and reported).
2. **Clustering.** Two reader nodules are the same nodule when their masks share at least one
   voxel; nodules are the connected groups of that relation (a reader who missed a nodule is
   simply absent from its group). pylidc clusters by contour distance instead; overlap needs no
   tolerance and cannot merge two separate nodules that merely lie close.
3. **Consensus.** A voxel belongs to the nodule when at least `consensus_level` (default 0.5)
   of the readers *in the group* marked it (a reader with two masks in one group counts once,
   with their union) -- pylidc's `consensus(clevel=0.5)`. Groups with fewer than `min_readers`
   readers are dropped (LUNA16 keeps nodules seen by >= 3 of the 4 readers; default 1 keeps all).
4. **Resampling** to `spacing` (1 mm isotropic in the paper): the image linearly, the labels
   per nodule, each nodule's indicator linearly with a > 0.5 threshold (`resample_mask`, as
   nnU-Net resamples segmentations).

The returned labels are 0 (background) and k = the k-th nodule, like the chest phantoms' masks.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from skimage.draw import polygon, polygon_perimeter

from models_genesis.data.io.dicom import DicomSeries, read_dicom_series, read_header
from models_genesis.data.io.lidc_xml import LidcReading, ReaderNodule, read_lidc_header, read_lidc_xml
from models_genesis.data.io.volumes import Volume, resample_mask, resample_volume


@dataclass(frozen=True, eq=False)
class LidcScan:
    """One LIDC-IDRI CT scan with its consensus nodule mask.

    Attributes:
        image: CT in HU, `(x, y, z)`, on the requested grid.
        labels: uint8 `Volume` on the same grid: 0 background, k = nodule k (see `nodules`).
        nodules: one dict per nodule: `label`, `center_mm` (x, y, z world mm, centroid of the
            consensus on the original grid), `volume_mm3`, `diameter_mm` (sphere of that volume),
            `n_readers`, `readers`, `nodule_ids`.
        series_uid, patient_id: identity (the series UID is LUNA16's `seriesuid`).
        folder, xml_path: the sources.
        skipped: reader nodules left out with `errors="skip"`: `{"item", "reason"}`.
        info: counts (readers, reader nodules, point marks < 3 mm, groups dropped).
    """

    image: Volume
    labels: Volume
    nodules: Tuple[dict, ...]
    series_uid: str
    patient_id: str
    folder: str
    xml_path: str
    skipped: Tuple[dict, ...] = ()
    info: Optional[dict] = None


def _slice_of(series: DicomSeries, outline, by_uid: Dict[str, int], xml_path: str) -> int:
    if outline.sop_uid in by_uid:
        return by_uid[outline.sop_uid]
    if np.isfinite(outline.z_position):
        gaps = np.abs(series.z_positions - outline.z_position)
        k = int(np.argmin(gaps))
        if gaps[k] <= 0.25 * series.volume.spacing[2] + 1e-3:
            return series.grid_index(k)
    raise ValueError(f"LIDC XML {xml_path} names a slice that is not in the series "
                     f"{series.folder}: imageSOP_UID={outline.sop_uid!r}, "
                     f"imageZposition={outline.z_position}.")


def reader_mask(nodule: ReaderNodule, series: DicomSeries, xml_path: str, *,
                include_outline: bool = False) -> np.ndarray:
    """Fill one reader's outlines of one nodule: sorted flat indices into the `(X, Y, Z)` volume."""
    shape = series.volume.shape
    by_uid = series.slice_index()
    planes: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
    for outline in nodule.outlines:
        k = _slice_of(series, outline, by_uid, xml_path)
        inside, removed = planes.setdefault(k, (np.zeros(shape[:2], bool),
                                                np.zeros(shape[:2], bool)))
        xs, ys = outline.points[:, 0], outline.points[:, 1]
        fill = np.zeros(shape[:2], bool)
        fill[polygon(xs, ys, shape[:2])] = True
        edge = np.zeros(shape[:2], bool)
        edge[polygon_perimeter(xs, ys, shape[:2])] = True
        if outline.inclusion:
            inside |= fill if include_outline else fill & ~edge
        else:
            removed |= fill | edge
    flat = [np.ravel_multi_index(np.nonzero(inside & ~removed) + (np.full(
        int((inside & ~removed).sum()), k),), shape) for k, (inside, removed) in planes.items()]
    return np.unique(np.concatenate(flat)) if flat else np.zeros(0, np.int64)


def cluster_by_overlap(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Group masks (sorted flat indices) that share a voxel, transitively: a group id per mask."""
    # scipy (0.8 s) on first use: `make-phantoms` / `prepare` import this Keras-free module.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(masks)
    rows, cols = [], []
    for i in range(n):
        for j in range(i + 1, n):
            a, b = masks[i], masks[j]
            if a.size and b.size and a[0] <= b[-1] and b[0] <= a[-1] and \
                    np.intersect1d(a, b, assume_unique=True).size:
                rows.append(i)
                cols.append(j)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def consensus_mask(masks_by_reader: Dict[str, List[np.ndarray]], level: float) -> np.ndarray:
    """Voxels (flat indices) marked by at least `level` of the readers in the group."""
    unions = [np.unique(np.concatenate(m)) for m in masks_by_reader.values()]
    voxels, counts = np.unique(np.concatenate(unions), return_counts=True)
    return voxels[counts >= level * len(unions) - 1e-9]


def read_lidc_scan(folder, xml_path=None, *, xml_dirs: Sequence = (), spacing=(1.0, 1.0, 1.0),
                   consensus_level: float = 0.5, min_readers: int = 1,
                   include_outline: bool = False, errors: str = "raise") -> LidcScan:
    """Read one LIDC-IDRI CT series and its XML reading into image, labels and nodules.

    Args:
        folder: the series folder (`LIDC-IDRI-NNNN/<study>/<series>/`).
        xml_path: the reading file; None takes the one `*.xml` of the folder whose
            `SeriesInstanceUid` matches (or the only `LidcReadMessage` there), else the one
            in `xml_dirs` (e.g. the unpacked "LIDC-XML-only" archive).
        xml_dirs: folders searched (recursively) when `folder` holds no reading.
        spacing: resample to this spacing in mm (None keeps the scan's grid).
        consensus_level: share of a nodule's readers who must mark a voxel, in (0, 1].
        min_readers: drop nodules marked by fewer readers.
        include_outline: count the outline pixels as nodule.
        errors: `"raise"`, or `"skip"` to leave out a reader nodule naming a missing slice.

    Returns:
        `LidcScan`.

    Raises:
        FileNotFoundError: no DICOM series or no XML reading in `folder`.
        ValueError: bad series (see `read_dicom_series`), bad XML, or an outline naming a slice
            not in the series (with `errors="raise"`).
    """
    if not 0.0 < float(consensus_level) <= 1.0:
        raise ValueError(f"`consensus_level` must be in (0, 1]. "
                         f"Received: consensus_level={consensus_level!r}.")
    if errors not in ("raise", "skip"):
        raise ValueError(f"`errors` must be 'raise' or 'skip'. Received: errors={errors!r}.")
    series = read_dicom_series(folder)
    if xml_path is None:
        xml_path = find_reading(series.folder, series.series_uid, xml_dirs)
    reading: LidcReading = read_lidc_xml(xml_path)
    if reading.series_uid and reading.series_uid != series.series_uid:
        raise ValueError(f"LIDC XML {xml_path} reads series {reading.series_uid}, not the series "
                         f"{series.series_uid} in {series.folder}.")
    masks, kept, skipped = _reader_masks(reading, series, xml_path,
                                         include_outline=include_outline, errors=errors)
    vol = series.volume
    labels, nodules, dropped = _consensus_labels(masks, kept, vol, consensus_level, min_readers,
                                                 series.folder)
    image, label_volume = _resampled(vol, Volume(labels, vol.spacing, vol.origin, vol.direction,
                                                 xml_path), spacing)
    info = {"readers": len(reading.readers), "reader_nodules": len(reading.nodules),
            "point_marks": reading.n_point_marks, "groups_dropped": dropped,
            "consensus_level": float(consensus_level), "min_readers": int(min_readers)}
    if series.note:
        info["note"] = series.note
    return LidcScan(image=image, labels=label_volume, nodules=tuple(nodules),
                    series_uid=series.series_uid, patient_id=series.patient_id,
                    folder=series.folder, xml_path=os.fspath(xml_path), skipped=tuple(skipped),
                    info=info)


def _reader_masks(reading: LidcReading, series, xml_path, *, include_outline: bool,
                  errors: str):
    """Each reader nodule's voxel mask (flat indices) on the series' grid.

    Returns:
        `(masks, kept, skipped)`: the non-empty masks, the reader nodules they belong to, and
        the nodules left out with `errors="skip"` (`{"item", "reason"}`).
    """
    skipped, masks, kept = [], [], []
    for nodule in reading.nodules:
        try:
            mask = reader_mask(nodule, series, xml_path, include_outline=include_outline)
        except ValueError as exc:
            if errors == "raise":
                raise
            skipped.append({"item": f"{xml_path}: reader {nodule.reader}, nodule "
                                    f"{nodule.nodule_id}", "reason": str(exc)})
            continue
        if mask.size:
            masks.append(mask)
            kept.append(nodule)
    return masks, kept, skipped


def _consensus_labels(masks, kept, vol: Volume, consensus_level: float, min_readers: int,
                      folder):
    """Group overlapping reader masks into nodules and label their consensus voxels.

    Returns:
        `(labels, nodules, dropped)`: uint8 labels of `vol`'s shape (k = the k-th nodule), one
        dict per nodule (label, centre and volume in mm, diameter, readers), and the number of
        groups dropped (fewer than `min_readers` readers, or no voxel at `consensus_level`).

    Raises:
        ValueError: more than 255 nodules (uint8 labels).
    """
    groups = cluster_by_overlap(masks) if masks else np.zeros(0, int)
    labels = np.zeros(vol.shape, np.uint8)
    nodules, dropped = [], 0
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        by_reader: Dict[str, List[np.ndarray]] = {}
        for i in members:
            by_reader.setdefault(kept[i].reader, []).append(masks[i])
        voxels = consensus_mask(by_reader, consensus_level)
        if len(by_reader) < min_readers or not voxels.size:
            dropped += 1
            continue
        if len(nodules) == 255:
            raise ValueError(f"{folder}: more than 255 nodules; uint8 labels cannot hold them.")
        label = len(nodules) + 1
        labels.reshape(-1)[voxels] = label
        ijk = np.stack(np.unravel_index(voxels, vol.shape), axis=1)
        volume_mm3 = float(voxels.size * np.prod(vol.spacing))
        nodules.append({"label": label, "center_mm": vol.voxel_to_world(ijk.mean(axis=0)).tolist(),
                        "volume_mm3": volume_mm3,
                        "diameter_mm": float((6.0 * volume_mm3 / np.pi) ** (1.0 / 3.0)),
                        "n_readers": len(by_reader), "readers": sorted(by_reader),
                        "nodule_ids": [kept[i].nodule_id for i in members]})
    return labels, nodules, dropped


def _resampled(image: Volume, labels: Volume, spacing):
    """`(image, labels)` resampled to `spacing` mm (linear; labels by `resample_mask`); an
    integer image stays int16. `spacing` None returns both unchanged."""
    if spacing is None:
        return image, labels
    resampled = resample_volume(image, spacing, order=1)
    if np.issubdtype(image.array.dtype, np.integer):
        resampled = Volume(np.rint(resampled.array).astype(np.int16), resampled.spacing,
                           resampled.origin, resampled.direction, image.path)
    return resampled, resample_mask(labels, spacing)


def find_reading(folder, series_uid: str, xml_dirs: Sequence = ()) -> str:
    """The LIDC XML of `series_uid`: in `folder`, else in `xml_dirs` (searched recursively)."""
    found = []
    places = [(folder, "*.xml")] + [(d, os.path.join("**", "*.xml")) for d in xml_dirs]
    for where, pattern in places:
        for path in sorted(glob.glob(os.path.join(os.fspath(where), pattern), recursive=True)):
            root, uid, _ = read_lidc_header(path)
            if root == "LidcReadMessage" and uid in (series_uid, ""):
                found.append((uid == series_uid, path))
        if found:
            break
    exact = [p for match, p in found if match] or [p for _, p in found]
    if not exact:
        also = f" or {list(xml_dirs)}" if xml_dirs else ""
        raise FileNotFoundError(f"No LIDC XML reading (LidcReadMessage) for series {series_uid} "
                                f"in {folder}{also}.")
    if len(exact) > 1:
        raise ValueError(f"Several LIDC XML readings for series {series_uid}: {exact}; pass "
                         f"xml_path= to choose one.")
    return exact[0]


def find_lidc_scans(data_dir) -> Dict[str, dict]:
    """Find the CT series folders under `data_dir` (DX/CR radiograph series are left out).

    Returns:
        SeriesInstanceUID -> `{"folder", "patient_id", "series_uid"}`, sorted by patient; the
        patient is the DICOM PatientID, else the first folder under `data_dir`.

    Raises:
        FileNotFoundError: `data_dir` is missing or holds no CT series.
    """
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"LIDC-IDRI folder not found: {data_dir}")
    scans = {}
    for folder, _, files in sorted(os.walk(data_dir)):
        dcm = sorted(f for f in files if f.lower().endswith(".dcm"))
        if not dcm:
            continue
        head = read_header(os.path.join(folder, dcm[0]))
        if head["modality"].upper() != "CT":
            continue
        rel = os.path.relpath(folder, data_dir).split(os.sep)[0]
        scans[head["series_uid"] or folder] = {
            "folder": folder, "series_uid": head["series_uid"],
            "patient_id": head["patient_id"] or rel}
    if not scans:
        raise FileNotFoundError(f"No CT DICOM series (*.dcm with Modality CT) under {data_dir}.")
    return dict(sorted(scans.items(), key=lambda kv: (kv[1]["patient_id"], kv[0])))


def read_lidc_job(job: dict):
    """Read the scan of one `prepare` job: return `(image Volume, labels array)` on its grid.

    The job (from `lidc_prepare_jobs`) gets `nodules` (`[x, y, z, diameter_mm]` per nodule, world
    mm, the rows of the prepared `annotations.csv`) and `skipped_items` (reader nodules left out
    with `on_error="skip"`) filled in.
    """
    scan = read_lidc_scan(job["folder"], spacing=job.get("spacing"),
                          consensus_level=job.get("consensus_level", 0.5),
                          min_readers=job.get("min_readers", 1),
                          errors="skip" if job.get("on_error") == "skip" else "raise")
    job["nodules"] = [list(n["center_mm"]) + [n["diameter_mm"]] for n in scan.nodules]
    job["skipped_items"] = list(scan.skipped)
    if scan.info.get("note"):
        job["notes"] = [scan.info["note"]]
    return scan.image, np.asarray(scan.labels.array)


def lidc_prepare_jobs(data_dir, common: dict):
    """One `prepare` job per CT series of a LIDC-IDRI download.

    Returns:
        `(jobs, parameters, refused)`: jobs `{**common, "case": series UID, "folder",
        "patient_id", "reader": read_lidc_job, "record": {"patient_id"}}`, the parameters to
        record (the consensus rule), and nothing refused (bad scans fail in their own job).
    """
    scans = find_lidc_scans(data_dir)
    jobs = [{**common, "case": uid, "folder": s["folder"], "patient_id": s["patient_id"],
             "reader": read_lidc_job, "record": {"patient_id": s["patient_id"]}}
            for uid, s in scans.items()]
    parameters = {"source_layout": "LIDC-IDRI DICOM + XML",
                  "consensus_level": common.get("consensus_level", 0.5),
                  "min_readers": common.get("min_readers", 1), "include_outline": False}
    return jobs, parameters, []
