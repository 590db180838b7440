"""3D augmentation for fine-tuning: flips, transposes, 90-degree rotations, Gaussian noise.

The paper fine-tunes with "heavy 3D augmentation" (docs/release_reference.md, 'Target tasks'). One
draw of parameters is applied to an image and its mask together (STYLE rule 4), so they stay
aligned; noise touches only the image. Geometric transforms keep the array shape: only axes of equal
size are transposed, and a 90-degree rotation (k = 1 or 3) is drawn only in planes whose two sizes
are equal (k = 2, a half turn, keeps any shape). The probabilities and noise s.d. are ours; the
paper gives none.

Arrays are channels last: one sample (X, Y, Z) or (X, Y, Z, C), or a batch (B, X, Y, Z, C).
Each sample of a batch gets its own draw.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np

_PLANES = ((0, 1), (0, 2), (1, 2))


@dataclass(frozen=True)
class AugmentationConfig:
    """Probabilities of each transform.

    Attributes:
        flip_prob: probability of flipping each spatial axis (independently).
        transpose_prob: probability of permuting axes of equal size (when two or more exist).
        rotate_prob: probability of a rotation in each of the three planes (independently).
        noise_prob: probability of adding Gaussian noise to the image.
        noise_sd: s.d. of that noise (images are in [0, 1]).
    """

    flip_prob: float = 0.5
    transpose_prob: float = 0.5
    rotate_prob: float = 0.5
    noise_prob: float = 0.5
    noise_sd: float = 0.02

    def __post_init__(self):
        for name in ("flip_prob", "transpose_prob", "rotate_prob", "noise_prob"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value!r}.")
        if not float(self.noise_sd) >= 0.0:
            raise ValueError(f"`noise_sd` must be >= 0. Received: noise_sd={self.noise_sd!r}.")


@dataclass(frozen=True)
class AugmentationParams:
    """One sample's draw; applying it is deterministic.

    Attributes:
        flips: spatial axes to flip, applied first.
        permutation: order of the spatial axes after the flips (a transpose of equal-sized axes).
        rotations: `(plane, k)` pairs: rotate by k * 90 degrees in `plane` (two spatial axes).
        noise_sd: s.d. of the Gaussian noise added to the image (0: none).
        noise_seed: seed of the noise, so the same params give the same noise.
    """

    flips: Tuple[int, ...] = ()
    permutation: Tuple[int, int, int] = (0, 1, 2)
    rotations: Tuple[Tuple[Tuple[int, int], int], ...] = ()
    noise_sd: float = 0.0
    noise_seed: int = 0


def _spatial_shape(shape) -> Tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (3, 4):
        raise ValueError("`shape` must be a sample's (X, Y, Z) or (X, Y, Z, C). "
                         f"Received: shape={shape}.")
    return shape[:3]


def sample_augmentation_params(rng: np.random.Generator, shape: Sequence[int],
                               config: Optional[AugmentationConfig] = None) -> AugmentationParams:
    """Draw one sample's augmentation.

    Args:
        rng: numpy Generator (the only source of randomness).
        shape: the sample's shape (X, Y, Z) or (X, Y, Z, C).
        config: probabilities; defaults to `AugmentationConfig()`.
    """
    config = AugmentationConfig() if config is None else config
    size = _spatial_shape(shape)
    flips = tuple(int(a) for a in np.flatnonzero(rng.random(3) < config.flip_prob))
    valid = [p for p in itertools.permutations(range(3))
             if p != (0, 1, 2) and all(size[p[i]] == size[i] for i in range(3))]
    permutation = (0, 1, 2)
    if valid and rng.random() < config.transpose_prob:
        permutation = valid[int(rng.integers(len(valid)))]
    rotations = []
    for plane, draw in zip(_PLANES, rng.random(3)):
        if draw < config.rotate_prob:
            choices = (1, 2, 3) if size[plane[0]] == size[plane[1]] else (2,)
            rotations.append((plane, int(choices[int(rng.integers(len(choices)))])))
    noise = config.noise_sd if rng.random() < config.noise_prob else 0.0
    return AugmentationParams(flips=flips, permutation=tuple(int(p) for p in permutation),
                              rotations=tuple(rotations), noise_sd=float(noise),
                              noise_seed=int(rng.integers(2**31)))


def _geometric(a: np.ndarray, params: AugmentationParams) -> np.ndarray:
    if params.flips:
        a = np.flip(a, axis=params.flips)
    a = np.transpose(a, params.permutation + tuple(range(3, a.ndim)))
    for plane, k in params.rotations:
        a = np.rot90(a, k=k, axes=plane)
    return a


def _apply_one(x, y, params: AugmentationParams):
    x_out = _geometric(x, params)
    if x_out.shape != x.shape:
        raise ValueError(f"`params` change the shape {x.shape[:3]}; they were drawn for another "
                         f"shape. Received: params={params}.")
    if params.noise_sd > 0:
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError("Gaussian noise needs a floating-point image. "
                            f"Received: x.dtype={x.dtype}.")
        noise = np.random.default_rng(params.noise_seed).standard_normal(x_out.shape)
        x_out = x_out + (params.noise_sd * noise).astype(x.dtype)
    x_out = np.ascontiguousarray(x_out, dtype=x.dtype)
    y_out = None if y is None else np.ascontiguousarray(_geometric(y, params))
    return x_out, y_out


def apply_augmentation(x, y, params: Union[AugmentationParams, Sequence[AugmentationParams]]):
    """Apply drawn params to an image and its mask (same geometry; noise on the image only).

    Args:
        x: image, one sample (X, Y, Z[, C]) with one `AugmentationParams`, or a batch
            (B, X, Y, Z, C) with a sequence of B params.
        y: mask of the same spatial shape (its channels may differ), or None.
        params: from `sample_augmentation_params`.

    Returns:
        (x_aug, y_aug) with the input shapes and dtypes; `y_aug` is None when `y` is None.
    """
    x = np.asarray(x)
    y = None if y is None else np.asarray(y)
    batched = not isinstance(params, AugmentationParams)
    if batched:
        params = list(params)
        if x.ndim != 5 or len(params) != x.shape[0]:
            raise ValueError(f"A batch needs x of shape (B, X, Y, Z, C) and B params. Received: "
                             f"x.shape={x.shape}, {len(params)} params.")
    elif x.ndim not in (3, 4):
        raise ValueError(f"`x` must be one sample (X, Y, Z[, C]) for a single params. "
                         f"Received: x.shape={x.shape}.")
    lead = 1 if batched else 0
    if y is not None and y.shape[lead:lead + 3] != x.shape[lead:lead + 3]:
        raise ValueError(f"`y` must have the spatial shape of `x`. Received: x.shape={x.shape}, "
                         f"y.shape={y.shape}.")
    if not batched:
        return _apply_one(x, y, params)
    pairs = [_apply_one(x[i], None if y is None else y[i], p) for i, p in enumerate(params)]
    x_out = np.stack([p[0] for p in pairs])
    y_out = None if y is None else np.stack([p[1] for p in pairs])
    return x_out, y_out


def augment_pair(x, y=None, *, rng: np.random.Generator,
                 config: Optional[AugmentationConfig] = None):
    """Draw and apply an augmentation: one sample (X, Y, Z[, C]) or a batch (B, X, Y, Z, C).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x_aug, m_aug = augment_pair(images, masks, rng=rng)  # (B, 64, 64, 32, 1) each
    """
    x = np.asarray(x)
    if x.ndim == 5:
        params = [sample_augmentation_params(rng, x.shape[1:], config) for _ in range(x.shape[0])]
    else:
        params = sample_augmentation_params(rng, x.shape, config)
    return apply_augmentation(x, y, params)
