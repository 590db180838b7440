"""Volumes: read any SimpleITK format, world <-> voxel geometry, resampling, indexing.

Intensities are in `data.io.intensity`.

Arrays are in (x, y, z) order: SimpleITK's (z, y, x) array transposed, as the release does for
LUNA16 (docs/release_reference.md, 'Pre-training data'), so `array[i, j, k]` is the voxel at ITK
index (i, j, k). World coordinates are millimetres, as in LUNA16's `annotations.csv` /
`candidates.csv`:
`world = origin + direction @ (spacing * ijk)`.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger(__name__)

IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
_META_BYTES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4,
               "MET_INT": 4, "MET_ULONG": 8, "MET_LONG": 8, "MET_ULONG_LONG": 8,
               "MET_LONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def _triple(value, name) -> Tuple[float, float, float]:
    arr = np.broadcast_to(np.asarray(value, dtype=float), (3,)) if np.ndim(value) == 0 else \
        np.asarray(value, dtype=float)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be 3 finite numbers (x, y, z). Received: {name}={value!r}.")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image with its geometry.

    Attributes:
        array: `(x, y, z)` voxel array (any numeric dtype; CT in Hounsfield units).
        spacing: voxel size in mm, (x, y, z).
        origin: world position in mm of voxel (0, 0, 0).
        direction: 3x3 direction cosines, row-major (SimpleITK's `GetDirection()`).
        path: the file or DICOM folder it was read from, if any.
    """

    array: np.ndarray
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: Tuple[float, ...] = IDENTITY_DIRECTION
    path: Optional[str] = None

    def __post_init__(self):
        array = np.asarray(self.array)
        if array.ndim != 3:
            raise ValueError(f"`array` must be 3D (x, y, z). Received: shape={array.shape}.")
        spacing = _triple(self.spacing, "spacing")
        if min(spacing) <= 0:
            raise ValueError(f"`spacing` must be positive. Received: spacing={self.spacing!r}.")
        direction = np.asarray(self.direction, dtype=float).reshape(-1)
        if direction.shape != (9,) or abs(np.linalg.det(direction.reshape(3, 3))) < 1e-6:
            raise ValueError(f"`direction` must be 9 numbers of an invertible 3x3 matrix. "
                             f"Received: direction={self.direction!r}.")
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", _triple(self.origin, "origin"))
        object.__setattr__(self, "direction", tuple(float(v) for v in direction))

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.array.shape)

    def _matrix(self) -> np.ndarray:
        return np.asarray(self.direction).reshape(3, 3) * np.asarray(self.spacing)[None, :]

    def voxel_to_world(self, ijk) -> np.ndarray:
        """Continuous voxel indices `(3,)` or `(N, 3)` (x, y, z) -> world mm, same shape."""
        ijk = np.asarray(ijk, dtype=float)
        return (ijk @ self._matrix().T + np.asarray(self.origin)).reshape(ijk.shape)

    def world_to_voxel(self, points_mm) -> np.ndarray:
        """World mm `(3,)` or `(N, 3)` -> continuous voxel indices (x, y, z), not rounded."""
        points = np.asarray(points_mm, dtype=float)
        if points.shape[-1:] != (3,):
            raise ValueError(f"`points_mm` must have shape (3,) or (N, 3). Received: {points.shape}.")
        inv = np.linalg.inv(self._matrix())
        return ((points - np.asarray(self.origin)) @ inv.T).reshape(points.shape)


def _check_metaimage(path: str) -> None:
    """Check that a `.mhd` header's data file exists and is long enough (SimpleITK says neither)."""
    header = {}
    with open(path, "r", encoding="latin-1") as f:
        for line in f:
            key, sep, value = line.partition("=")
            if sep:
                header[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile":
                break
    data = header.get("ElementDataFile")
    if data is None:
        raise ValueError(f"MetaImage header {path!r} has no ElementDataFile line.")
    if data in ("LOCAL", "LIST") or "%" in data:
        return
    data_path = os.path.join(os.path.dirname(path), data)
    if not os.path.isfile(data_path):
        raise FileNotFoundError(f"MetaImage header {path!r} refers to data file {data_path!r}, "
                                f"which does not exist.")
    try:
        dims = [int(v) for v in header["DimSize"].split()]
        n_bytes = _META_BYTES[header["ElementType"]] * int(header.get("ElementNumberOfChannels", 1))
    except (KeyError, ValueError):
        return  # let SimpleITK report a malformed header
    if header.get("CompressedData", "False").lower() == "true":  # zlib: inflated to its end
        with open(data_path, "rb") as f:
            _truncated(data_path, "image data (inflated)", _stream_length(f, data_path, wbits=47),
                       int(np.prod(dims)) * n_bytes)
        return
    expected = int(np.prod(dims)) * n_bytes + max(int(header.get("HeaderSize", 0)), 0)
    actual = os.path.getsize(data_path)
    if actual < expected:
        raise ValueError(f"Data file {data_path!r} of {path!r} is truncated: {actual} bytes, the "
                         f"header needs {expected} (DimSize={dims}, {header['ElementType']}).")


_NRRD_BYTES = {"uchar": 1, "unsigned char": 1, "uint8": 1, "uint8_t": 1, "signed char": 1,
               "char": 1, "int8": 1, "int8_t": 1, "short": 2, "short int": 2, "signed short": 2,
               "int16": 2, "int16_t": 2, "ushort": 2, "unsigned short": 2, "uint16": 2,
               "uint16_t": 2, "int": 4, "signed int": 4, "int32": 4, "int32_t": 4, "uint": 4,
               "unsigned int": 4, "uint32": 4, "uint32_t": 4, "longlong": 8, "long long": 8,
               "int64": 8, "int64_t": 8, "ulonglong": 8, "unsigned long long": 8, "uint64": 8,
               "uint64_t": 8, "float": 4, "double": 8}
_BLOCK = 2 ** 20


def _stream_length(f, path: str, *, wbits: Optional[int] = None) -> int:
    """Bytes of the rest of `f`: read to the end (a gzip stream's end and CRC checked); `wbits`:
    inflate the rest as one zlib/gzip stream (47: either), which must end."""
    import gzip
    import zlib

    n = 0
    decoder = None if wbits is None else zlib.decompressobj(wbits)
    try:
        for block in iter(lambda: f.read(_BLOCK), b""):
            n += len(block) if decoder is None else len(decoder.decompress(block))
        if decoder is not None:
            n += len(decoder.flush())
            if not decoder.eof:
                raise EOFError("compressed stream ends early")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"Volume {path!r} is truncated or corrupt: its compressed data ends "
                         f"before the stream does ({exc}).") from None
    return n


def _truncated(path: str, what: str, actual: int, expected: int) -> None:
    if actual < expected:
        raise ValueError(f"Volume {path!r} is truncated: {actual} bytes of {what}, its header "
                         f"needs {expected}.")


def _check_nifti(path: str) -> None:
    import gzip

    opener = gzip.open if path.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        try:
            head = f.read(540)
        except (OSError, EOFError) as exc:  # not gzip, or cut inside the header
            raise ValueError(f"Cannot read volume {path!r}: {exc}.") from None
        if len(head) < 348:
            raise ValueError(f"Volume {path!r} is truncated: {len(head)} bytes, shorter than a "
                             "NIfTI header (348).")
        for order in ("<", ">"):
            size = int(np.frombuffer(head[:4], order + "i4")[0])
            if size in (348, 540):
                break
        else:
            return  # not NIfTI: let SimpleITK say so
        if size == 348:
            dims = np.frombuffer(head[40:56], order + "i2").astype(np.int64)
            bitpix = int(np.frombuffer(head[72:74], order + "i2")[0])
            offset = int(np.frombuffer(head[108:112], order + "f4")[0])
        else:
            dims = np.frombuffer(head[16:80], order + "i8").astype(np.int64)
            bitpix = int(np.frombuffer(head[14:16], order + "i2")[0])
            offset = int(np.frombuffer(head[168:176], order + "i8")[0])
        n_dims = int(dims[0])
        if not 1 <= n_dims <= 7 or bitpix <= 0 or np.any(dims[1:n_dims + 1] < 0):
            return  # a malformed header: SimpleITK reports it
        expected = max(offset, size) + int(np.prod(dims[1:n_dims + 1])) * bitpix // 8
        actual = len(head) + _stream_length(f, path)
    _truncated(path, "image data" + (" (uncompressed)" if opener is gzip.open else ""), actual,
               expected)


def _text_header(f, stop) -> Tuple[Dict[str, str], int]:
    """Lines `key: value` / `key = value` up to `stop(key, line)` (included); their end offset."""
    header, offset = {}, 0
    for raw in iter(f.readline, b""):
        offset += len(raw)
        line = raw.decode("latin-1").rstrip("\r\n")
        if stop(line):
            break
        for sep in ("=", ":"):
            key, found, value = line.partition(sep)
            if found:
                header[key.strip().lower()] = value.strip()
                break
    return header, offset


def _check_mha(path: str) -> None:
    with open(path, "rb") as f:
        header, offset = _text_header(f, lambda line: line.split("=")[0].strip()
                                      == "ElementDataFile")
        f.seek(0)
        last = [line for line in f.read(offset).decode("latin-1").splitlines() if line][-1:]
        data = last[0].partition("=")[2].strip() if last else ""
        if data != "LOCAL":
            if data:
                _check_metaimage(path)
            return
        try:
            dims = [int(v) for v in header["dimsize"].split()]
            n_bytes = _META_BYTES[header["elementtype"]] * int(
                header.get("elementnumberofchannels", 1))
        except (KeyError, ValueError):
            return
        expected = int(np.prod(dims)) * n_bytes
        f.seek(offset)
        if header.get("compresseddata", "false").lower() == "true":
            actual = _stream_length(f, path, wbits=47)
        else:
            actual = os.path.getsize(path) - offset
    _truncated(path, "image data", actual, expected)


def _check_nrrd(path: str) -> None:
    with open(path, "rb") as f:
        header, offset = _text_header(f, lambda line: line == "")
        if "data file" in header or "datafile" in header:
            return  # detached data: SimpleITK reads (and reports) the named file
        try:
            sizes = [int(v) for v in header["sizes"].split()]
            n_bytes = _NRRD_BYTES[header["type"].lower()]
        except (KeyError, ValueError):
            return
        encoding = header.get("encoding", "raw").lower()
        expected = int(np.prod(sizes)) * n_bytes
        f.seek(offset)
        if encoding == "raw":
            actual = os.path.getsize(path) - offset
        elif encoding in ("gzip", "gz"):
            actual = _stream_length(f, path, wbits=47)
        else:
            return  # text or bzip2: SimpleITK parses it
    _truncated(path, "image data", actual, expected)


def check_volume_complete(path) -> None:
    """Check that a volume file holds every voxel its header declares, before it is read.

    SimpleITK fills the voxels missing from a truncated file with zeros (or garbage) without a
    word; a download or a copy cut short would then be prepared and trained on. This reads the
    header of `.mhd` (+ data file), `.mha`, `.nii`, `.nii.gz`, `.nrrd` (raw or gzip) and checks
    the data's length against it; compressed data (`.nii.gz`, gzip NRRD, compressed MetaImage)
    is inflated to its end, which also checks the gzip CRC. Other formats are left to SimpleITK.

    Raises:
        FileNotFoundError: a `.mhd`'s data file is missing.
        ValueError: the file is truncated or its compressed stream is corrupt (the message names
            the file and both lengths).
    """
    path = os.fspath(path)
    lower = path.lower()
    if lower.endswith(".mhd"):
        _check_metaimage(path)
    elif lower.endswith(".mha"):
        _check_mha(path)
    elif lower.endswith((".nii", ".nii.gz")):
        _check_nifti(path)
    elif lower.endswith(".nrrd"):
        _check_nrrd(path)


def read_volume(path, *, series_id: Optional[str] = None) -> Volume:
    """Read a 3D volume in any format SimpleITK reads, or a DICOM series folder.

    Args:
        path: `.mhd` (+ `.raw`), `.mha`, `.nii`, `.nii.gz`, `.nrrd`, ... or a folder of DICOM files.
        series_id: for a DICOM folder holding several series, the SeriesInstanceUID to read.

    Returns:
        `Volume` with `array` in (x, y, z) order and its spacing, origin and direction.

    Raises:
        FileNotFoundError: `path`, a `.mhd`'s data file, or any DICOM file is missing.
        ValueError: unreadable or truncated file, not a 3D scalar image, or NaN/inf voxels.
    """
    # On first use: this module is on `models-genesis --help`'s import path (SimpleITK: 0.5 s).
    import SimpleITK as sitk

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Volume not found: {path!r}.")
    if not os.path.isdir(path):
        check_volume_complete(path)
    try:
        if os.path.isdir(path):
            ids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(path))
            if not ids:
                raise FileNotFoundError(f"No DICOM series in folder {path!r}.")
            if series_id is None and len(ids) > 1:
                raise ValueError(f"Folder {path!r} holds {len(ids)} DICOM series; pass series_id= "
                                 f"one of {ids}.")
            if series_id is not None and series_id not in ids:
                raise ValueError(f"`series_id` must be one of {ids} in {path!r}. "
                                 f"Received: series_id={series_id!r}.")
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(
                path, series_id or ids[0]))
            image = reader.Execute()
        else:
            image = sitk.ReadImage(path)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[-300:]
        raise ValueError(f"Cannot read volume {path!r} with SimpleITK: {reason}") from exc
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"Volume {path!r} must be a 3D scalar image. Received: "
                         f"{image.GetDimension()}D image of size {image.GetSize()} with "
                         f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel.")
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"Volume {path!r} holds {int((~np.isfinite(array)).sum())} NaN or "
                         f"infinite voxels.")
    return Volume(array, image.GetSpacing(), image.GetOrigin(), image.GetDirection(), path)


def write_volume(volume_or_array, path, *, spacing=None, origin=None, direction=None,
                 like: Optional[Volume] = None, compress: bool = False) -> str:
    """Write a volume atomically; the extension picks the format (`.mhd`, `.nii.gz`, ...).

    Files are written into a temporary folder beside `path` under their final names (so a
    `.mhd` header names its final `.raw`), then renamed into place, the data file(s) before
    the header: a reader never sees a half-written volume.

    Args:
        volume_or_array: `Volume`, or an `(x, y, z)` array (bool is written as uint8).
        path: destination file.
        spacing, origin, direction: geometry; default to `like`'s, the volume's, or identity/1 mm.
        like: a `Volume` whose geometry to copy.
        compress: ask SimpleITK to compress (`.mhd` then writes a `.zraw`).

    Returns:
        `path`.
    """
    # On first use: this module is on `models-genesis --help`'s import path (SimpleITK: 0.5 s).
    import SimpleITK as sitk

    path = os.fspath(path)
    base = volume_or_array if isinstance(volume_or_array, Volume) else like
    array = np.asarray(volume_or_array.array if isinstance(volume_or_array, Volume)
                       else volume_or_array)
    if array.ndim != 3:
        raise ValueError(f"Volume to write to {path!r} must be 3D (x, y, z). "
                         f"Received: shape={array.shape}.")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    volume = Volume(array,
                    spacing if spacing is not None else (base.spacing if base else (1.0,) * 3),
                    origin if origin is not None else (base.origin if base else (0.0,) * 3),
                    direction if direction is not None else
                    (base.direction if base else IDENTITY_DIRECTION))
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".tmp-write-", dir=parent)
    try:
        name = os.path.basename(path)
        try:
            sitk.WriteImage(image, os.path.join(tmp_dir, name), compress)
        except RuntimeError as exc:
            raise ValueError(f"Cannot write volume {path!r} with SimpleITK (is the extension "
                             f"a format it writes?): {' '.join(str(exc).split())[-200:]}") from exc
        for other in sorted(set(os.listdir(tmp_dir)) - {name}):
            os.replace(os.path.join(tmp_dir, other), os.path.join(parent, other))
        os.replace(os.path.join(tmp_dir, name), path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def resample_volume(volume: Volume, spacing, *, order: int = 1) -> Volume:
    """Resample to a new voxel spacing (e.g. 1 mm isotropic for NCS, paper Sec. 3.2).

    Voxel (0, 0, 0) keeps its world position; the extent is kept (shape rounded).

    Args:
        volume: the `Volume`.
        spacing: new spacing in mm: a number (isotropic) or (x, y, z).
        order: spline order (0 nearest, for label masks: keeps the dtype; 1 linear: float32).

    Returns:
        A new `Volume` of shape `round(shape * old_spacing / spacing)`.
    """
    # On first use: this module is on `models-genesis --help`'s import path (scipy: 0.8 s).
    from scipy import ndimage

    new = np.asarray(_triple(spacing, "spacing"))
    if new.min() <= 0:
        raise ValueError(f"`spacing` must be positive. Received: spacing={spacing!r}.")
    if order not in range(6):
        raise ValueError(f"`order` must be an integer in 0..5. Received: order={order!r}.")
    old = np.asarray(volume.spacing)
    shape = tuple(max(1, int(round(n * o / s))) for n, o, s in zip(volume.shape, old, new))
    array = volume.array if order == 0 else volume.array.astype(np.float32, copy=False)
    out = ndimage.affine_transform(array, new / old, output_shape=shape, order=order,
                                   mode="nearest", prefilter=order > 1)
    return Volume(out, tuple(new), volume.origin, volume.direction, volume.path)


def volume_key(path) -> str:
    """The series id of a volume file: its name without the format extension(s)."""
    name = os.path.basename(os.fspath(path).rstrip(os.sep))
    for ext in (".nii.gz", ".mhd", ".mha", ".nii", ".nrrd", ".nhdr", ".gz"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def index_volumes(data_dir, pattern: str = "subset*/*.mhd") -> Dict[str, str]:
    """Map series ids (file names without extension) to paths under `data_dir`.

    Raises:
        FileNotFoundError: `data_dir` is missing or nothing matches `pattern`.
        ValueError: two files share a series id.
    """
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"Data folder not found: {data_dir!r}.")
    paths = sorted(glob.glob(os.path.join(data_dir, pattern)))
    if not paths:
        raise FileNotFoundError(f"No volumes matching {pattern!r} in {data_dir!r}.")
    index: Dict[str, str] = {}
    for p in paths:
        key = volume_key(p)
        if key in index:
            raise ValueError(f"Two volumes share the series id {key!r}: {index[key]!r}, {p!r}.")
        index[key] = p
    return index


def match_csv_to_volumes(csv_path, volumes: Dict[str, str],
                         columns: Sequence[str] = ("seriesuid", "coordX", "coordY", "coordZ")):
    """Read a LUNA16-style CSV (world mm) and keep the rows whose `seriesuid` has a volume.

    Rows without a volume are dropped, logged and counted (never silently).

    Args:
        csv_path: e.g. `annotations.csv` or `candidates.csv`.
        volumes: series id -> path, e.g. from `index_volumes`.
        columns: columns that must be present.

    Returns:
        `(table, report)`: a pandas DataFrame with an added `path` column, and a dict with
        `rows`, `kept`, `skipped` ({reason: count}) and `missing_seriesuids` (sorted).
    """
    # On first use: this module is on `models-genesis --help`'s import path (pandas: 0.7 s).
    import pandas as pd

    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"CSV file not found: {csv_path!r}.")
    table = pd.read_csv(csv_path, dtype={"seriesuid": str})
    missing_cols = [c for c in columns if c not in table.columns]
    if missing_cols:
        raise ValueError(f"CSV {csv_path!r} must have columns {list(columns)}; missing "
                         f"{missing_cols}. Received columns: {list(table.columns)}.")
    has_volume = table["seriesuid"].isin(list(volumes))
    missing = sorted(set(table.loc[~has_volume, "seriesuid"]))
    n_skip = int((~has_volume).sum())
    if n_skip:
        log.warning("%s: skipped %d row(s) of %d series without a volume (e.g. %s).",
                    csv_path, n_skip, len(missing), missing[:3])
    table = table.loc[has_volume].reset_index(drop=True)
    table["path"] = table["seriesuid"].map(volumes)
    report = {"rows": int(has_volume.size), "kept": int(len(table)),
              "skipped": {"no volume for seriesuid": n_skip} if n_skip else {},
              "missing_seriesuids": missing}
    return table, report
