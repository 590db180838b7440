"""What the five target-task loaders share: `TargetData`, checks, crops, splits, skip reports.

Conventions (paper Sec. 3.2, docs/release_reference.md, 'Target tasks'):
- Arrays are in (x, y, z) order as `read_volume` returns them; crops are channels last,
  `(N, rows, cols, deps, 1)` float32. Images lie in [0, 1]; masks are {0, 1} float32.
- CT is clipped to [-1000, 1000] HU and scaled to [0, 1]; MRI is min-max scaled per patient
  (`models_genesis.data.io.volumes.intensity_window`, the one definition of "ct" and "mri").
- A crop is centred on a voxel: it starts at `center - shape // 2`. Where it leaves the volume it is
  padded with the background (-1000 HU for CT, the patient's minimum for MRI; both map to 0) and
  the mask with 0.
- Splits are patient-level: every crop of one patient lies in one split.
- Bad items either raise `ValueError` (`errors="raise"`, the default) or are skipped and recorded
  in `info["skipped"]` with the file and the reason (`errors="skip"`); never dropped silently.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import zlib
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from models_genesis.config import get_target_task
from models_genesis.data.io.intensity import CT_WINDOW, intensity_window, scale_to_unit  # noqa: F401

SPLITS = ("train", "valid", "test")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetData:
    """The three splits of one target task, ready for fine-tuning.

    Attributes:
        task: target-task code (`ncc`, `ncs`, `ecc`, `lcs`, `bms`).
        x_train, x_valid, x_test: crops `(N, rows, cols, deps, 1)` float32 in [0, 1].
        y_train, y_valid, y_test: labels `(N,)` int64 in {0, 1} (classification) or masks
            `(N, rows, cols, deps, 1)` float32 in {0, 1} (segmentation).
        info: counts per split (`counts`, `positives`, `patients`), the split's source, skipped
            items (`skipped`: list of `{"item", "reason"}`, `n_skipped`) and task details.
        test_volumes: `(image_path, mask_path)` of the test patients (LCS, BMS), for whole-volume
            sliding-window inference; empty for the other tasks.
    """

    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict = field(default_factory=dict)
    test_volumes: Tuple[Tuple[str, str], ...] = ()

    def split(self, name: str) -> Tuple[np.ndarray, np.ndarray]:
        """Return `(x, y)` of split `name` (`train`, `valid` or `test`)."""
        if name not in SPLITS:
            raise ValueError(f"`name` must be one of {SPLITS}. Received: name={name!r}.")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


class SkipLog:
    """Collects bad items: raises at once (`errors="raise"`) or records them (`errors="skip"`)."""

    def __init__(self, errors: str = "raise"):
        if errors not in ("raise", "skip"):
            raise ValueError(f"`errors` must be 'raise' or 'skip'. Received: errors={errors!r}.")
        self.errors = errors
        self.items: List[dict] = []

    def bad(self, item, reason: str, *, always_raise: bool = False) -> None:
        if always_raise or self.errors == "raise":
            raise ValueError(f"{item}: {reason}")
        self.items.append({"item": str(item), "reason": reason})

    def read(self, read, item, reason: str = ""):
        """`read()`; where it fails with ValueError or OSError, the error is raised
        (`errors="raise"`) or recorded for `item` as `reason` followed by the error, and None
        is returned (`errors="skip"`)."""
        try:
            return read()
        except (ValueError, OSError) as exc:  # this item only
            if self.errors == "raise":
                raise
            self.bad(item, f"{reason}{exc}")
            return None

    def summary(self) -> str:
        """One line: how many items were skipped, and the first one with its reason."""
        if not self.items:
            return "nothing skipped"
        first = self.items[0]
        return (f"skipped {len(self.items)} item(s) (see info['skipped']), e.g. "
                f"{first['item']}: {first['reason']}")


def progress_bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar over `total` cases (call `.update(1)` per case, `.close()` at the end).

    The bar is shown when `enabled` and there are at least 2 cases; its postfix is not used, so
    skipped cases are counted in the loader's `info["skipped"]` (and printed by the CLI).
    """
    # On first use: this module is on `models-genesis --help`'s import path (tqdm: 0.13 s).
    from tqdm.auto import tqdm

    return tqdm(total=int(total), desc=desc, unit="case", disable=not enabled or total < 2,
                leave=False)


def case_rng(seed: int, case_id: str) -> np.random.Generator:
    """A generator for one patient: fixed by `(seed, case_id)`, independent of the other cases."""
    return np.random.default_rng([int(seed), zlib.crc32(str(case_id).encode("utf-8"))])


def check_input_shape(input_shape, task_code: str) -> Tuple[int, int, int]:
    """Return `input_shape` (or the task's crop when None) after checking each size % 8 == 0."""
    shape = get_target_task(task_code).input_shape if input_shape is None else input_shape
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or any(s < 8 or s % 8 for s in shape):
        raise ValueError("`input_shape` must be 3 sizes (rows, cols, deps), each a positive "
                         "multiple of 8 (the U-Net pools three times). "
                         f"Received: input_shape={input_shape!r}.")
    return shape


def check_same_grid(image, mask, *, atol: float = 1e-3) -> Optional[str]:
    """Return why `mask` (a `Volume`) is not on the grid of `image`, or None when it is."""
    if image.array.shape != mask.array.shape:
        return f"mask shape {mask.array.shape} differs from image shape {image.array.shape}"
    for name in ("spacing", "origin", "direction"):
        a = np.asarray(getattr(image, name), dtype=float)
        b = np.asarray(getattr(mask, name), dtype=float)
        if a.shape != b.shape or not np.allclose(a, b, atol=atol, rtol=1e-4):
            return f"mask {name} {tuple(np.round(b.ravel(), 4))} differs from image {name} " \
                   f"{tuple(np.round(a.ravel(), 4))}"
    return None


def check_labels(labels: np.ndarray, allowed: Sequence[int]) -> Optional[str]:
    """Return why `labels` hold values outside `allowed` (or are empty), or None when fine."""
    values = np.unique(labels)
    extra = np.setdiff1d(values, np.asarray(allowed))
    if extra.size:
        return f"labels {extra.tolist()[:10]} are outside the expected set {list(allowed)}"
    if not np.any(values != 0):
        return "the mask is empty (no foreground voxel)"
    return None


def extract_crops(array: np.ndarray, centers, shape: Sequence[int], *,
                  pad_value: float = 0.0) -> np.ndarray:
    """Cut crops of `shape` centred on `centers` from `array`, padding outside with `pad_value`.

    Args:
        array: a volume `(X, Y, Z)`.
        centers: voxel indices `(N, 3)` (rounded to the nearest voxel).
        shape: crop size `(rows, cols, deps)`; the crop starts at `center - shape // 2`.
        pad_value: value of voxels outside the volume.

    Returns:
        `(N, rows, cols, deps)` of `array`'s dtype. One padded copy of the volume, then a single
        fancy-indexing gather through a sliding-window view (no loop over crops or voxels).
    """
    shape = tuple(int(s) for s in shape)
    centers = np.rint(np.asarray(centers, dtype=float)).astype(np.int64).reshape(-1, 3)
    if centers.shape[0] == 0:
        return np.zeros((0,) + shape, dtype=array.dtype)
    half = np.asarray(shape) // 2
    # Clamp so a centre far outside still gives an (all padding) crop instead of an index error.
    starts = np.clip(centers - half, -np.asarray(shape), np.asarray(array.shape))
    padded = np.pad(array, [(s, s) for s in shape], mode="constant", constant_values=pad_value)
    windows = np.lib.stride_tricks.sliding_window_view(padded, shape)
    starts = starts + np.asarray(shape)
    return np.ascontiguousarray(windows[starts[:, 0], starts[:, 1], starts[:, 2]])


def sample_crop_centers(mask: np.ndarray, n: int, positive_fraction: float, *,
                        rng: np.random.Generator,
                        region: Optional[np.ndarray] = None) -> np.ndarray:
    """Draw `n` crop centres: `round(n * positive_fraction)` on the foreground, the rest anywhere.

    Args:
        mask: boolean foreground `(X, Y, Z)`.
        n: number of centres.
        positive_fraction: share of centres drawn on the foreground, in [0, 1].
        rng: the generator.
        region: optional boolean `(X, Y, Z)` where the other centres are drawn (e.g. the brain);
            the whole volume when None.

    Returns:
        int64 `(n, 3)` voxel indices.
    """
    if not 0.0 <= float(positive_fraction) <= 1.0:
        raise ValueError("`positive_fraction` must be in [0, 1]. "
                         f"Received: positive_fraction={positive_fraction!r}.")
    n_pos = int(round(n * positive_fraction))
    fg = np.argwhere(mask)
    pos = fg[rng.integers(len(fg), size=n_pos)] if len(fg) else np.zeros((0, 3), np.int64)
    if region is not None and region.any():
        area = np.argwhere(region)
        rest = area[rng.integers(len(area), size=n - len(pos))]
    else:
        rest = (rng.random((n - len(pos), 3)) * np.asarray(mask.shape)).astype(np.int64)
    return np.concatenate([pos, rest]).astype(np.int64)


def seeded_split(ids: Sequence[str], fractions: Sequence[float], *,
                 rng: np.random.Generator) -> Dict[str, List[str]]:
    """Split patient ids into train/valid/test with `fractions` (rounded; each non-empty if n >= 3).

    The ids are sorted first, so the result depends only on the set of ids and the generator.
    """
    ids = sorted(ids)
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or np.any(fractions < 0) or fractions.sum() <= 0:
        raise ValueError(f"`fractions` must be 3 non-negative numbers (train, valid, test). "
                         f"Received: fractions={fractions.tolist()}.")
    n = len(ids)
    counts = np.floor(fractions / fractions.sum() * n + 0.5).astype(int)
    if n >= 3:
        counts = np.maximum(counts, (fractions > 0).astype(int))
    counts[0] = n - counts[1:].sum()
    if counts[0] < 1 and n:
        raise ValueError(f"Too few patients ({n}) for a train/valid/test split with fractions "
                         f"{fractions.tolist()}.")
    order = [ids[i] for i in rng.permutation(n)]
    bounds = np.cumsum(counts)
    return {"train": sorted(order[:bounds[0]]), "valid": sorted(order[bounds[0]:bounds[1]]),
            "test": sorted(order[bounds[1]:])}


def read_id_list(path, *, header: Optional[str] = None) -> List[str]:
    """Read one id per line (the release's split files); drop a first line equal to `header`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Split file not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r[0].strip() for r in csv.reader(f) if r and r[0].strip()]
    if rows and header is not None and rows[0] == header:
        rows = rows[1:]
    return rows


def check_split_ids(split: Dict[str, Sequence[str]], known: Iterable[str], source) -> None:
    """Raise when a split names a patient that has no data, or names one patient twice."""
    known = set(known)
    seen: Dict[str, str] = {}
    for name, ids in split.items():
        missing = sorted(set(ids) - known)
        if missing:
            raise ValueError(f"{source}: the {name} split names {len(missing)} patient(s) with no "
                             f"data in the folder, e.g. {missing[:5]}.")
        for i in ids:
            if i in seen and seen[i] != name:
                raise ValueError(f"{source}: patient {i!r} is in both the {seen[i]} and the "
                                 f"{name} split.")
            seen[i] = name


def as_channels_last(x: np.ndarray) -> np.ndarray:
    """`(N, r, c, d)` -> `(N, r, c, d, 1)` float32 (contiguous); `(N, r, c, d, C)` kept."""
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x if x.ndim == 5 else x[..., None])


def build_target_data(task: str, parts: Dict[str, Tuple[np.ndarray, np.ndarray]],
                      patients: Dict[str, Sequence[str]], skips: SkipLog, *,
                      segmentation: bool, test_volumes=(), **extra) -> TargetData:
    """Assemble a `TargetData` with its `info` (counts, positives, patients, skipped)."""
    arrays, counts, positives = {}, {}, {}
    for name in SPLITS:
        x, y = parts[name]
        arrays[f"x_{name}"] = as_channels_last(x)
        arrays[f"y_{name}"] = as_channels_last(y) if segmentation else np.asarray(y, np.int64)
        counts[name] = int(len(x))
        y = arrays[f"y_{name}"]
        positives[name] = int(np.sum(y.reshape(len(y), -1).max(axis=1) > 0)) if len(y) else 0
    if skips.items:
        log.warning("%s: %s", task.upper(), skips.summary())
    info = {"task": task, "counts": counts, "positives": positives,
            "patients": {k: len(v) for k, v in patients.items()},
            "skipped": list(skips.items), "n_skipped": len(skips.items), **extra}
    return TargetData(task=task, info=info, test_volumes=tuple(test_volumes), **arrays)


def subsample_fraction(data: TargetData, fraction: float, *,
                       rng: np.random.Generator) -> TargetData:
    """Keep a stratified `fraction` of the TRAINING split (paper Fig. 6); valid and test unchanged.

    Strata are the labels (classification) or "has foreground" (segmentation); each non-empty
    stratum keeps at least one sample. Order within the kept set follows the original order.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"`fraction` must be in (0, 1]. Received: fraction={fraction!r}.")
    y = data.y_train
    strata = y if y.ndim == 1 else (y.reshape(len(y), -1).max(axis=1) > 0).astype(np.int64)
    keep = []
    for value in np.unique(strata):
        idx = np.flatnonzero(strata == value)
        k = max(1, int(round(fraction * len(idx))))
        keep.append(rng.choice(idx, size=k, replace=False))
    keep = np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)
    info = dict(data.info, label_fraction=float(fraction),
                counts=dict(data.info.get("counts", {}), train=int(len(keep))),
                positives=dict(data.info.get("positives", {}), train=int(np.sum(strata[keep] > 0))))
    return dataclasses.replace(data, x_train=data.x_train[keep], y_train=y[keep], info=info)
