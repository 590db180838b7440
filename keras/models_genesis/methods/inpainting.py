"""3D In-painting (paper App. A.2, after Pathak et al. 2016): restore cutouts, loss on them only.

The cutouts are inner-cutout boxes (same sizes, count and noise fill as the unified scheme's
inner cutout, `transformations.inner_cutout`; at least one box per cube), and the MSE is
computed on the cutout voxels only (`masked_mse`), without the adversarial loss (App. A.2).
`loss_region="whole"` computes it on the whole cube instead: App. C.2's comparison with inner
cutout, where "all hyper-parameters are the same except where to compute the MSE loss".

With `loss_region="cutout"` the target `y` has two channels, the original and the cutout mask
(1 inside a box), `(B, r, c, d, 2)`; the U-Net's output has one. The whole U-Net is saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import keras
import numpy as np

from models_genesis.methods import _restoration
from models_genesis.methods.keras_objects import masked_mse
from models_genesis.methods._restoration import (  # noqa: F401  (the method interface)
    WRITES, build_model, callbacks, chance_level, dataset_maker, metrics,
)
from models_genesis.transformations._checks import (
    MARGIN, box_count, box_slices, check_count, check_fraction, check_prob, draw_boxes,
    fraction_of,
)
from models_genesis.transformations.inner_cutout import (
    CONTINUE_PROB, MAX_BOXES, MAX_SIZE, MIN_SIZE,
)

NAME = "inpainting"
LOSS_REGIONS = ("cutout", "whole")


@dataclass(frozen=True)
class Options:
    """In-painting parameters: the inner cutout's (docs/release_reference.md, 'Transformations') and
    where the loss is computed.

    Attributes:
        max_boxes: most boxes per cube (5); the first is always drawn, each further one while a
            draw is below `continue_prob` (0.95).
        min_size, max_size: box side bounds as fractions `(num, den)` of each axis ((1, 6), (1, 3)).
        margin: voxels kept from the border (3).
        loss_region: `"cutout"` (in-painting, App. A.2) or `"whole"` (inner cutout, App. C.2).
    """

    max_boxes: int = MAX_BOXES
    continue_prob: float = CONTINUE_PROB
    min_size: Tuple[int, int] = MIN_SIZE
    max_size: Tuple[int, int] = MAX_SIZE
    margin: int = MARGIN
    loss_region: str = "cutout"

    def __post_init__(self):
        check_count(self.max_boxes, "max_boxes", minimum=1)
        check_count(self.margin, "margin")
        for name, most in (("max_boxes", 100), ("margin", 4096)):  # Python loops per box
            if getattr(self, name) > most:
                raise ValueError(f"`{name}` must be at most {most}. "
                                 f"Received: {name}={getattr(self, name)!r}.")
        check_prob(self.continue_prob, "continue_prob")
        for name in ("min_size", "max_size"):
            object.__setattr__(self, name, check_fraction(getattr(self, name), name))
        if self.loss_region not in LOSS_REGIONS:
            raise ValueError(f"`loss_region` must be one of {LOSS_REGIONS}. "
                             f"Received: loss_region={self.loss_region!r}.")


def cut_out(cubes: np.ndarray, rng: np.random.Generator, options: Options):
    """Fill 1 to `max_boxes` boxes of each cube `(B, r, c, d)` with uniform noise in [0, 1).

    Returns:
        `(cut, mask)`: float32 arrays like `cubes`; `mask` is 1 inside a box, 0 elsewhere.
    """
    shape = cubes.shape[1:]
    lo, hi = fraction_of(shape, options.min_size), fraction_of(shape, options.max_size)
    cut, mask = cubes.copy(), np.zeros_like(cubes)
    for k in range(len(cubes)):
        n = 1 + box_count(rng, options.max_boxes - 1, options.continue_prob)
        starts, sizes = draw_boxes(rng, shape, n, lo, hi, options.margin, "In-painting")
        for start, size in zip(starts, sizes):
            box = (k,) + box_slices(start, size)
            cut[box] = rng.random(tuple(int(s) for s in size), dtype=np.float32)
            mask[box] = 1.0
    return cut, mask


def make_pairs(cubes: np.ndarray, rng: np.random.Generator, options: Options):
    """`(cut, target)`: target `(B, r, c, d, 2)` = original and mask for `loss_region="cutout"`,
    the original `(B, r, c, d)` for `"whole"`."""
    cut, mask = cut_out(cubes, rng, options)
    if options.loss_region == "whole":
        return cut, cubes
    return cut, np.stack([cubes, mask], axis=-1)


def loss(options: Options):
    """`masked_mse` (loss on the cutouts) or `"mse"` (the whole cube, App. C.2)."""
    return masked_mse if options.loss_region == "cutout" else "mse"


def check(options: Options, cube_shape, n_train_cubes: int, *, depth=None) -> None:
    """Raise ValueError when the largest box plus margins does not fit `cube_shape`."""
    _restoration.check_sample(make_pairs, options, cube_shape, "In-painting")


make_dataset = dataset_maker(make_pairs)
