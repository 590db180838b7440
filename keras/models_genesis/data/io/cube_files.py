"""Cube files: the proxy-task data on disk, in the release's naming.

The release's extractor writes `bat_{scale}_{rows}x{cols}x{deps}_{subset}.npy` while its trainer
reads `bat_{scale}_s_{rows}x{cols}x{deps}_{subset}.npy` (docs/release_reference.md, 'Cube
extraction'). We write the trainer's name and read both. Each file holds an array `(N, rows, cols,
deps)` with values in `[0, 1]`, stored as float16 or float32; it is opened memory-mapped so memory
stays flat in the data set's size.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Iterable, List, Optional, Sequence

import numpy as np

from models_genesis.outputs import claim_output_dir

_NAME = re.compile(r"^bat_(?P<scale>\d+)_(?:s_)?(?P<r>\d+)x(?P<c>\d+)x(?P<d>\d+)_(?P<subset>\w+?)\.npy$")


def cube_file_name(scale: int, cube_shape: Sequence[int], subset) -> str:
    """Return the trainer's file name, e.g. `bat_32_s_64x64x32_0.npy`."""
    r, c, d = (int(v) for v in cube_shape)
    return f"bat_{int(scale)}_s_{r}x{c}x{d}_{subset}.npy"


def claim_cube_dir(out_dir, command: str, *, overwrite: bool = False, inputs=()) -> str:
    """Check before any scan is read that `command` (`extract-cubes`, `extract-xray-crops`) may
    write cube files in `out_dir`: new, empty, or its own (its `bat_*.json` manifests name it;
    cube files without manifests, of runs older than the stamp, count as `extract-cubes`');
    anything else only with `overwrite`. `out_dir` must not be, lie in or hold the folders
    `inputs` (`(name, folder)` pairs: the scans' folders)."""
    legacy = None
    if command == "extract-cubes":
        def legacy(folder):
            return bool(glob.glob(os.path.join(glob.escape(folder), "bat_*.npy")))
    return claim_output_dir(out_dir, command, markers=("bat_*.json",), legacy=legacy,
                            overwrite=overwrite, inputs=inputs, name="out_dir")


def parse_cube_file_name(name: str) -> Optional[dict]:
    """Parse a cube file name (either variant); return None when it is not one.

    Returns:
        dict with `scale` (int), `cube_shape` (tuple of 3 ints) and `subset` (str).
    """
    m = _NAME.match(os.path.basename(name))
    if not m:
        return None
    return {
        "scale": int(m["scale"]),
        "cube_shape": (int(m["r"]), int(m["c"]), int(m["d"])),
        "subset": m["subset"],
    }


def find_cube_files(directory, subsets: Iterable, cube_shape: Optional[Sequence[int]] = None,
                    scale: Optional[int] = None) -> List[str]:
    """Find the cube file of each subset in `directory`, in the order of `subsets`.

    Args:
        directory: folder holding `bat_*.npy` files.
        subsets: subset names or numbers, e.g. `[0, 1, 2, 3, 4]`.
        cube_shape: keep only files of this (rows, cols, deps); None accepts any single shape.
        scale: keep only files of this scale (cubes per scan); None accepts any.

    Raises:
        FileNotFoundError: a subset has no matching file (the message names the folder and the
            file names searched for).
        ValueError: a subset has several matching files (ambiguous), or the files disagree on
            their cube shape.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Cube folder not found: {directory!r}.")
    parsed = [(n, parse_cube_file_name(n)) for n in sorted(os.listdir(directory))]
    parsed = [(n, p) for n, p in parsed if p is not None]
    if cube_shape is not None:
        parsed = [(n, p) for n, p in parsed if p["cube_shape"] == tuple(int(v) for v in cube_shape)]
    if scale is not None:
        parsed = [(n, p) for n, p in parsed if p["scale"] == int(scale)]
    out = []
    for subset in subsets:
        hits = [n for n, p in parsed if p["subset"] == str(subset)]
        if not hits:
            raise FileNotFoundError(
                f"No cube file for subset {subset!r} in {directory!r} (looked for "
                f"'bat_{{scale}}_s_{{rows}}x{{cols}}x{{deps}}_{subset}.npy', with or without '_s_', "
                f"cube_shape={cube_shape}, scale={scale}). Run `models-genesis extract-cubes` first."
            )
        if len(hits) > 1:
            raise ValueError(
                f"Several cube files for subset {subset!r} in {directory!r}: {hits}. "
                f"Pass cube_shape= or scale= to choose one."
            )
        out.append(os.path.join(directory, hits[0]))
    shapes = {parse_cube_file_name(p)["cube_shape"] for p in out}
    if len(shapes) > 1:
        raise ValueError(f"Cube files of different shapes: {sorted(shapes)} in {out}.")
    return out


def check_cube_values(path, cubes: np.ndarray, *, chunk: int = 256) -> None:
    """Check, in one pass before training, that the cubes of a file are usable: finite, within
    [0, 1] (the normalised intensities the proxy tasks restore, Sec. 2.1) and not all one value.

    The pass reads `chunk` cubes at a time (a memory-mapped file stays on disk), so a NaN is
    reported here, naming the file and the cube, not from inside a training step.

    Raises:
        ValueError: naming `path`, the first bad cube and what is wrong.
    """
    lo, hi = np.inf, -np.inf
    for start in range(0, len(cubes), chunk):
        block = np.asarray(cubes[start:start + chunk], dtype=np.float32)
        finite = np.isfinite(block)
        if not finite.all():
            k = start + int(np.argmin(finite.reshape(len(block), -1).all(axis=1)))
            raise ValueError(f"Cube file {os.fspath(path)!r} holds NaN or infinite values (first "
                             f"in cube {k}); re-extract the cubes from the scans.")
        bmin, bmax = float(block.min()), float(block.max())
        if bmin < -1e-3 or bmax > 1 + 1e-3:
            raise ValueError(f"Cube file {os.fspath(path)!r} holds values in [{bmin:.4g}, "
                             f"{bmax:.4g}] (cubes {start}..{start + len(block) - 1}); cubes must "
                             "be intensities scaled to [0, 1], as extract-cubes writes them.")
        lo, hi = min(lo, bmin), max(hi, bmax)
    if len(cubes) and lo == hi:
        raise ValueError(f"Cube file {os.fspath(path)!r} holds one value only ({lo:g} in every "
                         "voxel): there is nothing to restore or learn from.")


def open_cubes(path, cube_shape: Optional[Sequence[int]] = None, mmap: bool = True) -> np.ndarray:
    """Open a cube file memory-mapped and check its layout.

    Args:
        path: a `.npy` file holding `(N, rows, cols, deps)`.
        cube_shape: expected (rows, cols, deps); None accepts any.
        mmap: open read-only memory-mapped (default) instead of loading.

    Returns:
        The array, `(N, rows, cols, deps)`, in its stored dtype (float16 or float32).

    Raises:
        FileNotFoundError, ValueError: missing or unreadable file, wrong rank or shape.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Cube file not found: {path!r}.")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for truncated or foreign files
        raise ValueError(f"Cannot read cube file {path!r} as a .npy array: {exc}") from exc
    if arr.ndim != 4:
        raise ValueError(
            f"Cube file {path!r} must hold an array (N, rows, cols, deps). "
            f"Received: shape={arr.shape}."
        )
    if cube_shape is not None and tuple(arr.shape[1:]) != tuple(int(v) for v in cube_shape):
        raise ValueError(
            f"Cube file {path!r} holds cubes of shape {tuple(arr.shape[1:])}, expected "
            f"{tuple(cube_shape)}."
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"Cube file {path!r} must hold floats in [0, 1]. Received: dtype={arr.dtype}.")
    return arr


def save_cubes(path, cubes: np.ndarray, dtype="float32") -> str:
    """Write cubes `(N, rows, cols, deps)` in [0, 1] atomically (temporary name, then rename)."""
    path = os.fspath(path)
    cubes = np.asarray(cubes)
    if cubes.ndim != 4:
        raise ValueError(f"cubes must be (N, rows, cols, deps). Received: shape={cubes.shape}.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npy"
    np.save(tmp, cubes.astype(dtype, copy=False))
    os.replace(tmp, path)
    return path
