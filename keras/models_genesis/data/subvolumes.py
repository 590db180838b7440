"""Sub-volume ("cube") extraction: the proxy-task data of Models Genesis (paper Sec. 3.1).

Random `(rows, cols, deps)` crops are drawn away from the scan borders and kept unless they hold
too much tissue (REFERENCE 3). The release's filter, for each voxel of the crop, looks at the
voxel and the next `lookahead - 1` slices: the first slice `k` whose intensity is at least the
threshold (-150 HU) gives the weight `1 - k / (lookahead - 1)` (1, 0.5, 0 for 3 slices; 0 when
none is); a crop whose weights sum to more than `tissue_fraction` of its voxels is rejected.

The weights depend only on the volume, not on the crop, so they are computed with array
operations: per crop for the first few candidates, and, when many candidates are needed, once
for the region all candidates cover, after which each crop's weight sum is a box sum of a 3D
summed-area table (O(1) per crop). Both give the release's decisions exactly.

Two checks the release does not make, so that nothing silently wrong reaches pre-training: a
crop of one constant value after clipping (e.g. all air, an empty scan) has nothing to restore
and is rejected like a crop with too much tissue; and `extract_cubes` skips, with the reason in
its report, a scan whose voxel spacing is implausible for CT (outside `PLAUSIBLE_SPACING_MM`, or
slices more than `MAX_ANISOTROPY` times thicker than the pixels).

MR (`ExtractionConfig(modality="mr")`) has no Hounsfield units, so neither the window nor the
-150 HU threshold means anything there. Each MR scan is first scaled to [0, 1] by its own 0.5th
and 99.5th intensity percentiles (`MR_PERCENTILES`, clipped), and the filter is turned around:
a voxel is foreground when its scaled intensity is at least `foreground_threshold` (0.1: above
the dark background of air and noise), and a crop is kept when at least `min_foreground` (0.5)
of its voxels are foreground, i.e. when it holds mostly anatomy rather than background.

`extract_cubes` reads the LUNA16 layout (`subsetK/*.mhd`, one cube file per subset);
`extract_cubes_from_folder` reads any folder of scans (`find_scans`: NIfTI, MetaImage, NRRD
files and DICOM series folders, recursively) and writes one `train` and one `val` cube file.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import fnmatch
import glob
import logging
import multiprocessing
import os
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm.auto import tqdm

from models_genesis.atomic import write_json
from models_genesis.data.cube_files import cube_file_name, save_cubes
from models_genesis.data.dicom import read_dicom_series
from models_genesis.data.volumes import (Volume, normalize_intensity, percentile_window,
                                         read_volume, reorient_volume, scale_to_unit, volume_key)
from models_genesis.outputs import check_output_dir, refuse_to_replace, remove_outputs

log = logging.getLogger(__name__)


# Voxel spacings (mm) accepted by `extract_cubes`: clinical CT is about 0.3-1 mm in-plane and
# 0.5-5 mm between slices.
PLAUSIBLE_SPACING_MM = (0.2, 10.0)
MAX_ANISOTROPY = 20.0

# Measured cost of the summed-area table per region voxel, relative to the per-crop path per
# crop voxel (about 15x on one core); used to pick the cheaper path.
_TABLE_COST = 10

EXTRACTION_MODALITIES = ("ct", "mr")
MR_PERCENTILES = (0.5, 99.5)
SCAN_EXTENSIONS = (".nii.gz", ".nii", ".mhd", ".mha", ".nrrd")
# Files beside scans that are neither a scan nor a DICOM slice.
_NOT_DICOM = (".raw", ".zraw", ".json", ".csv", ".txt", ".md", ".xml", ".npy", ".png", ".jpg",
              ".gz", ".zip", ".py", ".ipynb", ".pkl", ".h5")


class ScanTooSmallError(ValueError):
    """The scan is smaller than a crop plus its borders (the release skips such scans)."""


@dataclass(frozen=True)
class ExtractionConfig:
    """Parameters of cube extraction (release defaults, REFERENCE 3).

    Attributes:
        cube_shape: (rows, cols, deps) of a cube, in (x, y, z) voxels.
        scale: cubes kept per scan.
        border_xy: voxels kept free at each in-plane border.
        border_z: slices kept free at each end in z.
        hu_threshold: tissue threshold in HU; None turns the tissue filter off (e.g. for MRI).
        lookahead: slices examined per voxel by the filter (>= 2).
        tissue_fraction: reject a crop whose weight sum exceeds this fraction of its voxels.
        max_tries_factor: at most `max_tries_factor * scale` candidate crops per scan.
        intensity_range: window clipped and scaled to [0, 1] (CT: -1000..1000 HU).
        dtype: storage dtype of the cube files ("float16" halves their size).
        modality: "ct" (the release: HU window and tissue filter) or "mr" (per-scan percentile
            scaling, foreground filter; `intensity_range`, `hu_threshold`, `lookahead` and
            `tissue_fraction` are then unused).
        foreground_threshold: MR: a voxel scaled to [0, 1] is foreground from this value on.
        min_foreground: MR: keep a crop when at least this fraction of it is foreground
            (0 turns the MR filter off).
    """

    cube_shape: Tuple[int, int, int] = (64, 64, 32)
    scale: int = 32
    border_xy: int = 100
    border_z: int = 30
    hu_threshold: Optional[float] = -150.0
    lookahead: int = 3
    tissue_fraction: float = 0.15
    max_tries_factor: int = 50
    intensity_range: Tuple[float, float] = (-1000.0, 1000.0)
    dtype: str = "float32"
    modality: str = "ct"
    foreground_threshold: float = 0.1
    min_foreground: float = 0.5

    def __post_init__(self):
        shape = tuple(int(v) for v in np.asarray(self.cube_shape).reshape(-1))
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"`cube_shape` must be 3 positive integers. "
                             f"Received: cube_shape={self.cube_shape!r}.")
        object.__setattr__(self, "cube_shape", shape)
        object.__setattr__(self, "intensity_range", tuple(float(v) for v in self.intensity_range))
        checks = [
            ("scale", self.scale >= 1, "an integer >= 1"),
            ("border_xy", self.border_xy >= 0, "an integer >= 0"),
            ("border_z", self.border_z >= 0, "an integer >= 0"),
            ("lookahead", self.lookahead >= 2, "an integer >= 2"),
            ("tissue_fraction", 0.0 <= self.tissue_fraction <= 1.0, "in [0, 1]"),
            ("max_tries_factor", self.max_tries_factor >= 1, "an integer >= 1"),
            ("intensity_range", len(self.intensity_range) == 2
             and self.intensity_range[0] < self.intensity_range[1], "(lo, hi) with lo < hi"),
            ("dtype", self.dtype in ("float16", "float32", "float64"),
             "'float16', 'float32' or 'float64'"),
            ("hu_threshold", self.hu_threshold is None or np.isfinite(self.hu_threshold),
             "a finite number or None"),
            ("modality", self.modality in EXTRACTION_MODALITIES,
             " or ".join(repr(m) for m in EXTRACTION_MODALITIES)),
            ("foreground_threshold", 0.0 <= self.foreground_threshold <= 1.0, "in [0, 1]"),
            ("min_foreground", 0.0 <= self.min_foreground <= 1.0, "in [0, 1]"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"`{name}` must be {expected}. "
                                 f"Received: {name}={getattr(self, name)!r}.")

    @classmethod
    def demo(cls, **overrides) -> "ExtractionConfig":
        """Preset for the chest phantoms: 32x32x16 cubes, borders scaled to the phantom size."""
        values = dict(cube_shape=(32, 32, 16), scale=32, border_xy=24, border_z=8)
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def filter_config(self) -> "ExtractionConfig":
        """The config the filter runs with on the array `extract_cubes_from_volume` crops.

        CT: itself. MR: the scan is already in [0, 1], so the window is (0, 1), the threshold is
        `foreground_threshold` and one slice is looked at (`lookahead=2`: weight 1 for a
        foreground voxel, 0 otherwise), which makes `tissue_fractions` the foreground fraction.
        """
        if self.modality == "ct":
            return self
        return dataclasses.replace(self, intensity_range=(0.0, 1.0), lookahead=2,
                                   hu_threshold=self.foreground_threshold
                                   if self.min_foreground > 0 else None)

    def keeps(self, fractions: np.ndarray) -> np.ndarray:
        """Which crops pass the filter, from `tissue_fractions` of `filter_config()`."""
        if self.modality == "ct":
            return fractions <= self.tissue_fraction
        return fractions >= self.min_foreground

    @property
    def crop_depth(self) -> int:
        """Slices a crop needs for its filter weights (`deps + lookahead - 2`)."""
        return self.cube_shape[2] + self.lookahead - 2


def cube_start_bounds(shape: Sequence[int], config: ExtractionConfig):
    """Inclusive (low, high) start corners of a crop, as in the release.

    Raises:
        ScanTooSmallError: the scan cannot hold a crop plus its borders.
    """
    r, c, d = config.cube_shape
    b, bz, L = config.border_xy, config.border_z, config.lookahead
    low = np.array([b, b, bz])
    high = np.array([shape[0] - r - 1 - b, shape[1] - c - 1 - b, shape[2] - d - L - 1 - bz])
    if np.any(high < low):
        raise ScanTooSmallError(
            f"Scan of shape {tuple(shape)} is too small for {config.cube_shape} crops with "
            f"borders {b} (x, y) and {bz} (z) and a {L}-slice lookahead; needs at least "
            f"{(r + 1 + 2 * b, c + 1 + 2 * b, d + L + 1 + 2 * bz)}.")
    return low, high


def sample_cube_starts(shape: Sequence[int], *, rng: np.random.Generator,
                       config: ExtractionConfig, n: Optional[int] = None) -> np.ndarray:
    """Draw `n` (default `max_tries_factor * scale`) crop corners `(n, 3)` uniformly."""
    low, high = cube_start_bounds(shape, config)
    n = config.max_tries_factor * config.scale if n is None else int(n)
    return rng.integers(low, high + 1, size=(n, 3))


def _threshold01(config: ExtractionConfig) -> np.float32:
    return normalize_intensity(np.float32(config.hu_threshold), config.intensity_range)[()]


def _integer_threshold(config: ExtractionConfig, dtype) -> int:
    """Smallest integer whose normalised value reaches the normalised threshold (exact)."""
    thr = _threshold01(config)
    info = np.iinfo(dtype)
    lo, hi = int(info.min), int(info.max) + 1  # answer in [lo, hi]; hi means "none"
    while lo < hi:
        mid = (lo + hi) // 2
        if normalize_intensity(np.float32(mid), config.intensity_range)[()] >= thr:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _mask_function(config: ExtractionConfig, dtype):
    """Voxels whose normalised intensity reaches the normalised threshold (as the release)."""
    if np.dtype(dtype).kind in "iu":  # integers (HU): one exact integer threshold, no scaling
        threshold = _integer_threshold(config, dtype)
        return lambda block: block >= threshold
    threshold = _threshold01(config)
    return lambda block: normalize_intensity(block, config.intensity_range) >= threshold


def _weight_units(mask: np.ndarray, lookahead: int) -> np.ndarray:
    """Filter weights times `lookahead - 1` as uint8, z last; the last slices see fewer slices."""
    units = np.zeros(mask.shape, np.uint8)
    depth = mask.shape[-1]
    for k in range(lookahead - 2, -1, -1):  # the first tissue slice wins: write k = 0 last
        units[..., : depth - k] = np.where(mask[..., k:], np.uint8(lookahead - 1 - k),
                                           units[..., : depth - k])
    return units


def tissue_weights(x01: np.ndarray, *, threshold: float, lookahead: int = 3) -> np.ndarray:
    """Per-voxel filter weights of a `[0, 1]` volume `(x, y, z)`: float32 in {0, 1/(L-1), ..., 1}.

    Slices beyond the end count as below the threshold.
    """
    first = (lookahead - 1) - _weight_units(np.asarray(x01) >= threshold, lookahead)
    return np.float32(1.0) - first.astype(np.float32) / np.float32(lookahead - 1)  # as the release


def _sums_by_crops(array, starts, config):
    # A voxel's weight units count the j in 0..L-2 with tissue in one of its slices 0..j.
    r, c, d = config.cube_shape
    tissue = _mask_function(config, array.dtype)
    sums = np.zeros(len(starts), np.int64)
    for i, (x, y, z) in enumerate(starts):
        mask = tissue(array[x:x + r, y:y + c, z:z + config.crop_depth])
        seen = mask[..., :d].copy()
        total = np.count_nonzero(seen)
        for k in range(1, config.lookahead - 1):
            seen |= mask[..., k:k + d]
            total += np.count_nonzero(seen)
        sums[i] = total
    return sums


def _sums_by_table(array, starts, config):
    box = np.array(config.cube_shape)
    lo = starts.min(axis=0)
    hi = starts.max(axis=0) + box + [0, 0, config.lookahead - 2]
    tissue = _mask_function(config, array.dtype)
    units = _weight_units(tissue(array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]), config.lookahead)
    total = units.size * (config.lookahead - 1)
    table = np.zeros(np.array(units.shape) + 1, np.int64 if total >= 2 ** 31 else np.int32)
    np.cumsum(units, axis=0, dtype=table.dtype, out=table[1:, 1:, 1:])
    np.cumsum(table[1:, 1:, 1:], axis=1, out=table[1:, 1:, 1:])
    np.cumsum(table[1:, 1:, 1:], axis=2, out=table[1:, 1:, 1:])
    a, b = (starts - lo).T, (starts - lo + box).T
    s = np.zeros(len(starts), np.int64)
    for corner in range(8):  # inclusion-exclusion over the box's 8 corners
        pick = [(corner >> axis) & 1 for axis in range(3)]
        idx = tuple(np.where(pick[axis], b[axis], a[axis]) for axis in range(3))
        s += (-1) ** (3 - sum(pick)) * table[idx].astype(np.int64)
    return s


def tissue_fractions(array_hu, starts, *, config: ExtractionConfig, method: str = "auto"):
    """Weight sum of each crop divided by its voxel count (reject when > `tissue_fraction`).

    Args:
        array_hu: volume `(x, y, z)` in HU (or the modality's units).
        starts: crop corners `(n, 3)`.
        config: the extraction parameters.
        method: "crops" (per-crop arrays), "table" (summed-area table) or "auto" (cheaper one).

    Returns:
        float64 `(n,)` in [0, 1].
    """
    array_hu = np.asarray(array_hu)
    starts = np.asarray(starts, dtype=np.int64).reshape(-1, 3)
    if config.hu_threshold is None or len(starts) == 0:
        return np.zeros(len(starts))
    if method not in ("auto", "crops", "table"):
        raise ValueError(f"`method` must be 'auto', 'crops' or 'table'. Received: {method!r}.")
    if method == "auto":
        extent = starts.max(axis=0) - starts.min(axis=0) + config.cube_shape
        crop_cost = len(starts) * np.prod(config.cube_shape[:2]) * config.crop_depth
        method = "crops" if crop_cost < _TABLE_COST * np.prod(extent) else "table"
    fn = _sums_by_crops if method == "crops" else _sums_by_table
    sums = fn(array_hu, starts, config)
    return sums / (config.lookahead - 1) / np.prod(config.cube_shape)


def _has_contrast(array, start, config) -> bool:
    """False for a crop of one value after clipping to the intensity window (e.g. all air)."""
    (x, y, z), (r, c, d) = start, config.cube_shape
    block = array[x:x + r, y:y + c, z:z + d]
    lo, hi = config.intensity_range
    return min(max(float(block.max()), lo), hi) > min(max(float(block.min()), lo), hi)


def _accepted_starts(array, starts, config, keeps=None):
    """The first `scale` accepted corners, how many candidates were examined to find them, and
    how many passed the tissue filter but were rejected as constant (`_has_contrast`).

    Candidates are examined in order, in chunks sized from the acceptance rate so far; a chunk
    uses per-crop arrays, or the summed-area table when that is cheaper (then for all the rest).
    `keeps` maps fractions to the crops kept (default: at most `tissue_fraction`, the release).
    """
    keeps = keeps or (lambda fractions: fractions <= config.tissue_fraction)
    kept, done, n_flat = [], 0, 0
    crop_cost = np.prod(config.cube_shape[:2]) * config.crop_depth
    while done < len(starts) and len(kept) < config.scale:
        rest = starts[done:]
        missing = config.scale - len(kept)
        rate = len(kept) / done if done else 1.0
        want = len(rest) if rate == 0 else min(len(rest), int(np.ceil(1.5 * missing / rate)))
        extent = rest.max(axis=0) - rest.min(axis=0) + config.cube_shape
        method = "table" if want * crop_cost >= _TABLE_COST * np.prod(extent) else "crops"
        part = rest if method == "table" else rest[:want]
        fractions = tissue_fractions(array, part, config=config, method=method)
        good = []
        for i in np.flatnonzero(keeps(fractions)):
            if len(good) == missing:
                break
            if _has_contrast(array, part[i], config):
                good.append(i)
            else:
                n_flat += 1
        kept.extend(part[good])
        done += good[-1] + 1 if len(good) == missing else len(part)
    return np.array(kept, dtype=np.int64).reshape(-1, 3), done, n_flat


def extract_cubes_from_volume(volume_or_array_hu, *, rng: np.random.Generator,
                              config: Optional[ExtractionConfig] = None,
                              return_info: bool = False):
    """Extract up to `scale` cubes from one scan (paper Sec. 3.1; REFERENCE 3).

    Args:
        volume_or_array_hu: `Volume` or array `(x, y, z)` in HU (MR: in the scanner's units).
        rng: the random generator (seed it per scan).
        config: `ExtractionConfig`; defaults to the release's.
        return_info: also return `{"n_tries": candidates examined, "starts": (n, 3) corners,
            "n_flat": candidates rejected as one constant value}`.

    Returns:
        float32 `(n, rows, cols, deps)` in [0, 1], `n <= scale` (0 when no crop passes).

    Raises:
        ScanTooSmallError: the scan cannot hold a crop plus its borders.
        ValueError: the array is not 3D or holds NaN/inf.
    """
    config = config or ExtractionConfig()
    array = np.asarray(volume_or_array_hu.array if isinstance(volume_or_array_hu, Volume)
                       else volume_or_array_hu)
    if array.ndim != 3:
        raise ValueError(f"The scan must be a 3D array (x, y, z). Received: shape={array.shape}.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("The scan holds NaN or infinite values.")
    starts = sample_cube_starts(array.shape, rng=rng, config=config)
    if config.modality == "mr":
        array = scale_to_unit(array, percentile_window(array, MR_PERCENTILES))
    filt = config.filter_config()
    kept, n_tries, n_flat = _accepted_starts(array, starts, filt, keeps=config.keeps)
    r, c, d = config.cube_shape
    cubes = np.zeros((len(kept), r, c, d), np.float32)
    for i, (x, y, z) in enumerate(kept):
        cubes[i] = normalize_intensity(array[x:x + r, y:y + c, z:z + d], filt.intensity_range)
    info = {"n_tries": int(n_tries), "starts": kept, "n_flat": int(n_flat)}
    return (cubes, info) if return_info else cubes


def implausible_spacing(spacing) -> Optional[str]:
    """Why a voxel spacing (mm, x y z) is implausible for CT, or None when it is plausible."""
    spacing = np.asarray(spacing, dtype=float)
    lo, hi = PLAUSIBLE_SPACING_MM
    if not np.all((spacing >= lo) & (spacing <= hi)):
        return (f"spacing {tuple(spacing.round(4).tolist())} mm is outside [{lo}, {hi}] mm: a "
                "wrong header (e.g. cm or microns)?")
    if spacing.max() / spacing.min() > MAX_ANISOTROPY:
        return (f"spacing {tuple(spacing.round(4).tolist())} mm has slices "
                f"{spacing.max() / spacing.min():.0f}x thicker than pixels (at most "
                f"{MAX_ANISOTROPY:g}x accepted)")
    return None


def _subset_key(subset) -> int:
    text = str(subset)
    return int(text) if text.isdigit() else zlib.crc32(text.encode())


def _extract_scan(task):
    """Worker: read one scan and extract its cubes; skips are returned with their reason."""
    subset, index, path, series_id, config, seed = task
    record = {"subset": str(subset), "index": index, "path": path,
              "seriesuid": series_id or volume_key(path)}
    if config.modality != "ct":
        record["modality"] = config.modality
    rng = np.random.default_rng([int(seed), _subset_key(subset), int(index)])
    try:
        if os.path.isdir(path):  # a DICOM series: uneven slice gaps resampled, with a note
            series = read_dicom_series(path, modality=None, series_uid=series_id)
            volume = reorient_volume(series.volume)
            if series.note:
                record["note"] = series.note
        else:
            volume = read_volume(path)
        problem = implausible_spacing(volume.spacing)
        if problem:
            return {**record, "status": "skipped", "reason": "implausible spacing",
                    "detail": problem}, None
        cubes, info = extract_cubes_from_volume(volume, rng=rng, config=config, return_info=True)
    except ScanTooSmallError as exc:
        return {**record, "status": "skipped", "reason": "too small", "detail": str(exc)}, None
    except (ValueError, FileNotFoundError) as exc:
        return {**record, "status": "skipped", "reason": "unreadable", "detail": str(exc)}, None
    if len(cubes) == 0:
        flat = (f"; {info['n_flat']} had one constant value (e.g. all air)"
                if info["n_flat"] else "")
        return {**record, "status": "skipped", "reason": "no cube passed the tissue filter",
                "detail": f"0 of {info['n_tries']} candidates passed{flat}"}, None
    record.update(status="ok", n_cubes=len(cubes), n_tries=info["n_tries"],
                  shape=list(volume.shape), spacing=list(volume.spacing))
    return record, cubes.astype(config.dtype)


def _refuse_existing(out_dir, subsets, config, overwrite) -> None:
    check_output_dir(out_dir, name="out_dir")
    if not overwrite:
        names = [cube_file_name(config.scale, config.cube_shape, s) for s in subsets]
        refuse_to_replace([os.path.join(out_dir, n[:-4] + ext) for n in names
                           for ext in (".npy", ".json")], where=out_dir, what="cube files")


def extract_cubes(data_dir, subsets: Sequence, out_dir, *, config: Optional[ExtractionConfig] = None,
                  seed: int = 0, workers: Optional[int] = None, pattern: str = "*.mhd",
                  subset_dir: str = "subset{}", progress: bool = True,
                  overwrite: bool = False) -> dict:
    """Extract the cubes of every scan in `data_dir/subset{K}/` and write one file per subset.

    Writes `out_dir/bat_{scale}_s_{r}x{c}x{d}_{subset}.npy` (`cube_files.save_cubes`, in
    `config.dtype`) and a JSON manifest beside it (same name, `.json`): sources, parameters,
    seed, counts and skipped scans with their reasons. Scan `i` of subset `K` is seeded with
    `(seed, K, i)`, so the output does not depend on `workers`.

    Args:
        data_dir: folder holding the subset folders (LUNA16 layout).
        subsets: subset names, e.g. `[0, 1, 2, 3, 4]`.
        out_dir: output folder (created).
        config: `ExtractionConfig` (default: the release's; `ExtractionConfig.demo()` for phantoms).
        seed: base seed.
        workers: processes (default: CPU count, at most 8); 0 or 1 runs in this process.
        pattern: file pattern of the scans in a subset folder.
        subset_dir: subset folder name, `{}` replaced by the subset.
        progress: show a tqdm bar.
        overwrite: replace cube files and manifests of the same names in `out_dir`.

    Returns:
        Summary dict: `files`, `n_cubes` and `n_scans` per subset, `n_skipped`,
        `skipped_by_reason`, `skipped` (path, reason, detail), `seed`, `config`.

    Raises:
        FileNotFoundError: a subset folder is missing or holds no scan matching `pattern`.
        FileExistsError: a cube file or manifest to write exists and `overwrite` is False.
        NotADirectoryError, PermissionError: `out_dir` is a file or not writable.
        All before any scan is read.
    """
    config = config or ExtractionConfig()
    data_dir, out_dir = os.fspath(data_dir), os.fspath(out_dir)
    subsets = [str(s) for s in subsets]
    if not subsets:
        raise ValueError("`subsets` must name at least one subset. Received: subsets=[].")
    _refuse_existing(out_dir, subsets, config, overwrite)
    groups = {}
    for subset in subsets:
        folder = os.path.join(data_dir, subset_dir.format(subset))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Subset folder not found: {folder!r} (data_dir={data_dir!r}).")
        paths = sorted(glob.glob(os.path.join(folder, pattern)))
        if not paths:
            raise FileNotFoundError(f"Subset {subset!r} is empty: no scan matching {pattern!r} "
                                    f"in {folder!r}.")
        groups[subset] = [(p, None, config) for p in paths]
    summary = _extract_groups(groups, out_dir, config=config, seed=seed, workers=workers,
                              progress=progress)
    return {"data_dir": data_dir, **summary}


def _extract_groups(groups: Dict[str, list], out_dir, *, config, seed, workers,
                    progress, manifest_extras: Optional[Dict[str, dict]] = None) -> dict:
    """Extract `{subset: [(path, series_id, config), ...]}`; write a cube file per subset.

    `manifest_extras[subset]` is added to that subset's manifest.
    """
    tasks = [(subset, i, path, series_id, scan_config, seed)
             for subset, scans in groups.items()
             for i, (path, series_id, scan_config) in enumerate(scans)]
    workers = min(os.cpu_count() or 1, 8) if workers is None else int(workers)
    results = {}
    bar = tqdm(total=len(tasks), desc="extract-cubes", unit="scan", disable=not progress)
    if workers <= 1:
        for task in tasks:
            results[task[:2]] = _extract_scan(task)
            bar.update()
    else:
        with cf.ProcessPoolExecutor(min(workers, len(tasks)),
                                    mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_extract_scan, t): t[:2] for t in tasks}
            for future in cf.as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
    bar.close()
    os.makedirs(out_dir, exist_ok=True)
    summary = {"out_dir": out_dir, "seed": int(seed),
               "config": config.to_dict(), "files": {}, "n_cubes": {}, "n_scans": {},
               "skipped": [], "n_skipped": 0, "skipped_by_reason": {}}
    for subset in groups:
        records = [results[k] for k in sorted(k for k in results if k[0] == subset)]
        ok = [(rec, cubes) for rec, cubes in records if cubes is not None]
        skipped = [rec for rec, cubes in records if cubes is None]
        for rec in skipped:
            log.warning("Skipped %s: %s (%s)", rec["path"], rec["reason"], rec["detail"])
        name = cube_file_name(config.scale, config.cube_shape, subset)
        manifest = {"file": name, "subset": subset, "seed": int(seed),
                    "parameters": config.to_dict(), "n_scans": len(records),
                    "n_cubes": sum(rec["n_cubes"] for rec, _ in ok),
                    "sources": [rec for rec, _ in ok], "skipped": skipped,
                    "skipped_by_reason": dict(Counter(rec["reason"] for rec in skipped)),
                    **(manifest_extras or {}).get(subset, {})}
        if ok:
            path = save_cubes(os.path.join(out_dir, name),
                              np.concatenate([cubes for _, cubes in ok]), dtype=config.dtype)
            summary["files"][subset] = path
        else:
            log.warning("Subset %s: no scan gave a cube; no file written.", subset)
            remove_outputs([os.path.join(out_dir, name)])  # an earlier run's, with `overwrite`
        write_json(os.path.join(out_dir, name[:-4] + ".json"), manifest)
        summary["n_cubes"][subset] = manifest["n_cubes"]
        summary["n_scans"][subset] = len(records)
        summary["skipped"] += [{k: rec[k] for k in ("path", "reason", "detail")} for rec in skipped]
    summary["n_skipped"] = len(summary["skipped"])
    summary["skipped_by_reason"] = dict(Counter(s["reason"] for s in summary["skipped"]))
    return summary


def _is_dicom_file(path: str) -> bool:
    if path.lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def find_scans(data_dir) -> List[Tuple[str, Optional[str]]]:
    """Every scan under `data_dir`, recursively: `(path, series_id)` pairs, sorted by path.

    A file ending in `.nii.gz`, `.nii`, `.mhd`, `.mha` or `.nrrd` is one scan (`series_id`
    None); a folder holding DICOM files (`.dcm`, or `DICM` at byte 128) gives one scan per
    DICOM series in it (`path` the folder, `series_id` its SeriesInstanceUID).

    Raises:
        FileNotFoundError: `data_dir` is missing or holds no scan.
    """
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"Data folder not found: {data_dir!r}.")
    scans = []
    for root, dirs, files in os.walk(data_dir):
        dirs.sort()
        files = sorted(f for f in files if not f.startswith("."))
        scans += [(os.path.join(root, f), None) for f in files
                  if f.lower().endswith(SCAN_EXTENSIONS)]
        others = [os.path.join(root, f) for f in files
                  if not f.lower().endswith(SCAN_EXTENSIONS + _NOT_DICOM)]
        if any(_is_dicom_file(p) for p in others[:8]):
            import SimpleITK as sitk  # on first use, as in data.volumes

            scans += [(root, series) for series in
                      sorted(sitk.ImageSeriesReader.GetGDCMSeriesIDs(root))]
    if not scans:
        raise FileNotFoundError(f"No scan in {data_dir!r}: looked for {', '.join(SCAN_EXTENSIONS)} "
                                f"files and DICOM series folders, recursively.")
    return scans


def _scan_name(data_dir, scan) -> str:
    path, series_id = scan
    rel = os.path.relpath(path, data_dir).replace(os.sep, "/")
    return f"{rel}#{series_id}" if series_id and os.path.isdir(path) else rel


def scan_modality(name: str, modality: Union[str, Sequence[str]]) -> str:
    """The modality of a scan: one name for all, or the first matching `GLOB=MODALITY` rule.

    Args:
        name: the scan's path relative to the data folder (`/`-separated).
        modality: `"ct"`, `"mr"`, or rules such as `["*_0000.nii.gz=ct", "*=mr"]` matched in
            order against `name` (fnmatch; `*` also matches `/`).

    Raises:
        ValueError: an unknown modality, a malformed rule, or no rule matches `name`.
    """
    rules = [modality] if isinstance(modality, str) else list(modality)
    for rule in rules:
        pattern, sep, value = rule.rpartition("=") if "=" in rule else ("*", "=", rule)
        if value not in EXTRACTION_MODALITIES or not pattern:
            raise ValueError(f"`modality` must be one of {list(EXTRACTION_MODALITIES)} or "
                             f"GLOB=MODALITY rules. Received: {rule!r}.")
        if fnmatch.fnmatchcase(name, pattern):
            return value
    raise ValueError(f"No modality rule matches scan {name!r}. Received rules: {rules}; add a "
                     f"last rule such as '*=ct'.")


def _read_list(path, data_dir, names: Dict[str, tuple]) -> List[str]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Scan list not found: {path!r}.")
    with open(path, "r", encoding="utf-8") as f:
        entries = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    out = []
    for entry in entries:
        name = (os.path.relpath(entry, data_dir).replace(os.sep, "/") if os.path.isabs(entry)
                else entry.replace(os.sep, "/"))
        if name not in names:
            raise ValueError(f"Scan list {path!r} names {entry!r}, which is not a scan found under "
                             f"{data_dir!r} (paths relative to it, e.g. "
                             f"{next(iter(names))!r}).")
        out.append(name)
    return out


def split_scans(names: Sequence[str], *, val_ratio: float = 0.2, seed: int = 0,
                train_list=None, val_list=None, data_dir=".") -> Dict[str, List[str]]:
    """Split scan names into `train` and `val`: by list files, or a seeded shuffle by ratio.

    Args:
        names: scan names (paths relative to `data_dir`).
        val_ratio: fraction of scans for validation when no list is given (rounded, at least one
            scan each when there are two or more and the ratio is above 0).
        seed: seed of the shuffle.
        train_list, val_list: text files, one scan path a line (relative to `data_dir`, or
            absolute); given one, the other split is every scan not listed.
        data_dir: the folder the names are relative to.

    Returns:
        `{"train": [...], "val": [...]}`, each sorted; `val` may be empty (ratio 0).

    Raises:
        ValueError: a bad ratio, a listed name that is not a scan, a scan in both lists, or an
            empty training split.
    """
    index = {n: n for n in names}
    if train_list is None and val_list is None:
        if not 0.0 <= val_ratio < 1.0:
            raise ValueError(f"`val_ratio` must be in [0, 1). Received: val_ratio={val_ratio!r}.")
        order = np.random.default_rng(seed).permutation(len(names))
        n_val = int(round(val_ratio * len(names)))
        if val_ratio > 0 and len(names) >= 2:
            n_val = min(max(n_val, 1), len(names) - 1)
        val = {names[i] for i in order[:n_val]}
        train = [n for n in names if n not in val]
    else:
        train = _read_list(train_list, data_dir, index) if train_list is not None else None
        val = _read_list(val_list, data_dir, index) if val_list is not None else None
        if train is None:
            train = [n for n in names if n not in set(val)]
        if val is None:
            val = [n for n in names if n not in set(train)]
        both = sorted(set(train) & set(val))
        if both:
            raise ValueError(f"Scans listed for both training and validation: {both[:5]}.")
    if not train:
        raise ValueError(f"The training split is empty ({len(names)} scans found).")
    return {"train": sorted(train), "val": sorted(val)}


def extract_cubes_from_folder(data_dir, out_dir, *, config: Optional[ExtractionConfig] = None,
                              modality: Union[str, Sequence[str]] = "ct", val_ratio: float = 0.2,
                              train_list=None, val_list=None, seed: int = 0,
                              workers: Optional[int] = None, progress: bool = True,
                              overwrite: bool = False) -> dict:
    """Extract cubes from every scan under `data_dir` (any layout; `find_scans`).

    Writes `bat_{scale}_s_{r}x{c}x{d}_train.npy` and `..._val.npy` (when the validation split is
    not empty) with their manifests, as `extract_cubes` does per subset: pre-train on them with
    `pretrain --train-subsets train --val-subsets val`. The manifests add `split`, the scan
    names of each side, so the split can be reused or audited.

    Args:
        data_dir: folder searched recursively.
        out_dir: output folder (created).
        config: `ExtractionConfig`; its `modality` is replaced per scan by `modality`.
        modality: `"ct"`, `"mr"`, or `GLOB=MODALITY` rules (`scan_modality`).
        val_ratio, train_list, val_list: the split (`split_scans`).
        seed: base seed (the split's shuffle and the crops).
        workers, progress, overwrite: as `extract_cubes`.

    Returns:
        The summary of `extract_cubes`, with `split` added.

    Raises:
        FileNotFoundError, ValueError: no scan, a bad modality rule or split; FileExistsError:
            outputs exist and `overwrite` is False. All before any scan is read.
    """
    config = config or ExtractionConfig()
    data_dir, out_dir = os.fspath(data_dir), os.fspath(out_dir)
    scans = {_scan_name(data_dir, s): s for s in find_scans(data_dir)}
    split = split_scans(list(scans), val_ratio=val_ratio, seed=seed, train_list=train_list,
                        val_list=val_list, data_dir=data_dir)
    split = {k: v for k, v in split.items() if v}
    _refuse_existing(out_dir, list(split), config, overwrite)
    groups = {subset: [(*scans[name], dataclasses.replace(
        config, modality=scan_modality(name, modality))) for name in names]
        for subset, names in split.items()}
    summary = _extract_groups(groups, out_dir, config=config, seed=seed, workers=workers,
                              progress=progress, manifest_extras={
                                  k: {"data_dir": data_dir, "split": v} for k, v in split.items()})
    return {"data_dir": data_dir, **summary, "split": split}
