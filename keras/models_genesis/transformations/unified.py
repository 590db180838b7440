"""The unified self-supervised scheme: transformations composed with probabilities (paper Sec. 2.2).

Order (docs/release_reference.md, 'Transformations'): paired flip (augmentation), local pixel
shuffling, non-linear intensity, then painting: inner cutout with probability `inpaint_rate`,
otherwise outer cutout (never both). The target is the original cube, flipped with the input. Named
schemes give the paper's ablation (Fig. 3): `genesis` (combined, release probabilities), `identity`
(no transformation: the target is restored from itself), and one transformation applied to every
pair (`nonlinear`, `local_shuffling`, `outer_cutout`, `inner_cutout`). Flips are augmentation and
stay on in every scheme; `TransformConfig(flip_prob=0)` turns them off.

The 12 combinations (2 shuffling x 2 non-linear x 3 painting, identity included) are listed in
`COMBINATIONS`; `apply_combination` applies one of them deterministically (paper Fig. 2 / D.13).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from models_genesis.transformations._checks import (
    MARGIN, as_cube, check_count, check_prob, restore_channel,
)
from models_genesis.transformations.flip import (
    FLIP_CHOICES, FLIP_PROB, MAX_FLIPS, apply_flip, sample_flip_params,
)
from models_genesis.transformations.inner_cutout import (
    CONTINUE_PROB as INNER_CONTINUE_PROB, MAX_BOXES, MAX_SIZE, MIN_SIZE, apply_inner_cutout,
    sample_inner_cutout_params,
)
from models_genesis.transformations.local_shuffling import (
    MAX_WINDOW, MIN_WINDOW, N_WINDOWS, apply_local_shuffling, sample_local_shuffling_params,
)
from models_genesis.transformations.nonlinear import (
    INVERT_PROB, TABLE_SIZE, apply_nonlinear, sample_nonlinear_params,
)
from models_genesis.transformations.outer_cutout import (
    CONTINUE_PROB as OUTER_CONTINUE_PROB, MAX_CUT, MAX_EXTRA_BOXES, MIN_CUT, apply_outer_cutout,
    sample_outer_cutout_params,
)

SCHEMES = ("genesis", "identity", "nonlinear", "local_shuffling", "outer_cutout", "inner_cutout")
TRANSFORMATIONS = ("local_shuffling", "nonlinear", "inner_cutout", "outer_cutout")

# Every combination of the four transformations the unified scheme can produce, in the order of
# application; outer and inner cutout exclude each other. `()` is the identity.
COMBINATIONS: Tuple[Tuple[str, ...], ...] = tuple(
    tuple(name for name in (local, nonlinear, paint) if name)
    for local in ("", "local_shuffling")
    for nonlinear in ("", "nonlinear")
    for paint in ("", "inner_cutout", "outer_cutout")
)


@dataclass(frozen=True)
class TransformConfig:
    """Every probability, size and count of the unified scheme (release defaults,
    docs/release_reference.md, 'Transformations').

    Sizes given as `(num, den)` mean `num * dim // den` per axis, like the release's integer
    arithmetic, so any cube size (and 2D slices) work.

    Attributes:
        flip_prob: probability of each further flip (0.4); `flip_max`: most flips (3).
        flip_choices: axes a flip draws from (the release's `(None, 0, 1)`: None is its no-op
            channel-axis draw, depth is never flipped; `(0, 1, 2)` flips depth too).
        local_prob: probability of local pixel shuffling (0.5).
        local_windows: number of shuffling windows (10,000; the paper text says 1,000).
        local_max_window, local_min_window: window side bounds ((1, 10) i.e. dim//10, and 1).
        nonlinear_prob: probability of the Bezier intensity map (0.9).
        nonlinear_invert_prob: share of inverting (decreasing) curves (0.5).
        nonlinear_table_size: entries of the Bezier lookup table (4097).
        paint_prob: probability of painting (0.9).
        inpaint_rate: probability that painting is inner cutout (0.2); else outer cutout (0.8).
        inner_max_boxes, inner_continue_prob, inner_min_size, inner_max_size: 5, 0.95, (1, 6), (1, 3).
        outer_max_extra_boxes, outer_continue_prob, outer_min_cut, outer_max_cut: 4, 0.95, (3, 7), (4, 7).
        margin: voxels kept from the border by every cutout box (3).
    """

    # Sizes and counts are each transformation module's defaults (one place); the probabilities
    # of the unified scheme live here only.
    flip_prob: float = FLIP_PROB
    flip_max: int = MAX_FLIPS
    flip_choices: Tuple[Optional[int], ...] = FLIP_CHOICES
    local_prob: float = 0.5
    local_windows: int = N_WINDOWS
    local_max_window: Tuple[int, int] = MAX_WINDOW
    local_min_window: int = MIN_WINDOW
    nonlinear_prob: float = 0.9
    nonlinear_invert_prob: float = INVERT_PROB
    nonlinear_table_size: int = TABLE_SIZE
    paint_prob: float = 0.9
    inpaint_rate: float = 0.2
    inner_max_boxes: int = MAX_BOXES
    inner_continue_prob: float = INNER_CONTINUE_PROB
    inner_min_size: Tuple[int, int] = MIN_SIZE
    inner_max_size: Tuple[int, int] = MAX_SIZE
    outer_max_extra_boxes: int = MAX_EXTRA_BOXES
    outer_continue_prob: float = OUTER_CONTINUE_PROB
    outer_min_cut: Tuple[int, int] = MIN_CUT
    outer_max_cut: Tuple[int, int] = MAX_CUT
    margin: int = MARGIN

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_prob", "_rate")):
                check_prob(value, f.name)
            elif f.type in ("int", int):
                # At most 100 times the release's count: the pairs' work and memory grow with it.
                check_count(value, f.name, maximum=max(100, 100 * int(f.default)))
            elif isinstance(value, list):  # from JSON
                object.__setattr__(self, f.name, tuple(value))

    @classmethod
    def preset(cls, name: str = "release", **overrides) -> "TransformConfig":
        """The preset `name` of `TRANSFORM_PRESETS` (`release`, `paper_text`) with overrides.

        Raises:
            ValueError: unknown preset (the message lists them).
        """
        if name not in TRANSFORM_PRESETS:
            raise ValueError(f"Unknown TransformConfig preset. Valid presets: "
                             f"{sorted(TRANSFORM_PRESETS)}. Received: preset={name!r}.")
        return cls(**{**TRANSFORM_PRESETS[name], **overrides})

    @classmethod
    def for_scheme(cls, name: str, **overrides) -> "TransformConfig":
        """The configuration of a named scheme (paper Fig. 3), with optional field overrides.

        `name` is one of `SCHEMES` or transformations joined with "+" (a composed scheme, e.g.
        `nonlinear+local_shuffling`): each named transformation applies to every pair. Naming
        both cutouts paints every pair, inner with probability `inpaint_rate` (release 0.2),
        otherwise outer, as the combined scheme does.

        Raises:
            ValueError: unknown scheme name (the message lists `SCHEMES`).
        """
        parts = str(name).split("+")
        if name not in SCHEMES and (len(set(parts)) != len(parts)
                                    or not set(parts) <= set(TRANSFORMATIONS)):
            raise ValueError(f"Unknown scheme {name!r}. Valid schemes: {SCHEMES}, or "
                             f"transformations of {TRANSFORMATIONS} joined with '+' (e.g. "
                             f"'nonlinear+local_shuffling'). Received: scheme={name!r}.")
        if name == "genesis":
            return cls(**overrides)
        values = dict(local_prob=0.0, nonlinear_prob=0.0, paint_prob=0.0)
        if name != "identity":
            for part, field in (("local_shuffling", "local_prob"), ("nonlinear", "nonlinear_prob")):
                if part in parts:
                    values[field] = 1.0
            cutouts = [p for p in parts if p.endswith("_cutout")]
            if cutouts:
                values["paint_prob"] = 1.0
                if len(cutouts) == 1:
                    values["inpaint_rate"] = float(cutouts[0] == "inner_cutout")
        return cls(**{**values, **overrides})


# Named presets of `TransformConfig` (`TransformConfig.preset`, `--option preset=NAME`). The
# paper's text and the release differ on two of the scheme's values (docs/methods.md):
# `release` (the default, right for the released weights) and `paper_text`: 1,000 shuffling
# windows (Sec. 2.1, "we randomly select 1,000 windows", the release 10,000) and an outer cutout
# that hides less than 1/4 of the cube (Sec. 2.1 and App. C.3; the release hides 56-89 %, median
# 67 %, on 64x64x32): a revealed box of `dim - randint(dim//16, dim//10)` a side with a 1-voxel
# margin (3 in the release: with it no box fits that hides under 1/4 of a 32-deep cube), which
# hides 12-23 % (median 14 %, 300 draws on 64x64x32); cubes need 64x64x32 or more for it.
TRANSFORM_PRESETS = {
    "release": {},
    "paper_text": {"local_windows": 1000, "outer_min_cut": (1, 16), "outer_max_cut": (1, 10),
                   "margin": 1},
}


def _resolve(config: Optional[TransformConfig], scheme: str) -> TransformConfig:
    if config is None:
        return TransformConfig.for_scheme(scheme)
    if not isinstance(config, TransformConfig):
        raise TypeError(f"`config` must be a TransformConfig or None. Received: config={config!r}.")
    return config


def _transform_one(name: str, x: np.ndarray, rng: np.random.Generator, c: TransformConfig) -> np.ndarray:
    """Sample and apply one named transformation with the sizes of `c` (no probability)."""
    if name == "local_shuffling":
        p = sample_local_shuffling_params(rng, x.shape, n_windows=c.local_windows,
                                          max_window=c.local_max_window, min_window=c.local_min_window)
        return apply_local_shuffling(x, p)
    if name == "nonlinear":
        p = sample_nonlinear_params(rng, x.shape, invert_prob=c.nonlinear_invert_prob)
        return apply_nonlinear(x, p, c.nonlinear_table_size)
    if name == "inner_cutout":
        p = sample_inner_cutout_params(rng, x.shape, max_boxes=c.inner_max_boxes,
                                       continue_prob=c.inner_continue_prob, min_size=c.inner_min_size,
                                       max_size=c.inner_max_size, margin=c.margin)
        return apply_inner_cutout(x, p)
    if name == "outer_cutout":
        p = sample_outer_cutout_params(rng, x.shape, max_extra_boxes=c.outer_max_extra_boxes,
                                       continue_prob=c.outer_continue_prob, min_cut=c.outer_min_cut,
                                       max_cut=c.outer_max_cut, margin=c.margin)
        return apply_outer_cutout(x, p)
    raise ValueError(f"Unknown transformation {name!r}. Valid: {TRANSFORMATIONS}.")


def sample_genesis_choices(rng: np.random.Generator, shape: Sequence[int],
                           config: TransformConfig) -> Dict[str, object]:
    """Draw which transformations apply (and the flip axes), in the release's order of draws."""
    c = config
    axes = sample_flip_params(rng, shape, prob=c.flip_prob, max_flips=c.flip_max,
                              choices=c.flip_choices)
    local = bool(rng.random() < c.local_prob)
    nonlinear = bool(rng.random() < c.nonlinear_prob)
    paint = bool(rng.random() < c.paint_prob)
    inner = paint and bool(rng.random() < c.inpaint_rate)
    return {"flip_axes": axes, "local_shuffling": local, "nonlinear": nonlinear,
            "inner_cutout": inner, "outer_cutout": paint and not inner}


def genesis_transform(x, *, rng: np.random.Generator, config: Optional[TransformConfig] = None,
                      scheme: str = "genesis", return_applied: bool = False, check: bool = True):
    """Make one restoration pair `(transformed, target)` with the unified scheme (paper Sec. 2.2).

    Args:
        x: one cube `(rows, cols, deps)` or slice `(rows, cols)` (optionally a trailing channel
            of size 1), values in [0, 1].
        rng: random generator.
        config: probabilities and sizes; None uses `TransformConfig.for_scheme(scheme)`.
        scheme: one of `SCHEMES`, used when `config` is None.
        return_applied: also return a dict saying what was applied (`flip_axes` and one bool per
            name in `TRANSFORMATIONS`).
        check: validate the values of `x` (NaN, range); callers that checked already pass False.

    Returns:
        `(transformed, target)` float32 arrays shaped like `x` (target: the original, flipped as
        the input), plus the dict when `return_applied`.

    Raises:
        ValueError: bad cube, unknown scheme, or sizes that do not fit the cube.

    Example:
        >>> x, y = genesis_transform(cube, rng=np.random.default_rng(0))
    """
    arr, ch = as_cube(x, "x", check_values=check)
    c = _resolve(config, scheme)
    applied = sample_genesis_choices(rng, arr.shape, c)
    target = apply_flip(arr, applied["flip_axes"])
    out = target
    for name in TRANSFORMATIONS:
        if applied[name]:
            out = _transform_one(name, out, rng, c)
    out = out.copy() if out is target else out
    pair = (restore_channel(out, ch), restore_channel(target, ch))
    return pair + (applied,) if return_applied else pair


def combination_name(combination: Sequence[str]) -> str:
    """A label such as `"local_shuffling+nonlinear"`; `"identity"` for the empty combination."""
    return "+".join(combination) if combination else "identity"


def apply_combination(x, combination: Sequence[str], *, rng: np.random.Generator,
                      config: Optional[TransformConfig] = None) -> np.ndarray:
    """Apply exactly the transformations of `combination` (no probabilities, no flip).

    Args:
        x: cube or slice in [0, 1].
        combination: an entry of `COMBINATIONS` (or its `combination_name`).
        rng: random generator (same seed -> same result).
        config: sizes and counts; None uses the release defaults.

    Returns:
        New float32 array shaped like `x`.

    Raises:
        ValueError: unknown transformation names, or both cutouts.
    """
    if isinstance(combination, str):
        combination = () if combination == "identity" else tuple(combination.split("+"))
    if tuple(combination) not in COMBINATIONS:
        raise ValueError(
            f"`combination` must be one of COMBINATIONS {[combination_name(k) for k in COMBINATIONS]}. "
            f"Received: combination={combination!r}."
        )
    arr, ch = as_cube(x, "x")
    c = _resolve(config, "genesis")
    out = arr.copy()
    for name in combination:
        out = _transform_one(name, out, rng, c)
    return restore_channel(out, ch)
