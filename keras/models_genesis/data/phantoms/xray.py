"""Radiograph phantoms: digitally reconstructed radiographs (DRRs) of the chest phantoms, written
in ChestX-ray14's layout, so Genesis X-ray's whole 2D path runs offline.

A chest phantom (`phantoms.chest`, HU, (x, y, z) with y antero-posterior) becomes linear
attenuation `mu = MU_WATER_PER_MM * (1 + HU / 1000)` (0 for air; water 0.0193 mm^-1, about
70 keV), integrated along the antero-posterior axis: `L(x, z) = sum_y mu * dy`. The transmitted
fraction is `exp(-L)`; the radiograph shows attenuation bright, `1 - exp(-L)`, as film does. The
projection (rows: z, head up; columns: x) is resampled to square pixels of the in-plane spacing
and written as 8- or 16-bit PNG with the fixed map `round((1 - exp(-L)) * (2**bits - 1))` (no
per-image window, so values are comparable between images and the integral can be read back).

Layout: `OUT/images/{patient:08d}_000.png` and `OUT/Data_Entry_2017.csv` with ChestX-ray14's
columns ("No Finding", view "AP"); `data.pretraining.xray_crops` reads it like the real data set.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image
from skimage.transform import resize
from tqdm.auto import tqdm

from models_genesis.data.phantoms.chest import DEFAULT_SHAPE, make_chest_phantom
from models_genesis.data.phantoms.shapes import write_csv
from models_genesis.outputs import check_output_dir, refuse_to_replace

MU_WATER_PER_MM = 0.0193
CSV_HEADER = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
              "Patient Gender", "View Position", "OriginalImage[Width", "Height]",
              "OriginalImagePixelSpacing[x", "y]")


def attenuation_integral(hu: np.ndarray, spacing: Sequence[float], axis: int = 1) -> np.ndarray:
    """Line integral of attenuation through `hu` along `axis` (mm^-1 x mm): `(x, z)` for axis 1."""
    mu = np.maximum(MU_WATER_PER_MM * (1.0 + np.asarray(hu, np.float64) / 1000.0), 0.0)
    return mu.sum(axis=axis) * float(spacing[axis])


def drr(hu: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """A frontal radiograph `1 - exp(-L)` in [0, 1) of a chest `(x, y, z)`, as `(rows=z, cols=x)`
    with the head up, resampled to square pixels of `spacing[0]` mm."""
    image = 1.0 - np.exp(-attenuation_integral(hu, spacing, axis=1))  # (x, z)
    image = image.T[::-1]  # rows: z from head to feet; columns: x
    rows = max(1, int(round(image.shape[0] * spacing[2] / spacing[0])))
    if rows != image.shape[0]:
        image = resize(image, (rows, image.shape[1]), order=1, anti_aliasing=True,
                       preserve_range=True)
    return image


def to_png_levels(image01: np.ndarray, bits: int = 16) -> np.ndarray:
    """Map [0, 1] to the integer levels of a `bits`-bit PNG (uint8 or uint16)."""
    if bits not in (8, 16):
        raise ValueError(f"`bits` must be 8 or 16. Received: bits={bits!r}.")
    top = 2 ** bits - 1
    return np.round(np.clip(image01, 0.0, 1.0) * top).astype(np.uint8 if bits == 8 else np.uint16)


def write_png(path, levels: np.ndarray) -> str:
    """Write a grey PNG atomically (8-bit `L` or 16-bit `I;16`)."""
    path = os.fspath(path)
    tmp = path + ".tmp.png"
    Image.fromarray(levels).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


def make_xray_phantoms(out_dir, n: int = 6, seed: int = 0, *, shape: Sequence[int] = DEFAULT_SHAPE,
                       bits: int = 16, overwrite: bool = False, progress: bool = True) -> dict:
    """Write `n` DRRs of chest phantoms in ChestX-ray14's layout (one patient per image).

    Args:
        out_dir: output folder (created); files are written atomically and never replaced
            unless `overwrite`.
        n: number of radiographs. seed: phantom `i` is drawn with `default_rng([seed, i])`.
        shape: (x, y, z) voxels of each chest phantom.
        bits: 8 or 16 (PNG bit depth).

    Returns:
        Summary dict: `out_dir`, `n_images`, `csv`, `image_shape` (rows, cols of the first),
        `bits`, `seed`.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive int. Received: n={n!r}.")
    out_dir = check_output_dir(out_dir, name="out_dir")
    names = [f"{i + 1:08d}_000.png" for i in range(n)]
    csv_path = os.path.join(out_dir, "Data_Entry_2017.csv")
    if not overwrite:
        refuse_to_replace([csv_path] + [os.path.join(out_dir, "images", m) for m in names],
                          where=out_dir, what="radiograph phantom files")
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    rows, first_shape = [], None
    for i in tqdm(range(n), desc="make-phantoms xray", unit="image", disable=not progress):
        rng = np.random.default_rng([seed, i])
        ph = make_chest_phantom(rng, shape=shape)
        levels = to_png_levels(drr(ph["hu"], ph["spacing"]), bits)
        write_png(os.path.join(out_dir, "images", names[i]), levels)
        first_shape = first_shape or levels.shape
        rows.append((names[i], "No Finding", 0, i + 1, int(rng.integers(20, 80)),
                     str(rng.choice(["M", "F"])), "AP", levels.shape[1], levels.shape[0],
                     float(ph["spacing"][0]), float(ph["spacing"][0])))
    write_csv(csv_path, CSV_HEADER, rows)
    return {"out_dir": out_dir, "n_images": n, "csv": csv_path, "image_shape": list(first_shape),
            "bits": bits, "seed": seed}
