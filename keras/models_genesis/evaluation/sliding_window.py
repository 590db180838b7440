"""Whole-volume inference by overlapping sliding windows with blending.

LCS and BMS scans are larger than the training crop (64x64x32; docs/release_reference.md,
'Target tasks'). The volume is covered by windows whose starts step by `window * (1 - overlap)`
(the last one is moved back to end at the border); windows are gathered by fancy indexing,
predicted in batches, weighted (Gaussian, sigma = window / 8, or constant) and averaged:
out = sum(w * pred) / sum(w). A volume smaller than the window is padded, and the result cropped
back. Writing a scan's mask to a file, with a task's preprocessing, is
`evaluation.whole_volume.segment_volume_to_file`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

_BLENDS = ("gaussian", "constant")


def _checked(volume, window, overlap, blend, data_format, batch_size):
    """`(volume, window)` as an array and a tuple of ints, after checking every argument."""
    volume = np.asarray(volume)
    if volume.ndim not in (3, 4) or volume.size == 0:
        raise ValueError(f"`volume` must be a non-empty (X, Y, Z) or (X, Y, Z, C) array. "
                         f"Received: volume.shape={volume.shape}.")
    window = tuple(int(w) for w in window)
    if len(window) != 3 or min(window) < 1:
        raise ValueError(f"`window` must be 3 positive sizes. Received: window={window}.")
    if not 0.0 <= float(overlap) < 1.0:
        raise ValueError(f"`overlap` must be in [0, 1). Received: overlap={overlap}.")
    if blend not in _BLENDS:
        raise ValueError(f"`blend` must be one of {_BLENDS}. Received: blend={blend!r}.")
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError("`data_format` must be 'channels_last' or 'channels_first'. "
                         f"Received: data_format={data_format!r}.")
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size}.")
    return volume, window


def _predict_windows(predict, windows: np.ndarray, data_format: str) -> np.ndarray:
    """The model's map of a batch of windows `(B, wx, wy, wz, C)`, as `(B, wx, wy, wz, K)`."""
    batch = windows.astype(np.float32)
    if data_format == "channels_first":
        batch = np.moveaxis(batch, -1, 1)
    pred = predict(batch)
    if data_format == "channels_first" and pred.ndim == 5:
        pred = np.moveaxis(pred, 1, -1)
    if pred.ndim != 5 or pred.shape[:4] != windows.shape[:4]:
        raise ValueError(f"The model must return a per-voxel map of shape {windows.shape[:4]} "
                         f"+ (channels,) ({data_format}). Received: shape {pred.shape}.")
    return pred


def _window_starts(size: int, window: int, overlap: float) -> np.ndarray:
    step = max(1, int(window * (1.0 - overlap)))
    n = int(np.ceil(max(size - window, 0) / step)) + 1
    return np.minimum(np.arange(n) * step, size - window)


def _blend_weights(window: Sequence[int], blend: str) -> np.ndarray:
    if blend == "constant":
        return np.ones(tuple(window), np.float32)
    axes = []
    for w in window:
        c = (w - 1) / 2.0
        axes.append(np.exp(-0.5 * ((np.arange(w) - c) / (w / 8.0)) ** 2))
    weight = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weight = weight / weight.max()
    # Keep border voxels' weight positive, so every voxel is covered by a non-zero weight.
    return np.maximum(weight, 1e-3).astype(np.float32)


def _predictor(model) -> Callable[[np.ndarray], np.ndarray]:
    if hasattr(model, "predict_on_batch"):
        return lambda batch: np.asarray(model.predict_on_batch(batch))
    if callable(model):
        return lambda batch: np.asarray(model(batch))
    raise TypeError(f"`predict_fn_or_model` must be a Keras model or a callable. "
                    f"Received: {type(model).__name__}.")


def sliding_window_inference(predict_fn_or_model, volume, window: Sequence[int] = (64, 64, 32),
                             overlap: float = 0.5, batch_size: int = 4, blend: str = "gaussian",
                             data_format: str = "channels_last", pad_value: float = 0.0,
                             progress: bool = True) -> np.ndarray:
    """Predict a whole volume of any size with overlapping windows.

    Args:
        predict_fn_or_model: a Keras model (uses `predict_on_batch`) or a function mapping a batch
            (B, wx, wy, wz, C) (channels_first: (B, C, wx, wy, wz)) to probabilities
            (B, wx, wy, wz, K) (channels_first: (B, K, wx, wy, wz)).
        volume: (X, Y, Z) or (X, Y, Z, C) array (channels last), already normalised.
        window: window size (wx, wy, wz), the model's input size.
        overlap: fraction of a window shared with its neighbour, in [0, 1).
        batch_size: windows per model call.
        blend: `"gaussian"` (centre voxels weigh more) or `"constant"` (plain average).
        data_format: the model's layout, `"channels_last"` or `"channels_first"`.
        pad_value: value padding a volume smaller than the window.
        progress: show a tqdm bar over batches.

    Returns:
        float32 probability map (X, Y, Z) when the model has one output channel, else
        (X, Y, Z, K).

    Raises:
        ValueError: bad `volume`, `window`, `overlap`, `blend`, `data_format` or model output.
    """
    volume, window = _checked(volume, window, overlap, blend, data_format, batch_size)
    predict = _predictor(predict_fn_or_model)

    vol = volume[..., None] if volume.ndim == 3 else volume
    size = vol.shape[:3]
    pad = [(0, max(0, w - s)) for s, w in zip(size, window)]
    if any(p[1] for p in pad):
        vol = np.pad(vol, pad + [(0, 0)], mode="constant", constant_values=pad_value)
    padded = vol.shape[:3]

    grids = np.meshgrid(*[_window_starts(s, w, overlap) for s, w in zip(padded, window)],
                        indexing="ij")
    starts = np.stack([g.ravel() for g in grids], axis=1)  # (n_windows, 3)
    offsets = [np.arange(w) for w in window]
    weight = _blend_weights(window, blend)[..., None]
    acc = None
    norm = np.zeros(padded, np.float32)

    batches = range(0, len(starts), int(batch_size))
    for b0 in tqdm(batches, desc="sliding windows", unit="batch", disable=not progress):
        s = starts[b0:b0 + int(batch_size)]
        ix = (s[:, 0, None] + offsets[0])[:, :, None, None]
        iy = (s[:, 1, None] + offsets[1])[:, None, :, None]
        iz = (s[:, 2, None] + offsets[2])[:, None, None, :]
        pred = _predict_windows(predict, vol[ix, iy, iz], data_format)  # (B, wx, wy, wz, K)
        if acc is None:
            acc = np.zeros(padded + (pred.shape[-1],), np.float32)
        pred = pred.astype(np.float32) * weight
        for (x, y, z), p in zip(s, pred):
            acc[x:x + window[0], y:y + window[1], z:z + window[2]] += p
            norm[x:x + window[0], y:y + window[1], z:z + window[2]] += weight[..., 0]

    out = acc[: size[0], : size[1], : size[2]] / norm[: size[0], : size[1], : size[2], None]
    return out[..., 0] if out.shape[-1] == 1 else out
