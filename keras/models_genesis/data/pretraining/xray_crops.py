"""Genesis Chest X-ray's data: ChestX-ray14 radiographs (paper Sec. 2.1, 3.1, Table 1).

Layout read (as distributed by the NIH): `ROOT/images/*.png` (1024 x 1024 grey PNGs; the
download's `images_001.tar.gz` ... unpack into `images/`) and `ROOT/Data_Entry_2017.csv` (columns
`Image Index`, `Finding Labels`, `Follow-up #`, `Patient ID`, ...). Labels are not used: the
proxy task is self-supervised.

Intensities: "in Genesis X-ray, we directly normalize each X-ray to [0, 1] without intensity
clipping" (Sec. 2.1): each radiograph is scaled by its own minimum and maximum. PNGs are read
with Pillow (installed with scikit-image); 8-bit (`L`), 16-bit (`I;16`) and 32-bit integer (`I`)
grey images are accepted. A colour image is accepted only when its channels are equal (grey
stored as RGB/RGBA, which happens in ChestX-ray14) and refused otherwise; a 16/32-bit image with
values outside [0, 65535] (e.g. signed data) or a constant image is refused; each error is one
line naming the file.

`prepare_xray_crops` turns the radiographs into the proxy-task files of `pretrain --dims 2`: each
image is resized to `image_size` (anti-aliased), `scale` random `crop_shape` crops are cut from
it, and the crops of each patient-level subset are written, memory-mapped as they are made, to
`bat_{scale}_s_{rows}x{cols}x1_{subset}.npy` (`(N, rows, cols, 1)` in [0, 1], the slice files
of `data.pretraining.slices`). The paper does not state the input size of Genesis X-ray; 64 x 64 crops of
256 x 256 images are this package's choice.
"""

from __future__ import annotations

import csv
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from skimage.transform import resize
from tqdm.auto import tqdm

from models_genesis.atomic import write_json
from models_genesis.config import SIDE_RANGE, Range
from models_genesis.data.io.cube_files import claim_cube_dir, cube_file_name
from models_genesis.outputs import owner_stamp

CSV_NAME = "Data_Entry_2017.csv"
MAX_16BIT = 65535
# Smallest radiograph accepted (pixels a side): ChestX-ray14's are 1024 x 1024; an image of a few
# pixels is a thumbnail or a broken file, and resizing it up to `image_size` invents the crops.
MIN_RADIOGRAPH_SIDE = 64


def read_radiograph(path) -> np.ndarray:
    """Read one radiograph as float32 `(rows, cols)` scaled to [0, 1] by its own min and max.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, colour with unequal channels, values outside [0, 65535], or
            constant; the message names the file and what was expected.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Radiograph not found: {path!r}.")
    try:
        with Image.open(path) as img:
            mode = img.mode
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"Cannot read {path!r} as an image: {exc}") from exc
    if arr.ndim == 3:
        if mode not in ("RGB", "RGBA", "LA") or not np.all(arr[..., 1:3 if mode != "LA" else 1]
                                                           == arr[..., :1]):
            raise ValueError(f"{path!r} is a colour image (mode {mode!r}, shape {arr.shape}); a "
                             "radiograph must be one grey channel (8- or 16-bit PNG).")
        arr = arr[..., 0]  # grey stored as RGB(A): the channels are equal
    elif arr.ndim != 2:
        raise ValueError(f"{path!r} must be a 2D grey image. Received: mode {mode!r}, shape {arr.shape}.")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > MAX_16BIT:
        raise ValueError(f"{path!r} holds values in [{lo}, {hi}] (mode {mode!r}); expected an 8- or "
                         f"16-bit grey radiograph with values in [0, {MAX_16BIT}].")
    if lo == hi:
        raise ValueError(f"{path!r} is constant (every pixel {lo}): nothing to normalise.")
    return ((arr.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)).astype(np.float32)


def read_data_entry(root) -> List[Dict[str, str]]:
    """Rows of `ROOT/Data_Entry_2017.csv` whose image is in `ROOT/images/`, in CSV order.

    Raises:
        FileNotFoundError: the CSV or the images folder is missing, or no listed image exists.
        ValueError: the CSV lacks the `Image Index` or `Patient ID` column.
    """
    root = os.fspath(root)
    csv_path, images = os.path.join(root, CSV_NAME), os.path.join(root, "images")
    for p in (csv_path, images):
        if not os.path.exists(p):
            raise FileNotFoundError(f"ChestX-ray14 layout expects {p!r} (ROOT/images/*.png and "
                                    f"ROOT/{CSV_NAME}); it is missing.")
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"Image Index", "Patient ID"} <= set(rows[0]):
        raise ValueError(f"{csv_path!r} must have the columns 'Image Index' and 'Patient ID'. "
                         f"Received: {list(rows[0]) if rows else 'no rows'}.")
    present = set(os.listdir(images))
    rows = [r for r in rows if r["Image Index"] in present]
    if not rows:
        raise FileNotFoundError(f"None of the images listed in {csv_path!r} is in {images!r}.")
    return rows


def patient_subsets(rows: Sequence[Dict[str, str]], n_subsets: int = 10, *,
                    seed: int = 0) -> Dict[str, List[str]]:
    """Split images into `n_subsets` by patient (a patient's images stay in one subset).

    Returns:
        `{"0": [image names], ...}`; patients are shuffled by `seed`, then dealt round-robin.
    """
    patients = sorted({r["Patient ID"] for r in rows})
    if n_subsets < 1 or n_subsets > len(patients):
        raise ValueError(f"`n_subsets` must be in [1, {len(patients)}] (the number of patients). "
                         f"Received: n_subsets={n_subsets}.")
    order = np.random.default_rng(seed).permutation(len(patients))
    subset_of = {patients[i]: str(k % n_subsets) for k, i in enumerate(order)}
    out: Dict[str, List[str]] = {str(k): [] for k in range(n_subsets)}
    for r in rows:
        out[subset_of[r["Patient ID"]]].append(r["Image Index"])
    return out


def radiograph_crops(image01: np.ndarray, *, rng: np.random.Generator, scale: int,
                     crop_shape=(64, 64), image_size=(256, 256)) -> np.ndarray:
    """Resize a [0, 1] radiograph to `image_size` and cut `scale` random crops `(scale, r, c)`."""
    small = resize(image01, tuple(image_size), order=1, anti_aliasing=True,
                   preserve_range=True).astype(np.float32)
    r, c = crop_shape
    if r > small.shape[0] or c > small.shape[1]:
        raise ValueError(f"`crop_shape` {tuple(crop_shape)} exceeds `image_size` {tuple(image_size)}.")
    starts = rng.integers(0, [small.shape[0] - r + 1, small.shape[1] - c + 1], size=(scale, 2))
    rows = starts[:, :1, None] + np.arange(r)[None, :, None]
    cols = starts[:, 1:, None] + np.arange(c)[None, None, :]
    return np.clip(small[rows, cols], 0.0, 1.0)  # resize can overshoot by rounding only


def check_crop_settings(scale, crop_shape, image_size, n_subsets=1) -> None:
    """Refuse, before any image is read, crop settings that give empty or absurd files.

    Raises:
        ValueError: `scale` or `n_subsets` not a positive integer, a side of `crop_shape` or
            `image_size` outside `SIDE_RANGE`, or a crop larger than the resized image.
    """
    Range(int, 1, 100_000).check(scale, "scale")
    Range(int, 1, 1000).check(n_subsets, "n_subsets")
    for name, shape in (("crop_shape", crop_shape), ("image_size", image_size)):
        if len(tuple(shape)) != 2:
            raise ValueError(f"`{name}` must be 2 sizes (rows, cols). Received: {name}={shape!r}.")
        for side in shape:
            SIDE_RANGE.check(side, name)
    if any(int(c) > int(i) for c, i in zip(crop_shape, image_size)):
        raise ValueError(f"`crop_shape` {tuple(crop_shape)} exceeds `image_size` "
                         f"{tuple(image_size)}: crops are cut from the resized radiograph.")


def prepare_xray_crops(root, out_dir, *, subsets: Optional[Sequence] = None, n_subsets: int = 10,
                       scale: int = 8, crop_shape=(64, 64), image_size=(256, 256), seed: int = 0,
                       dtype: str = "float32", progress: bool = True,
                       overwrite: bool = False) -> dict:
    """Write the proxy-task crop files of ChestX-ray14 (`pretrain --dims 2 --data OUT_DIR`).

    Args:
        root: folder with `images/` and `Data_Entry_2017.csv`.
        out_dir: output folder (created); a file that exists is never replaced.
        subsets: which patient subsets to write (default all `n_subsets`).
        n_subsets, seed: the patient-level split (`patient_subsets`); image `i` of subset `k` is
            cropped with `default_rng((seed, k, i))`.
        scale: crops per radiograph. crop_shape, image_size: see the module docstring.
        dtype: storage dtype ("float16" halves the files).
        overwrite: write into a non-empty folder that is not this function's, and replace crop
            files and manifests of the same names (other files are kept).

    Returns:
        `{"files": {subset: path}, "n_crops": {subset: n}, "n_images": {subset: n}}`; a JSON
        manifest (image names per subset, parameters) is written beside each file.

    Raises:
        FileNotFoundError, ValueError: layout problems or a bad radiograph (named).
        FileExistsError: an output file exists (without `overwrite`), or `out_dir` is a
            non-empty folder of something else.
    """
    check_crop_settings(scale, crop_shape, image_size, n_subsets)
    out_dir = os.fspath(out_dir)
    claim_cube_dir(out_dir, "extract-xray-crops", overwrite=overwrite,
                   inputs=[("images folder", os.path.join(os.fspath(root), "images"))])
    rows = read_data_entry(root)
    split = patient_subsets(rows, n_subsets, seed=seed)
    wanted = [str(s) for s in (subsets if subsets is not None else split)]
    names = {s: cube_file_name(scale, (*crop_shape, 1), s) for s in wanted}
    _check_subsets(wanted, split, names, out_dir, n_subsets=n_subsets, overwrite=overwrite)
    os.makedirs(out_dir, exist_ok=True)
    summary = {"files": {}, "n_crops": {}, "n_images": {}}
    for s in wanted:
        images = split[s]
        path = os.path.join(out_dir, names[s])
        _write_subset_crops(path, os.path.join(os.fspath(root), "images"), images, subset=s,
                            seed=seed, scale=scale, crop_shape=crop_shape,
                            image_size=image_size, dtype=dtype, progress=progress)
        write_json(path[:-4] + ".json", {**owner_stamp("extract-xray-crops"), "file": names[s],
                                         "subset": s, "images": images, "scale": scale,
                                         "crop_shape": list(crop_shape),
                                         "image_size": list(image_size), "seed": seed,
                                         "n_subsets": n_subsets})
        summary["files"][s], summary["n_crops"][s] = path, len(images) * scale
        summary["n_images"][s] = len(images)
    return summary


def _check_subsets(wanted: Sequence[str], split: Dict[str, List[str]], names: Dict[str, str],
                   out_dir: str, *, n_subsets: int, overwrite: bool) -> None:
    """Refuse, before any image is read, an unknown subset or (without `overwrite`) an output
    file that exists."""
    for s in wanted:
        if s not in split:
            raise ValueError(f"Unknown subset {s!r}; subsets are 0..{n_subsets - 1}.")
        if os.path.exists(os.path.join(out_dir, names[s])) and not overwrite:
            raise FileExistsError(f"{os.path.join(out_dir, names[s])!r} exists; pass --overwrite "
                                  "to replace it or choose another --out.")


def _write_subset_crops(path: str, images_dir: str, images: Sequence[str], *, subset: str,
                        seed: int, scale: int, crop_shape, image_size, dtype: str,
                        progress: bool) -> None:
    """Write the `scale` crops of each radiograph of one subset to `path`, `(N, rows, cols, 1)`,
    memory-mapped as they are made; image `i` is cropped with `default_rng((seed, subset, i))`.
    The file appears only when complete (no half-written file on an error)."""
    tmp = path + ".tmp.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype,
                                    shape=(len(images) * scale, *crop_shape, 1))
    try:
        for i, name in enumerate(tqdm(images, desc=f"x-ray subset {subset}",
                                      disable=not progress)):
            rng = np.random.default_rng((int(seed), int(subset), i))
            image_path = os.path.join(images_dir, name)
            image = read_radiograph(image_path)
            if min(image.shape) < MIN_RADIOGRAPH_SIDE:
                raise ValueError(f"{image_path!r} is {image.shape[0]}x{image.shape[1]} pixels; "
                                 f"a radiograph must be at least {MIN_RADIOGRAPH_SIDE} pixels "
                                 "a side (ChestX-ray14: 1024).")
            out[i * scale:(i + 1) * scale, ..., 0] = radiograph_crops(
                image, rng=rng, scale=scale, crop_shape=crop_shape, image_size=image_size)
        out.flush()
    except BaseException:
        del out
        os.remove(tmp)  # no half-written file; finished subsets stay
        raise
    del out
    os.replace(tmp, path)
