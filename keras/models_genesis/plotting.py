"""Figures written to files without pyplot, so no global backend is switched.

The package's plots build a `matplotlib.figure.Figure` directly (it renders with Agg when saved),
which leaves a notebook's inline backend and a user's interactive session untouched, and write the
file atomically: a temporary name with the same extension, then a rename.
"""

from __future__ import annotations

import os


def new_figure(nrows: int = 1, ncols: int = 1, *, figsize, squeeze: bool = True):
    """Return `(figure, axes)` like `pyplot.subplots`, without pyplot's global state."""
    # matplotlib (0.9 s) on the first figure, not when a module importing plotting loads.
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def save_figure(fig, path, **savefig_kwargs) -> str:
    """Write `fig` to `path` atomically (format from the extension, PNG by default); return it."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    root, ext = os.path.splitext(path)
    ext = ext or ".png"
    tmp = f"{root}.tmp{ext}"
    fig.savefig(tmp, format=ext[1:], **savefig_kwargs)
    os.replace(tmp, path)
    return path
