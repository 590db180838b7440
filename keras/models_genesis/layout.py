"""Array layouts at the API edges.

The release feeds channels_first batches `(N, 1, rows, cols, deps)`; this package computes in
channels_last `(N, rows, cols, deps, 1)` (TensorFlow has no fast CPU kernel for channels_first
Conv3D). These two functions convert numpy arrays of rank 5 (a batch) or 4 (one sample) between
the two; a model built with `data_format="channels_first"` does the same transpose inside itself.
"""

from __future__ import annotations

import numpy as np

DATA_FORMATS = ("channels_last", "channels_first")


def _check(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in (4, 5):
        raise ValueError(
            f"`{name}` must be a batch (N, ...) of rank 5 or one sample of rank 4. "
            f"Received: shape={x.shape}."
        )
    return x


def to_channels_last(x) -> np.ndarray:
    """`(N, C, rows, cols, deps)` -> `(N, rows, cols, deps, C)` (rank 4: no batch axis)."""
    x = _check(x, "x")
    return np.moveaxis(x, -4, -1)


def to_channels_first(x) -> np.ndarray:
    """`(N, rows, cols, deps, C)` -> `(N, C, rows, cols, deps)` (rank 4: no batch axis)."""
    x = _check(x, "x")
    return np.moveaxis(x, -1, -4)


def convert_layout(x, source: str, target: str) -> np.ndarray:
    """Convert `x` from layout `source` to `target` (either of `DATA_FORMATS`)."""
    for arg, value in (("source", source), ("target", target)):
        if value not in DATA_FORMATS:
            raise ValueError(f"`{arg}` must be one of {DATA_FORMATS}. Received: {arg}={value!r}.")
    if source == target:
        return _check(x, "x")
    return to_channels_last(x) if target == "channels_last" else to_channels_first(x)
