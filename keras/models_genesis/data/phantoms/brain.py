"""BraTS-2018-like FLAIR MRI phantoms for the BMS target task (paper Sec. 3.2.5).

Writes one folder per patient, as BraTS does: `{HGG|LGG}/Brats18_{inst}_{k}_1/` holding
`Brats18_{inst}_{k}_1_flair.nii.gz` (int16) and `..._seg.nii.gz` (uint8 labels 0 background,
1 necrotic / non-enhancing core, 2 peritumoural oedema, 4 enhancing tumour), on BraTS' grid
convention (1 mm voxels, direction diag(-1, -1, 1)). The brain is skull-stripped (background 0);
FLAIR-like intensities: white matter about 350, grey matter about 450, ventricles (CSF) about 80,
oedema bright (800-1000), enhancing rim about 600, necrosis about 300, under a smooth bias field
with Rician-like noise. Low-grade cases (LGG) have no enhancing label. Case k draws from
`np.random.default_rng((seed, k))`.
"""

from __future__ import annotations

import os
from typing import Sequence, Tuple

import numpy as np

from models_genesis.data.phantoms.shapes import ellipsoid_mask, random_rotation, smooth_noise
from models_genesis.data.io.volumes import write_volume
from models_genesis.outputs import check_output_dir, refuse_to_replace

INSTITUTIONS = ("TCIA01", "TCIA02", "CBICA", "2013")
BRATS_DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def draw_brain(shape: Sequence[int], spacing: Sequence[float], *, rng: np.random.Generator,
               grade: str = "HGG") -> Tuple[np.ndarray, np.ndarray]:
    """Draw one skull-stripped FLAIR brain: int16 `(X, Y, Z)` and uint8 labels {0, 1, 2, 4}."""
    shape, spacing = tuple(int(s) for s in shape), np.asarray(spacing, dtype=float)
    extent = (np.asarray(shape) - 1) * spacing
    centre = extent / 2.0 + rng.normal(0.0, 0.01, 3) * extent
    brain_r = extent * np.array([0.36, 0.44, 0.4]) * rng.uniform(0.92, 1.0, 3)
    brain = ellipsoid_mask(shape, spacing, centre, brain_r, exponent=2.3)
    white = ellipsoid_mask(shape, spacing, centre, brain_r * 0.82, exponent=2.3)
    img = np.zeros(shape, np.float32)
    img[brain] = 450.0  # cortex (grey matter)
    img[white] = 350.0  # white matter
    for side in (-1.0, 1.0):  # lateral ventricles
        c = centre + extent * np.array([side * 0.05, -0.02, 0.04])
        img[ellipsoid_mask(shape, spacing, c, extent * np.array([0.03, 0.14, 0.08]))] = 80.0
    # Tumour: oedema around a core (an enhancing rim around necrosis for high grade).
    side = rng.choice([-1.0, 1.0])
    t_c = centre + extent * np.array([side * rng.uniform(0.08, 0.18), rng.uniform(-0.2, 0.2),
                                      rng.uniform(-0.12, 0.12)])
    rot = random_rotation(rng=rng)
    t_r = rng.uniform(0.08, 0.16, 3) * extent.max()
    oedema = ellipsoid_mask(shape, spacing, t_c, t_r, rotation=rot) & brain
    core = ellipsoid_mask(shape, spacing, t_c, t_r * rng.uniform(0.4, 0.6), rotation=rot) & brain
    necrosis = ellipsoid_mask(shape, spacing, t_c, t_r * rng.uniform(0.2, 0.3),
                              rotation=rot) & brain
    labels = np.zeros(shape, np.uint8)
    labels[oedema] = 2
    img[oedema] = rng.uniform(800.0, 1000.0)
    if grade == "HGG":
        labels[core] = 4
        img[core] = 600.0
        labels[necrosis] = 1
        img[necrosis] = 300.0
    else:
        labels[core] = 1
        img[core] = 700.0
    img += smooth_noise(shape, rng=rng, sigma_vox=1.5, std=25.0) * brain
    u = np.ix_(*[np.linspace(0.0, np.pi, n) for n in shape])  # smooth bias field, +-8 %
    bias = 1.0 + 0.08 * sum(np.cos(a + rng.uniform(0, 2 * np.pi)) * rng.uniform(-1, 1) / 3
                            for a in u)
    noisy = np.hypot(img * bias + rng.normal(0.0, 12.0, shape), rng.normal(0.0, 12.0, shape))
    noisy[~brain] = 0.0  # skull-stripped
    return np.clip(np.rint(noisy), 0, 32767).astype(np.int16), labels


def make_brain_phantoms(out_dir, n: int = 6, seed: int = 0, *,
                        shape: Sequence[int] = (128, 128, 80),
                        spacing: Sequence[float] = (1.0, 1.0, 1.0),
                        overwrite: bool = False) -> dict:
    """Write `n` BraTS-like patients under `out_dir/HGG/` and `out_dir/LGG/` (every 4th is LGG).

    Args:
        out_dir: destination folder (created).
        n: number of patients.
        seed: patient k draws from `np.random.default_rng((seed, k))`.
        shape: voxels (x, y, z) (BraTS: 240x240x155 at 1 mm; the default keeps files small).
        spacing: mm.
        overwrite: replace files of the same names (only the files this call writes).

    Returns:
        Summary dict: `out_dir`, `n_cases`, `cases` (patient folders), `seed`, `shape`,
        `generator`.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"`n` must be a positive integer. Received: n={n!r}.")
    check_output_dir(out_dir, name="out_dir")
    cases = []
    for k in range(int(n)):
        pid = f"Brats18_{INSTITUTIONS[k % len(INSTITUTIONS)]}_{100 + k}_1"
        cases.append((pid, os.path.join(os.fspath(out_dir), "LGG" if k % 4 == 3 else "HGG", pid)))
    if not overwrite:
        refuse_to_replace([os.path.join(folder, f"{pid}_{suffix}.nii.gz") for pid, folder in cases
                           for suffix in ("flair", "seg")], where=out_dir, what="phantom files")
    folders = []
    origin = (0.0, -float((shape[1] - 1) * spacing[1]), 0.0)
    for k, (pid, folder) in enumerate(cases):
        grade = "LGG" if k % 4 == 3 else "HGG"
        os.makedirs(folder, exist_ok=True)
        flair, labels = draw_brain(shape, spacing, rng=np.random.default_rng((seed, k)),
                                   grade=grade)
        for suffix, array in (("flair", flair), ("seg", labels)):
            write_volume(array, os.path.join(folder, f"{pid}_{suffix}.nii.gz"), spacing=spacing,
                         origin=origin, direction=BRATS_DIRECTION)
        folders.append(folder)
    return {"out_dir": os.fspath(out_dir), "n_cases": len(folders), "cases": folders,
            "seed": int(seed), "shape": list(shape), "generator": __name__}
