"""How well a restoration model restores: overall, and for each of the 12 combinations.

`evaluate_restoration` gives the proxy task's validation MSE next to two models that learned
nothing: doing nothing (returning the transformed input) and the best constant. That single MSE
mixes easy pairs (local shuffling, where returning the input is already close) with
unrecoverable ones (the noise outside an out-painting box); `restoration_by_combination`
separates them, as the paper's Fig. D.14 does visually: for each combination, the MSE of the
model's restoration and of doing nothing.
"""

from __future__ import annotations

from typing import Dict, Optional

import keras
import numpy as np
import pandas as pd

from models_genesis.transformations.unified import (
    COMBINATIONS,
    TransformConfig,
    apply_combination,
    combination_name,
)


def restoration_by_combination(model, cubes, *, seed: int = 0,
                               config: Optional[TransformConfig] = None,
                               batch_size: int = 8) -> pd.DataFrame:
    """MSE of `model` and of the identity for each of the 12 combinations.

    Args:
        model: maps `(B, r, c, d, 1)` transformed cubes in [0, 1] to restorations.
        cubes: originals `(N, r, c, d)` in [0, 1] (e.g. a validation cube file).
        seed: the transformations of combination k use `default_rng((seed, k))`.
        config: transformation sizes and counts; None uses the release's.
        batch_size: prediction batch size.

    Returns:
        DataFrame indexed by combination name with columns `model_mse`, `identity_mse` and
        `ratio` (model / identity; below 1: the model restores better than doing nothing).
    """
    cubes = np.asarray(cubes, dtype=np.float32)
    if cubes.ndim != 4:
        raise ValueError(f"`cubes` must be (N, rows, cols, deps). Received: shape={cubes.shape}.")
    rows = []
    for k, combination in enumerate(COMBINATIONS):
        rng = np.random.default_rng((seed, k))
        x = np.stack([apply_combination(c, combination, rng=rng, config=config) for c in cubes])
        pred = np.asarray(model.predict(x[..., None], batch_size=batch_size, verbose=0))[..., 0]
        model_mse = float(np.mean((pred - cubes) ** 2))
        identity_mse = float(np.mean((x - cubes) ** 2))
        rows.append({"combination": combination_name(combination), "model_mse": model_mse,
                     "identity_mse": identity_mse,
                     "ratio": model_mse / identity_mse if identity_mse > 0 else float("inf")})
    return pd.DataFrame(rows).set_index("combination")


def evaluate_restoration(model, dataset, steps: Optional[int] = None) -> Dict[str, float]:
    """Validation MSE of `model`, of the identity (returning the transformed input) and of the
    best constant (the originals' mean voxel value: a model that learned nothing about images).

    Args:
        model: maps transformed cubes `(B, r, c, d, 1)` to restorations; None gives the
            identity and the constant only (`model_mse` NaN).
        dataset: yields `(transformed, original)` batches (e.g. a validation `RestorationDataset`);
            an original `(B, r, c, d, 2)` carries a mask in its second channel (in-painting),
            and every MSE is then taken over the masked voxels only.
        steps: batches to use; None -> all.

    Returns:
        `{"model_mse", "identity_mse", "constant_mse", "ratio", "n_cubes"}`; ratio = model /
        identity.
    """
    n_batches = len(dataset) if steps is None else min(int(steps), len(dataset))
    sums, n = np.zeros(4), 0
    for i in range(n_batches):
        x, y = (np.asarray(a, np.float64) for a in dataset[i])
        y, weight = (y[..., :1], y[..., 1:]) if y.shape[-1] == 2 else (y, np.ones_like(y))
        axes = tuple(range(1, y.ndim))  # (1, 2, 3, 4); (1, 2, 3) for 2D
        count = np.maximum(weight.sum(axis=axes), 1.0)

        def cube_means(a):  # per-cube mean over the weighted (e.g. cutout) voxels
            return (weight * a).sum(axis=axes) / count

        pred = (np.full_like(y, np.nan) if model is None else
                keras.ops.convert_to_numpy(model(x.astype(np.float32), training=False)))
        sums += [cube_means((pred - y) ** 2).sum(), cube_means((x - y) ** 2).sum(),
                 cube_means(y).sum(), cube_means(y ** 2).sum()]
        n += len(x)
    model_mse, identity_mse, mean, mean_sq = (sums / max(n, 1)).tolist()
    return {"model_mse": model_mse, "identity_mse": identity_mse,
            "constant_mse": mean_sq - mean ** 2,
            "ratio": model_mse / identity_mse if identity_mse > 0 else float("nan"), "n_cubes": n}
