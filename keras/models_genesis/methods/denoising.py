"""3D De-noising (paper App. A.1, after Vincent et al. 2010): restore cubes from Gaussian noise.

Each cube gets additive Gaussian noise of its own standard deviation `sigma`, drawn uniformly in
`[sigma_min, sigma_max]` ([0, 0.1] in the paper); the 3D U-Net restores the original with MSE
(the L2 distance). The paper does not clip the noisy input; `clip=True` keeps it in [0, 1].
The whole U-Net is saved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models_genesis.methods._restoration import (  # noqa: F401  (the method interface)
    WRITES, build_model, callbacks, chance_level, dataset_maker, loss, metrics,
)

NAME = "denoising"


# Noise above the intensity range [0, 1] of the cubes leaves nothing to restore.
MAX_SIGMA = 1.0


@dataclass(frozen=True)
class Options:
    """De-noising parameters (App. A.1).

    Attributes:
        sigma_min, sigma_max: range of the per-cube noise standard deviation (0, 0.1).
        clip: clip the noisy input to [0, 1] (False: the paper's additive noise, unclipped).
    """

    sigma_min: float = 0.0
    sigma_max: float = 0.1
    clip: bool = False

    def __post_init__(self):
        for name in ("sigma_min", "sigma_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 <= float(value) <= MAX_SIGMA:
                raise ValueError(f"`{name}` must be a number in [0, {MAX_SIGMA}] (cubes are in "
                                 f"[0, 1]; the paper's noise: up to 0.1). "
                                 f"Received: {name}={value!r}.")
        if self.sigma_min > self.sigma_max:
            raise ValueError("`sigma_min` must be <= `sigma_max`. Received: "
                             f"sigma_min={self.sigma_min!r}, sigma_max={self.sigma_max!r}.")
        if not isinstance(self.clip, bool):
            raise ValueError(f"`clip` must be true or false. Received: clip={self.clip!r}.")


def add_gaussian_noise(cubes: np.ndarray, rng: np.random.Generator, options: Options,
                       return_sigma: bool = False):
    """Noisy copies of cubes `(B, r, c, d)`: `cubes + sigma_b * N(0, 1)`, sigma_b ~ U[min, max].

    Returns:
        float32 array like `cubes` (and the `(B,)` sigmas when `return_sigma`).
    """
    sigma = rng.uniform(options.sigma_min, options.sigma_max, size=len(cubes)).astype(np.float32)
    noise = rng.standard_normal(cubes.shape, dtype=np.float32)
    noise *= sigma.reshape((-1,) + (1,) * (cubes.ndim - 1))
    noise += cubes
    if options.clip:
        np.clip(noise, 0.0, 1.0, out=noise)
    return (noise, sigma) if return_sigma else noise


def make_pairs(cubes: np.ndarray, rng: np.random.Generator, options: Options):
    """`(noisy, original)` of cubes `(B, r, c, d)`."""
    return add_gaussian_noise(cubes, rng, options), cubes


def check(options: Options, cube_shape, n_train_cubes: int, *, depth=None) -> None:
    """Any cube shape fits (the U-Net's divisibility is checked by the config)."""


make_dataset = dataset_maker(make_pairs)
