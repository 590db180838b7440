"""Figure: one cube under each scheme and each of the 12 combinations (paper Fig. 2 / Fig. D.13)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from models_genesis.plotting import new_figure, save_figure
from models_genesis.transformations._checks import as_cube
from models_genesis.transformations.unified import (
    COMBINATIONS, SCHEMES, TransformConfig, apply_combination, combination_name, genesis_transform,
)


def _middle(a: np.ndarray) -> np.ndarray:
    return a[..., a.shape[-1] // 2] if a.ndim == 3 else a


def plot_transformations(cube, path, *, seed: int = 0, config: Optional[TransformConfig] = None) -> str:
    """Save a figure of `cube` under each of `SCHEMES` and each of `COMBINATIONS` (middle slice).

    Args:
        cube: `(rows, cols, deps)` or `(rows, cols)` in [0, 1].
        path: output image file (`.png`, `.pdf`, ...); written atomically.
        seed: seeds every panel (`default_rng((seed, panel))`), so the figure is reproducible.
        config: sizes and counts for the combinations (None: release defaults). Schemes use
            `TransformConfig.for_scheme` with flips off, so panels stay aligned with the original.

    Returns:
        `path`.
    """
    arr, _ = as_cube(cube, "cube")
    panels = [("original", arr)]
    for k, name in enumerate(SCHEMES):
        cfg = TransformConfig.for_scheme(name, flip_prob=0.0)
        panels.append((f"scheme: {name}", genesis_transform(arr, rng=np.random.default_rng((seed, k)),
                                                             config=cfg)[0]))
    for k, comb in enumerate(COMBINATIONS):
        out = apply_combination(arr, comb, rng=np.random.default_rng((seed, 100 + k)), config=config)
        panels.append((combination_name(comb).replace("+", "\n+ "), out))
    cols = 6
    rows = int(np.ceil(len(panels) / cols))
    fig, axes = new_figure(rows, cols, figsize=(2.2 * cols, 2.6 * rows))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, img) in zip(axes.ravel(), panels):
        ax.imshow(_middle(img).T, cmap="gray", vmin=0.0, vmax=1.0, origin="lower")
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
