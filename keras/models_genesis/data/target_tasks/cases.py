"""One labelled case (an image and its mask on the same grid) and its training crops.

Used by the segmentation tasks (NCS, LCS, BMS). A case is checked before any crop is cut: the mask
must share the image's grid (shape, spacing, origin, direction), hold only the expected labels and
not be empty. Resampling (e.g. to 1 mm isotropic for NCS, paper Sec. 3.2.2) uses linear
interpolation for the image and, for the mask, each label's indicator linearly with a > 0.5
threshold (`data.io.volumes.resample_mask`, as nnU-Net).
"""

from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from models_genesis.data.target_tasks.common import (SPLITS, SkipLog, case_rng, check_labels,
                                                     check_same_grid, extract_crops,
                                                     intensity_window, progress_bar,
                                                     sample_crop_centers, scale_to_unit)
from models_genesis.data.io.volumes import read_volume, resample_mask, resample_volume


def read_case(image_path, mask_path, *, allowed_labels: Sequence[int], skips: SkipLog,
              spacing: Optional[Sequence[float]] = None):
    """Read an image and its label volume; return `(image Volume, labels array)` or None (skipped).

    Args:
        image_path, mask_path: volume files (any format `read_volume` reads).
        allowed_labels: the label values the mask may hold (0 included).
        skips: where a bad case is reported (raises or records, see `SkipLog`).
        spacing: resample both to this spacing in mm (x, y, z) first; None keeps the grid.

    Returns:
        `(image, labels)`: the image `Volume` (array (X, Y, Z)) and the integer labels on its grid.
    """
    pair = skips.read(lambda: (read_volume(image_path), read_volume(mask_path)), image_path,
                      "unreadable case: ")
    if pair is None:
        return None
    image, mask = pair
    reason = check_same_grid(image, mask)
    if reason:
        skips.bad(mask_path, f"{reason} (image {image_path})")
        return None
    labels = np.asarray(mask.array)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(labels == np.round(labels)):
            skips.bad(mask_path, "the mask holds non-integer values; expected labels "
                                 f"{list(allowed_labels)}")
            return None
        labels = labels.astype(np.int64)
    reason = check_labels(labels, allowed_labels)
    if reason:
        skips.bad(mask_path, reason)
        return None
    if spacing is not None:
        image = resample_volume(image, spacing, order=1)
        mask = resample_mask(mask, spacing)
        labels = np.asarray(mask.array).astype(np.int64)
    return image, labels


def crops_from_case(image: np.ndarray, foreground: np.ndarray, centers, shape: Sequence[int], *,
                    modality: str, crop_scale: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """Cut image and mask crops around `centers`, scale intensities to [0, 1], resize if asked.

    Args:
        image: raw intensities `(X, Y, Z)` (HU for CT).
        foreground: boolean `(X, Y, Z)`.
        centers: `(N, 3)` voxel indices.
        shape: output crop `(rows, cols, deps)`.
        modality: `"ct"` (clip [-1000, 1000]) or `"mri"` (this patient's min-max).
        crop_scale: cut `round(shape * crop_scale)` voxels, then resize to `shape` (linear for the
            image; the mask is resized linearly and thresholded at 0.5). BMS uses 100/64 = 1.5625
            (crops 100x100x50 -> 64x64x32, docs/release_reference.md, 'Target tasks').

    Returns:
        `(x, m)`: float32 `(N, rows, cols, deps)` in [0, 1] and float32 masks in {0, 1}.
    """
    window = intensity_window(image, modality)
    cut = tuple(int(round(s * crop_scale)) for s in shape)
    x = scale_to_unit(extract_crops(image, centers, cut, pad_value=window[0]), window)
    m = extract_crops(foreground.astype(np.float32), centers, cut, pad_value=0.0)
    if cut != tuple(shape):
        # On first use: this module is on `models-genesis --help`'s import path (scipy: 0.8 s).
        from scipy import ndimage

        zoom = (1.0,) + tuple(s / c for s, c in zip(shape, cut))
        x = np.clip(ndimage.zoom(x, zoom, order=1, grid_mode=True, mode="nearest"), 0.0, 1.0)
        m = ndimage.zoom(m, zoom, order=1, grid_mode=True, mode="nearest")
        x, m = x[:, :shape[0], :shape[1], :shape[2]], m[:, :shape[0], :shape[1], :shape[2]]
    return x.astype(np.float32), (m > 0.5).astype(np.float32)


def sample_case_crops(image: np.ndarray, foreground: np.ndarray, shape: Sequence[int], *,
                      n: int, positive_fraction: float, modality: str, rng: np.random.Generator,
                      region: Optional[np.ndarray] = None, crop_scale: float = 1.0):
    """Draw `n` crop centres (a `positive_fraction` on the foreground) and cut the crops."""
    centers = sample_crop_centers(foreground, n, positive_fraction, rng=rng, region=region)
    return crops_from_case(image, foreground, centers, shape, modality=modality,
                           crop_scale=crop_scale)


def split_case_crops(split: Mapping[str, Sequence[str]], cases: Mapping[str, tuple],
                     shape: Sequence[int], *, seed: int, skips: SkipLog,
                     allowed_labels: Sequence[int], spacing: Optional[Sequence[float]] = None,
                     n: int, positive_fraction: float, modality: str,
                     region: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                     crop_scale: float = 1.0, progress: bool = True):
    """Read every case of every split and cut its crops (LCS, BMS).

    Each case is read with `read_case` (bad ones are reported to `skips` and left out) and
    `sample_case_crops` draws `n` crops from it with its own generator `case_rng(seed, case_id)`,
    so a case's crops do not depend on the other cases. The foreground is `labels > 0`.

    Args:
        split: split name (`"train"`, `"valid"`, `"test"`) -> case ids, in order.
        cases: case id -> `(image path, mask path)`.
        shape: crop `(rows, cols, deps)`.
        seed: seeds each case's generator.
        skips: where bad cases go (see `SkipLog`).
        allowed_labels, spacing: passed to `read_case`.
        n, positive_fraction, modality, crop_scale: passed to `sample_case_crops`.
        region: maps the image array to the boolean region of the non-foreground centres
            (e.g. the brain, `array > array.min()`); None samples them anywhere.
        progress: show a progress bar over the cases (tqdm).

    Returns:
        `(parts, patients, test_volumes)`: split -> `(x, m)` float32 `(N, rows, cols, deps)` (empty
        `(0, rows, cols, deps)` when no case is left), split -> kept case ids, and the
        `(image path, mask path)` of the kept test cases.
    """
    parts: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    patients: Dict[str, list] = {}
    test_volumes = []
    bar = progress_bar(sum(len(split[n]) for n in SPLITS), "reading cases", progress)
    for name in SPLITS:
        xs, ms, kept = [], [], []
        for case_id in split[name]:
            bar.update(1)
            case = read_case(*cases[case_id], allowed_labels=allowed_labels, skips=skips,
                             spacing=spacing)
            if case is None:
                continue
            image, labels = case
            array = np.asarray(image.array)
            x, m = sample_case_crops(array, labels > 0, shape, n=n,
                                     positive_fraction=positive_fraction, modality=modality,
                                     rng=case_rng(seed, case_id),
                                     region=None if region is None else region(array),
                                     crop_scale=crop_scale)
            xs.append(x)
            ms.append(m)
            kept.append(case_id)
            if name == "test":
                test_volumes.append(cases[case_id])
        empty = np.zeros((0,) + tuple(shape), np.float32)
        parts[name] = (np.concatenate(xs) if xs else empty, np.concatenate(ms) if ms else empty)
        patients[name] = kept
    bar.close()
    return parts, patients, test_volumes
