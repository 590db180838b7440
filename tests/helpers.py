"""Helpers shared by several test files: tiny synthetic target-task data and cube files.

Fixtures (`rng`) live in `tests/conftest.py`; plain functions that build data live here, so that
no test file imports from another test file.
"""

import os

import numpy as np

from models_genesis.data.io.cube_files import cube_file_name, save_cubes
from models_genesis.data.target_tasks.common import TargetData

# Crop size of the tiny fine-tuning data (divisible by 8, the U-Net's three poolings).
SHAPE = (16, 16, 8)
# Cube size of the tiny pre-training data: the release's outer cutout (3-voxel margin) needs at
# least 10 voxels per axis.
CUBE_SHAPE = (16, 16, 16)


def make_blobs(rng, n, segmentation=True):
    """Crops holding a bright blob (mask = blob) or, for classification, a blob in half of them."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1)
    centers = rng.uniform(4, 12, (n, 3)) * np.array([1, 1, 0.5])
    radius = rng.uniform(2, 4, (n, 1, 1, 1))
    dist = np.linalg.norm(grid[None] - centers[:, None, None, None], axis=-1)
    masks = (dist < radius).astype(np.float32)
    labels = (np.arange(n) % 2).astype(np.int64)
    if not segmentation:
        masks = masks * labels[:, None, None, None]
    x = np.clip(0.2 + 0.6 * masks + rng.normal(0, 0.05, masks.shape), 0, 1).astype(np.float32)
    return x[..., None], (masks[..., None] if segmentation else labels)


def make_data(rng, segmentation=True, n=(8, 4, 6)):
    """`TargetData` of blob crops (NCS-like segmentation or NCC-like classification)."""
    parts = [make_blobs(rng, k, segmentation) for k in n]
    return TargetData(task="ncs" if segmentation else "ncc",
                      x_train=parts[0][0], y_train=parts[0][1], x_valid=parts[1][0],
                      y_valid=parts[1][1], x_test=parts[2][0], y_test=parts[2][1])


def write_release_arrays(folder, data):
    """Save segmentation `data` as the release's arrays `{x,m}_{split}_{r}x{c}x{d}.npy` in the new
    folder `folder`; return it."""
    folder.mkdir()
    size = "x".join(map(str, data.x_train.shape[1:4]))
    for split in ("train", "valid", "test"):
        np.save(folder / f"x_{split}_{size}.npy", getattr(data, f"x_{split}")[..., 0])
        np.save(folder / f"m_{split}_{size}.npy", getattr(data, f"y_{split}")[..., 0])
    return folder


def write_cubes(folder, rng, shape=CUBE_SHAPE, n=4, subsets=range(7)):
    """Random cube files `bat_{n}_s_..._{subset}.npy` for each subset in `folder`; return it."""
    for s in subsets:
        save_cubes(os.path.join(folder, cube_file_name(n, shape, s)),
                   rng.random((n, *shape), dtype=np.float32))
    return str(folder)


def probe_crops(rng, n, shape=SHAPE):
    """Crops whose label shows in their mean intensity (a linear probe can find it)."""
    y = np.arange(n) % 2
    x = (rng.random((n, *shape, 1)) * 0.5 + 0.4 * y[:, None, None, None, None]).astype("float32")
    return x, y.astype("int64")


def probe_data(seed=0, n=(24, 8, 20)):
    """NCC-like `TargetData` of `probe_crops` (train, validation, test counts `n`)."""
    rng = np.random.default_rng(seed)
    (xa, ya), (xv, yv), (xt, yt) = (probe_crops(rng, k) for k in n)
    return TargetData("ncc", xa, ya, xv, yv, xt, yt, info={"counts": {"train": n[0]}})
