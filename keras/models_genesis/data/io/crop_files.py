"""Crop files: the candidate crops of one scan as a float16 `.npy` file, written and read in pieces.

`models-genesis prepare` writes each NCC/ECC scan's crops once, streamed in chunks, as a `.npy`
file `(n, rows, cols, deps)` float16 in [0, 1] (memory-mappable: `np.load(path, mmap_mode="r")`).
`CropReader` reads single crops back with `os.pread` through a bounded cache of open files
(`max_open`), so memory does not grow with the number of candidates or scans. No Keras here: the
prepare workers import this module only.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Iterable, Sequence

import numpy as np

CROP_DTYPE = np.float16


def write_crop_file(path, chunks: Iterable[np.ndarray], n: int, shape: Sequence[int]) -> str:
    """Stream crops into a `.npy` file `(n, *shape)` float16 (temporary name, then rename).

    Args:
        path: destination `.npy`.
        chunks: arrays `(k, *shape)` in [0, 1], `n` crops in all, written as they come (only one
            chunk is in memory at a time).
        n: total number of crops.
        shape: crop `(rows, cols, deps)`.

    Returns:
        `path`.
    """
    path = os.fspath(path)
    shape = (int(n),) + tuple(int(s) for s in shape)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(CROP_DTYPE)),
              "fortran_order": False, "shape": shape}
    tmp = f"{path}.tmp-{os.getpid()}"
    written = 0
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, dtype=CROP_DTYPE)
            if chunk.shape[1:] != shape[1:]:
                raise ValueError(f"Crops for {path!r} must be {shape[1:]}. Received: "
                                 f"{chunk.shape[1:]}.")
            f.write(chunk.tobytes())
            written += len(chunk)
    if written != shape[0]:
        os.remove(tmp)
        raise ValueError(f"{path!r}: {written} crops written, {shape[0]} announced.")
    os.replace(tmp, path)
    return path


def read_crop_header(path) -> tuple:
    """Return `(shape, dtype, data offset)` of a crop `.npy` file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read(f)
        offset = f.tell()
    if fortran or len(shape) != 4:
        raise ValueError(f"{path!r} must hold C-ordered crops (n, rows, cols, deps). Received: "
                         f"shape {shape}, fortran_order={fortran}.")
    return tuple(shape), np.dtype(dtype), offset


class CropReader:
    """Reads crops `(rows, cols, deps)` from crop files, keeping at most `max_open` files open."""

    def __init__(self, max_open: int = 64):
        if int(max_open) < 1:
            raise ValueError(f"`max_open` must be >= 1. Received: max_open={max_open!r}.")
        self.max_open = int(max_open)
        self._open: "OrderedDict[str, tuple]" = OrderedDict()
        self._lock = threading.Lock()

    def _entry(self, path: str) -> tuple:
        with self._lock:
            if path in self._open:
                self._open.move_to_end(path)
                return self._open[path]
            shape, dtype, offset = read_crop_header(path)
            entry = (os.open(path, os.O_RDONLY), shape, dtype, offset)
            self._open[path] = entry
            while len(self._open) > self.max_open:
                _, old = self._open.popitem(last=False)
                os.close(old[0])
            return entry

    def read(self, paths: Sequence[str], indices: Sequence[int]) -> np.ndarray:
        """Crops `indices[i]` of files `paths[i]`, as float32 `(len(indices), rows, cols, deps)`."""
        out = None
        for i, (path, index) in enumerate(zip(paths, indices)):
            fd, shape, dtype, offset = self._entry(os.fspath(path))
            if not 0 <= int(index) < shape[0]:
                raise IndexError(f"Crop {index} is outside {path!r}, which holds {shape[0]}.")
            size = int(np.prod(shape[1:])) * dtype.itemsize
            raw = os.pread(fd, size, offset + int(index) * size)
            if len(raw) != size:
                raise ValueError(f"{path!r} is truncated at crop {index}.")
            if out is None:
                out = np.empty((len(indices),) + tuple(shape[1:]), np.float32)
            out[i] = np.frombuffer(raw, dtype=dtype).reshape(shape[1:])
        return out

    def close(self) -> None:
        with self._lock:
            for fd, *_ in self._open.values():
                os.close(fd)
            self._open.clear()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
