"""How well a pre-trained model restores each of the 12 transformation combinations.

The proxy task's single validation MSE mixes easy pairs (local shuffling, where returning the
input is already close) with unrecoverable ones (the noise outside an out-painting box). This
table separates them, as the paper's Fig. D.14 does visually: for each combination, the MSE of the
model's restoration and of doing nothing (returning the transformed input).
"""

from __future__ import annotations

from typing import Optional

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
