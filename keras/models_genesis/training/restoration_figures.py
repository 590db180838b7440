"""Figures of a trained restoration model (paper Fig. D.14 and Sec. 5.6 / Fig. 9).

- `restoration_combinations`: one original cube under each of the 12 combinations of
  transformations (paper Fig. 1 / D.14, identity included), and each model's restoration.
- `difference_map`: an untransformed scan, its restoration and their difference (input minus
  output); the paper reads abnormal regions off this map (Sec. 5.6).

Each function returns its arrays (so they can be checked) and draws the middle slice along the
depth axis into a PNG with matplotlib's Agg backend.
"""

from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np

from models_genesis.plotting import new_figure, save_figure
from models_genesis.transformations.unified import COMBINATIONS, apply_combination, combination_name


def _restore(model, cubes: np.ndarray) -> np.ndarray:
    """Run `model` on cubes `(B, r, c, d)` in [0, 1]; return `(B, r, c, d)` float32."""
    out = model(np.asarray(cubes, np.float32)[..., None], training=False)
    return keras.ops.convert_to_numpy(out)[..., 0].astype(np.float32)


def _as_models(models) -> Dict[str, object]:
    if isinstance(models, Mapping):
        if not models:
            raise ValueError("`models` must hold at least one model. Received: models={}.")
        return dict(models)
    return {"restoration": models}


def _check_cube(cube) -> np.ndarray:
    cube = np.asarray(cube, np.float32)
    if cube.ndim == 4 and cube.shape[-1] == 1:
        cube = cube[..., 0]
    if cube.ndim != 3:
        raise ValueError(f"`cube` must be (rows, cols, deps) or (rows, cols, deps, 1). "
                         f"Received: shape={cube.shape}.")
    return cube


def restoration_combinations(models, cube, *, seed: int = 0) -> Dict[str, object]:
    """Transform `cube` by each of the 12 combinations and restore it with each model.

    Args:
        models: a restoration model, or a dict `name -> model` (e.g. one per training scheme,
            the columns of Fig. D.14).
        cube: `(rows, cols, deps)` (or with a trailing channel) in [0, 1].
        seed: seed of the transformations' parameters (the same for every model).

    Returns:
        dict with `combinations` (12 names, `"identity"` first), `original` `(r, c, d)`, `transformed`
        `(12, r, c, d)` and `restored` (`name -> (12, r, c, d)`).
    """
    cube, models = _check_cube(cube), _as_models(models)
    names = [combination_name(k) for k in COMBINATIONS]
    transformed = np.stack([
        apply_combination(cube, k, rng=np.random.default_rng(seed)) for k in COMBINATIONS])
    restored = {key: _restore(model, transformed) for key, model in models.items()}
    return {"combinations": names, "original": cube, "transformed": transformed,
            "restored": restored}


def difference_map(model, cube) -> Dict[str, np.ndarray]:
    """Restore an untransformed cube; return `input`, `restored` and `difference` = input - restored.

    Args:
        model: a restoration model.
        cube: `(rows, cols, deps)` (or with a trailing channel) in [0, 1].

    Returns:
        dict of `(r, c, d)` float32 arrays; `difference` lies in [-1, 1].
    """
    cube = _check_cube(cube)
    restored = _restore(model, cube[None])[0]
    return {"input": cube, "restored": restored, "difference": cube - restored}


def plot_restoration_rows(rows: Sequence[Tuple[str, List[np.ndarray]]], columns: Sequence[str],
                          path, *, title: Optional[str] = None, diverging: Sequence[int] = ()) -> str:
    """Draw a grid of middle depth slices: one row per `(label, [cube per column])`.

    Args:
        rows: `(label, cubes)` pairs; each cube `(r, c, d)` or `(r, c, d, 1)`.
        columns: column titles.
        path: PNG file, written atomically.
        title: figure title.
        diverging: column indices drawn with a diverging map over [-1, 1] (difference maps);
            the others in grey over [0, 1].

    Returns:
        `path`.
    """
    path = os.fspath(path)
    n_rows, n_cols = len(rows), len(columns)
    fig, axes = new_figure(n_rows, n_cols, figsize=(1.8 * n_cols + 1.2, 1.8 * n_rows + 0.4),
                           squeeze=False)
    for i, (label, cubes) in enumerate(rows):
        for j, cube in enumerate(cubes):
            cube = np.asarray(cube)
            cube = cube[..., 0] if cube.ndim == 4 else cube
            ax = axes[i, j]
            if j in diverging:
                ax.imshow(cube[:, :, cube.shape[2] // 2].T, cmap="coolwarm", vmin=-1, vmax=1)
            else:
                ax.imshow(cube[:, :, cube.shape[2] // 2].T, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=8)
        axes[i, 0].set_ylabel(label, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97) if title else None)
    return save_figure(fig, path, dpi=80)


def plot_restoration_combinations(models, cube, path, *, seed: int = 0) -> str:
    """Fig. D.14: for each of the 12 combinations, transformed input, each restoration, original."""
    res = restoration_combinations(models, cube, seed=seed)
    keys = list(res["restored"])
    rows = [(name, [res["transformed"][k], *[res["restored"][m][k] for m in keys], res["original"]])
            for k, name in enumerate(res["combinations"])]
    return plot_restoration_rows(rows, ["transformed", *keys, "original"], path,
                                 title="Restoration of the 12 combinations (Fig. D.14)")


def plot_difference_map(model, cube, path) -> str:
    """Sec. 5.6 / Fig. 9: an untransformed cube, its restoration and input - restoration."""
    res = difference_map(model, cube)
    return plot_restoration_rows([("scan", [res["input"], res["restored"], res["difference"]])],
                                 ["input", "restoration", "input - restoration"], path,
                                 diverging=(2,), title="Difference map (Sec. 5.6)")


def draw_run_figures(model, cube, out_dir, *, seed: int = 0) -> Dict[str, str]:
    """Draw both figures of a pre-training run into `out_dir`; return their paths."""
    out_dir = os.fspath(out_dir)
    return {
        "combinations": plot_restoration_combinations(
            model, cube, os.path.join(out_dir, "restoration_combinations.png"), seed=seed),
        "difference_map": plot_difference_map(
            model, cube, os.path.join(out_dir, "difference_map.png")),
    }
