"""Volumes: read any SimpleITK format, world <-> voxel geometry, resampling, indexing.

Intensities are in `data.io.intensity`.

Arrays are in (x, y, z) order: SimpleITK's (z, y, x) array transposed, as the release does for
LUNA16 (docs/release_reference.md, 'Pre-training data'), so `array[i, j, k]` is the voxel at ITK
index (i, j, k). World coordinates are millimetres, as in LUNA16's `annotations.csv` /
`candidates.csv`:
`world = origin + direction @ (spacing * ijk)`.

Geometry is SimpleITK's: `read_volume` reorients every volume to `STANDARD_ORIENTATION` ("LPS",
the identity direction: LUNA16 scans are read as stored) with `sitk.DICOMOrient`,
`to_geometry_of` puts a result back on the input's own grid, `resample_volume` resamples images
(linear) and `resample_mask` label masks (per-label linear, > 0.5, as nnU-Net).
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
STANDARD_ORIENTATION = "LPS"  # DICOM code of the identity direction (x Left, y Posterior, z Sup.)
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


def _image_to_volume(image, path: Optional[str] = None) -> Volume:
    """A SimpleITK image as a `Volume` (the array transposed to (x, y, z))."""
    import SimpleITK as sitk  # on first use, as everywhere in this module

    # One copy, from a view of the image's buffer (GetArrayFromImage would copy twice).
    array = np.array(sitk.GetArrayViewFromImage(image).transpose(2, 1, 0), order="C", copy=True)
    return Volume(array, image.GetSpacing(), image.GetOrigin(), image.GetDirection(), path)


def _volume_to_image(volume: Volume):
    """A `Volume` as a SimpleITK image with its geometry (bool is stored as uint8)."""
    import SimpleITK as sitk  # on first use, as everywhere in this module

    array = volume.array.astype(np.uint8) if volume.array.dtype == bool else volume.array
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction)
    return image


def orientation_of(direction) -> str:
    """The DICOM orientation code of direction cosines (row-major 3x3), e.g. `"LPS"` for the
    identity: axis x points to the patient's Left, y to Posterior, z to Superior. An oblique
    direction gets the code of the closest axes."""
    import SimpleITK as sitk  # on first use, as everywhere in this module

    direction = tuple(float(v) for v in np.asarray(direction, dtype=float).reshape(-1))
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(direction)


def _orient_image(image, orientation: Optional[str]):
    """`image` with its axes permuted and flipped to `orientation` (`sitk.DICOMOrient`); the
    image itself when it already is (no copy) or when `orientation` is None."""
    import SimpleITK as sitk  # on first use, as everywhere in this module

    if orientation is None or orientation_of(image.GetDirection()) == orientation:
        return image
    return sitk.DICOMOrient(image, orientation)


def reorient_volume(volume: Volume, orientation: Optional[str] = STANDARD_ORIENTATION) -> Volume:
    """The same voxels with the axes permuted and flipped so that the direction is the closest
    to `orientation` (`sitk.DICOMOrient`; no resampling, world positions unchanged).

    Args:
        volume: the `Volume`.
        orientation: DICOM code such as `"LPS"` (the identity direction, LUNA16's) or `"RAS"`;
            None returns `volume` unchanged.

    Returns:
        `volume` itself when it already has that orientation (arrays bit-identical, no copy),
        else a new `Volume`.
    """
    if orientation is None or orientation_of(volume.direction) == orientation:
        return volume
    return _image_to_volume(_orient_image(_volume_to_image(volume), orientation), volume.path)


def to_geometry_of(volume: Volume, reference: Volume) -> Volume:
    """Put a volume computed on `reorient_volume(reference)`'s grid back on `reference`'s grid.

    The axes are permuted and flipped back (`sitk.DICOMOrient` to the reference's code) and the
    result carries the reference's exact size, spacing, origin and direction, e.g. a predicted
    mask written in the input scan's original geometry.

    Raises:
        ValueError: `volume` is not on a permutation of the reference's grid.
    """
    back = reorient_volume(volume, orientation_of(reference.direction))
    if back.shape != reference.shape or not np.allclose(back.spacing, reference.spacing) or \
            not np.allclose(back.origin, reference.origin, atol=1e-4) or \
            not np.allclose(back.direction, reference.direction, atol=1e-6):
        raise ValueError(f"`volume` (shape {volume.shape}, spacing {volume.spacing}) is not on a "
                         f"reoriented grid of `reference` (shape {reference.shape}, spacing "
                         f"{reference.spacing}, origin {reference.origin}).")
    return Volume(back.array, reference.spacing, reference.origin, reference.direction,
                  reference.path)


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


def read_volume(path, *, series_id: Optional[str] = None,
                orientation: Optional[str] = STANDARD_ORIENTATION) -> Volume:
    """Read a 3D volume in any format SimpleITK reads, or a DICOM series folder.

    Every volume is reoriented to one standard orientation (`reorient_volume`): `"LPS"`, the
    identity direction, so scans stored with identity direction (LUNA16, the phantoms) are read
    bit-identical to their stored arrays, and others (e.g. NIfTI files in RAS, oblique
    acquisitions) have their axes permuted and flipped to it, no resampling.

    Args:
        path: `.mhd` (+ `.raw`), `.mha`, `.nii`, `.nii.gz`, `.nrrd`, ... or a folder of DICOM files.
        series_id: for a DICOM folder holding several series, the SeriesInstanceUID to read.
        orientation: the orientation code to read into; None reads the axes as stored (e.g. to
            write a result back in the input's original geometry, `to_geometry_of`).

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
        image = _read_dicom_folder(path, series_id) if os.path.isdir(path) else sitk.ReadImage(path)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())[-300:]
        raise ValueError(f"Cannot read volume {path!r} with SimpleITK: {reason}") from exc
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"Volume {path!r} must be a 3D scalar image. Received: "
                         f"{image.GetDimension()}D image of size {image.GetSize()} with "
                         f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel.")
    volume = _image_to_volume(_orient_image(image, orientation), path)
    if volume.array.dtype.kind == "f" and not np.isfinite(volume.array).all():
        raise ValueError(f"Volume {path!r} holds {int((~np.isfinite(volume.array)).sum())} NaN "
                         f"or infinite voxels.")
    return volume


def _read_dicom_folder(path: str, series_id: Optional[str]):
    """The SimpleITK image of the one DICOM series in folder `path`, or of `series_id`."""
    import SimpleITK as sitk

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
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(path, series_id or ids[0]))
    return reader.Execute()


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
    volume = Volume(array,
                    spacing if spacing is not None else (base.spacing if base else (1.0,) * 3),
                    origin if origin is not None else (base.origin if base else (0.0,) * 3),
                    direction if direction is not None else
                    (base.direction if base else IDENTITY_DIRECTION))
    image = _volume_to_image(volume)
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


def _resampled_shape(volume: Volume, spacing) -> Tuple[np.ndarray, Tuple[int, int, int]]:
    new = np.asarray(_triple(spacing, "spacing"))
    if new.min() <= 0:
        raise ValueError(f"`spacing` must be positive. Received: spacing={spacing!r}.")
    old = np.asarray(volume.spacing)
    return new, tuple(max(1, int(round(n * o / s))) for n, o, s in zip(volume.shape, old, new))


def _resample_image(image, new_spacing, shape, interpolator, pixel_type=None, origin=None):
    """Resample `image` onto the grid of `shape` voxels of `new_spacing` starting at `origin`
    (default: the image's), with the image's direction."""
    import SimpleITK as sitk  # on first use, as everywhere in this module

    origin = image.GetOrigin() if origin is None else tuple(float(v) for v in origin)
    # The last output voxel centre may lie up to one input voxel beyond the last input voxel
    # centre: replicate the edge voxel there (as scipy's mode="nearest"), so that an image is
    # still interpolated in-plane next to its last slice.
    last = np.asarray(origin) + np.asarray(image.GetDirection()).reshape(3, 3) @ (
        np.asarray(new_spacing) * (np.asarray(shape) - 1))
    reach = np.asarray(image.TransformPhysicalPointToContinuousIndex(tuple(last.tolist())))
    pad = (reach > np.asarray(image.GetSize()) - 1 + 1e-6).astype(int)
    if pad.any():
        image = sitk.ZeroFluxNeumannPad(image, [0, 0, 0], [int(v) for v in pad])
    f = sitk.ResampleImageFilter()
    f.SetOutputSpacing(tuple(float(v) for v in new_spacing))
    f.SetSize([int(v) for v in shape])
    f.SetOutputOrigin(origin)
    f.SetOutputDirection(image.GetDirection())
    f.SetInterpolator(interpolator)
    f.SetUseNearestNeighborExtrapolator(True)  # the edge value beyond the last voxel centre
    if pixel_type is not None:
        f.SetOutputPixelType(pixel_type)
    return f.Execute(image)


def resample_volume(volume: Volume, spacing, *, order: int = 1) -> Volume:
    """Resample to a new voxel spacing with SimpleITK (e.g. 1 mm isotropic for NCS, Sec. 3.2).

    Voxel (0, 0, 0) keeps its world position and the direction is kept; the extent is kept
    (shape rounded). Points beyond the last voxel centre take the edge value.

    Args:
        volume: the `Volume`.
        spacing: new spacing in mm: a number (isotropic) or (x, y, z).
        order: 1 linear (float32; images), 0 nearest (keeps the dtype), 2-5 B-spline of that
            order (float32). Label masks: `resample_mask`.

    Returns:
        A new `Volume` of shape `round(shape * old_spacing / spacing)`.
    """
    import SimpleITK as sitk  # on first use, as everywhere in this module

    if order not in range(6):
        raise ValueError(f"`order` must be an integer in 0..5. Received: order={order!r}.")
    new, shape = _resampled_shape(volume, spacing)
    if order == 0:
        interpolator, pixel_type = sitk.sitkNearestNeighbor, None
    else:
        interpolator = sitk.sitkLinear if order == 1 else \
            getattr(sitk, f"sitkBSpline{order}", sitk.sitkBSpline)
        pixel_type = sitk.sitkFloat32
    source = volume if order == 0 or volume.array.dtype != bool else \
        Volume(volume.array.astype(np.float32), volume.spacing, volume.origin, volume.direction)
    out = _resample_image(_volume_to_image(source), new, shape, interpolator, pixel_type)
    result = _image_to_volume(out, volume.path)
    array = result.array.astype(bool) if order == 0 and volume.array.dtype == bool else result.array
    return Volume(array, tuple(new), volume.origin, volume.direction, volume.path)


def resample_mask(volume: Volume, spacing) -> Volume:
    """Resample a label mask the way nnU-Net does: each label's indicator linearly, a voxel gets
    the label whose interpolated indicator is above 0.5 (background otherwise).

    A strict `> 0.5`: at an exact tie (a new voxel half-way between a labelled voxel and
    background, e.g. when the spacing halves) the voxel stays background, so a mask does not
    grow by a whole slice. As the indicators sum to 1, at most one label is above 0.5.

    Args:
        volume: integer (or bool) labels, 0 the background.
        spacing: new spacing in mm: a number or (x, y, z).

    Returns:
        A new `Volume` of the same dtype and of the shape `resample_volume` gives.
    """
    import SimpleITK as sitk  # on first use, as everywhere in this module

    new, shape = _resampled_shape(volume, spacing)
    array = np.asarray(volume.array)
    out = np.zeros(shape, array.dtype)
    ratio = np.asarray(volume.spacing) / new  # output voxels per input voxel
    n = np.asarray(array.shape)
    for label in np.unique(array):
        if label == 0:
            continue
        # Only the label's bounding box (one voxel of margin) and the output voxels over it.
        where = np.argwhere(array == label)
        lo = np.maximum(where.min(axis=0) - 1, 0)
        hi = np.minimum(where.max(axis=0) + 1, n - 1)
        out_lo = np.ceil(lo * ratio - 1e-9).astype(int)
        out_hi = np.where(hi < n - 1, np.floor(hi * ratio + 1e-9).astype(int),
                          np.asarray(shape) - 1)
        box = tuple(slice(a, b + 1) for a, b in zip(lo, hi))
        indicator = Volume((array[box] == label).astype(np.float32), volume.spacing,
                           volume.voxel_to_world(lo), volume.direction)
        size = out_hi - out_lo + 1
        origin = volume.voxel_to_world(out_lo / ratio)
        resampled = _resample_image(_volume_to_image(indicator), new, size, sitk.sitkLinear,
                                    sitk.sitkFloat32, origin=origin)
        target = out[tuple(slice(a, b + 1) for a, b in zip(out_lo, out_hi))]
        target[sitk.GetArrayViewFromImage(resampled).transpose(2, 1, 0) > 0.5] = label
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
