"""Sub-volume ("cube") extraction: the proxy-task data of Models Genesis (paper Sec. 3.1).

Random `(rows, cols, deps)` crops are drawn away from the scan borders and kept unless they hold
too much tissue (docs/release_reference.md, 'Cube extraction'). The release's filter, for each voxel
of the crop, looks at the voxel and the next `lookahead - 1` slices: the first slice `k` whose
intensity is at least the threshold (-150 HU) gives the weight `1 - k / (lookahead - 1)` (1, 0.5, 0
for 3 slices; 0 when none is); a crop whose weights sum to more than `tissue_fraction` of its voxels
is rejected.

The weights depend only on the volume, not on the crop, so they are computed with array
operations: per crop for the first few candidates, and, when many candidates are needed, once
for the region all candidates cover, after which each crop's weight sum is a box sum of a 3D
summed-area table (O(1) per crop). Both give the release's decisions exactly.

Two checks the release does not make, so that nothing silently wrong reaches pre-training: a
crop of one constant value after clipping (e.g. all air, an empty scan) has nothing to restore
and is rejected like a crop with too much tissue; and the folder loop
(`pipeline.extract_cubes`) skips, with the reason in
its report, a scan whose voxel spacing is implausible for CT (outside `PLAUSIBLE_SPACING_MM`, or
slices more than `MAX_ANISOTROPY` times thicker than the pixels).

MR (`ExtractionConfig(modality="mr")`) has no Hounsfield units, so neither the window nor the
-150 HU threshold means anything there. Each MR scan is first scaled to [0, 1] by its own 0.5th
and 99.5th intensity percentiles (`MR_PERCENTILES`, clipped), and the filter is turned around:
a voxel is foreground when its scaled intensity is at least `foreground_threshold` (0.1: above
the dark background of air and noise), and a crop is kept when at least `min_foreground` (0.5)
of its voxels are foreground, i.e. when it holds mostly anatomy rather than background.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from models_genesis.data.io.intensity import (MR_PERCENTILES, normalize_intensity,
                                             percentile_window, scale_to_unit)
from models_genesis.data.io.volumes import Volume

log = logging.getLogger(__name__)


# Voxel spacings (mm) accepted by `extract_cubes`: clinical CT is about 0.3-1 mm in-plane and
# 0.5-5 mm between slices.
PLAUSIBLE_SPACING_MM = (0.2, 10.0)
MAX_ANISOTROPY = 20.0

# Measured cost of the summed-area table per region voxel, relative to the per-crop path per
# crop voxel (about 15x on one core); used to pick the cheaper path.
_TABLE_COST = 10

EXTRACTION_MODALITIES = ("ct", "mr")


class ScanTooSmallError(ValueError):
    """The scan is smaller than a crop plus its borders (the release skips such scans)."""


@dataclass(frozen=True)
class ExtractionConfig:
    """Parameters of cube extraction (release defaults;
    docs/release_reference.md, 'Cube extraction').

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
    """Extract up to `scale` cubes from one scan (paper Sec. 3.1;
    docs/release_reference.md, 'Cube extraction').

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
