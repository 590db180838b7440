"""Rubik's cube (paper App. A.6; Zhuang et al. 2019): put 8 shuffled, rotated sub-cubes back.

A cube is cut into a 2x2x2 grid of cells; from each cell a sub-cube `floor(cell *
patch_fraction)` voxels a side is cropped at a random offset (the random gap between adjacent
cubes of Zhuang et al., about 10 voxels there). The 8 sub-cubes are

* re-arranged by one of K permutations of 8 (`n_permutations`, default 100), the
  maximal-Hamming-distance set over all 8! = 40,320 permutations
  (`_puzzle.maximal_hamming_permutations`, seed `permutation_seed`; its minimal Hamming distance
  is 5 for K = 100, a random set of 100 has 2). The paper does not state K; 100 is our default, as Jigsaw's P;
* each rotated by 180 degrees around one axis or not at all, with probability 1/3 each, as the
  original allows only 180-degree "horizontal" and "vertical" rotations. Horizontal: around the
  deps axis (flips rows and cols); vertical: around the cols axis (flips rows and deps). Both keep
  the sub-cube's shape and are their own inverse.

Network: the U-Net encoder (`depth_0..7` of `unet_model_3d`) shared by the 8 sub-cubes (a Siamese
network, Zhuang et al.'s Siamese-Octad) -> Flatten -> shared Dense(`patch_units`, relu) ->
concatenation -> two heads: `ordering` (Dense(K, softmax), cross-entropy) and `orientation`
(Dense(16, sigmoid): entry j says "the sub-cube at position j was rotated horizontally", entry
8 + j "vertically"; Zhuang et al.'s two 1 x 8 vectors). The saved model is the encoder.

Loss: ordering cross-entropy + `orientation_weight` x the orientation loss, "with equal weights"
(App. A.6), so `orientation_weight` is 1. The orientation loss is the binary cross-entropy
*summed* over the 16 outputs (`orientation_reduction="sum"`: one term per sub-cube and direction,
as Zhuang et al. score the two 1 x 8 vectors); Zhuang et al.'s equation itself could not be
retrieved (docs/methods.md). Keras' `BinaryCrossentropy` *averages* the 16 outputs
(`orientation_reduction="mean"`): at chance that term is 0.64 against log(100) = 4.6 for the
ordering, and its gradient per output is 16 times smaller, so the orientation head barely trained.


Labels undo the puzzle: position `j` holds original sub-cube `perms[ordering, j]`, rotated as
`orientation[j], orientation[8 + j]` say (`solve_rubik`).
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np

from models_genesis.data.pretraining.restoration_dataset import CubeBatchDataset
from models_genesis.methods import _encoder, _puzzle
from models_genesis.methods._encoder import WRITES  # noqa: F401  (the contract's "encoder")
from models_genesis.methods.keras_objects import OrientationLoss
from models_genesis.models.unet3d import resolve_initializer

NAME = "rubik"
GRID = 2
N_CUBES = GRID ** 3
# Rotation code -> the two axes of a sub-cube `(pr, pc, pd)` a 180-degree rotation flips.
ROTATION_AXES = {1: (0, 1), 2: (0, 2)}  # 1: horizontal (around deps), 2: vertical (around cols)
REDUCTIONS = ("sum", "mean")


@dataclasses.dataclass(frozen=True)
class Options:
    """Rubik's cube's parameters (App. A.6).

    Attributes:
        n_permutations: K, the permutation set's size and the ordering head's classes. 100.
        patch_fraction: sub-cube side / cell side, in (0, 1]; the rest is the random gap. 0.85.
        permutation_seed: seed of the greedy selection's first permutation. 0.
        patch_units: width of the Dense layer shared by the 8 sub-cubes. 256.
        orientation_weight: weight of the orientation loss against the ordering's. 1.0 (App.
            A.6: "with equal weights").
        orientation_reduction: `sum` (default) or `mean` of the binary cross-entropy over the 16
            orientation outputs (see the module docstring).
    """

    n_permutations: int = 100
    patch_fraction: float = 0.85
    permutation_seed: int = 0
    patch_units: int = 256
    orientation_weight: float = 1.0
    orientation_reduction: str = "sum"

    def __post_init__(self):
        _encoder.check_positive_int("n_permutations", self.n_permutations, 2)
        if self.n_permutations > math.factorial(N_CUBES):
            raise ValueError(f"`n_permutations` must be at most 8! = 40320. "
                             f"Received: n_permutations={self.n_permutations}.")
        _encoder.check_fraction("patch_fraction", self.patch_fraction)
        _encoder.check_positive_int("permutation_seed", self.permutation_seed, 0, 2 ** 32 - 1)
        _encoder.check_positive_int("patch_units", self.patch_units)
        w = self.orientation_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise ValueError(f"`orientation_weight` must be a number >= 0. "
                             f"Received: orientation_weight={w!r}.")
        if self.orientation_reduction not in REDUCTIONS:
            raise ValueError(f"`orientation_reduction` must be one of {REDUCTIONS}. "
                             f"Received: orientation_reduction={self.orientation_reduction!r}.")


def permutations(options: Options) -> np.ndarray:
    """The permutation set `(K, 8)` of `options` (cached; row `l` is ordering label `l`)."""
    return _puzzle.maximal_hamming_permutations(N_CUBES, options.n_permutations,
                                                seed=options.permutation_seed)


def check(options: Options, cube_shape, n_train_cubes: int, *, depth=None) -> None:
    """Refuse cubes too small for a 2x2x2 grid of sub-cubes that pass a depth-`depth` encoder
    (`depth` None: only non-empty sub-cubes; `build_model` checks again with its depth).

    Raises:
        ValueError: naming the cube shape and the smallest cube side that fits.
    """
    _puzzle.check_grid(cube_shape, GRID, options.patch_fraction, depth, NAME)


def sample_rubik_params(n: int, cube_shape, options: Options, *, rng: np.random.Generator):
    """Draw `n` puzzles: corners `(n, 8, 3)`, ordering labels `(n,)` in [0, K), rotation codes
    `(n, 8)` in {0: none, 1: horizontal, 2: vertical} per input position."""
    patch = _puzzle.patch_shape(cube_shape, GRID, options.patch_fraction)
    starts = _puzzle.sample_patch_starts(n, cube_shape, GRID, patch, rng=rng)
    ordering = rng.integers(0, options.n_permutations, size=n)
    rotations = rng.integers(0, 3, size=(n, N_CUBES))
    return starts, ordering, rotations


def rotate_cubes(cubes: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Rotate sub-cubes `(n, 8, pr, pc, pd)` by their codes `(n, 8)` (180 degrees: an involution)."""
    out = cubes.copy()
    for code, (a, b) in ROTATION_AXES.items():
        sel = rotations == code
        out[sel] = np.flip(cubes[sel], axis=(a + 1, b + 1))  # +1: the selection's leading axis
    return out


def orientation_targets(rotations: np.ndarray) -> np.ndarray:
    """Rotation codes `(n, 8)` -> multi-label targets `(n, 16)`: [horizontal x 8, vertical x 8]."""
    return np.concatenate([rotations == 1, rotations == 2], axis=1).astype(np.float32)


def apply_rubik(cubes: np.ndarray, starts, ordering, rotations, options: Options) -> np.ndarray:
    """The scrambled sub-cubes `(n, 8, pr, pc, pd)` of cubes `(n, r, c, d)`."""
    patch = _puzzle.patch_shape(cubes.shape[1:], GRID, options.patch_fraction)
    patches = _puzzle.crop_patches(cubes, starts, patch)
    return rotate_cubes(_puzzle.shuffle_patches(patches, permutations(options)[ordering]), rotations)


def solve_rubik(scrambled: np.ndarray, ordering: np.ndarray, orientation: np.ndarray,
                options: Options) -> np.ndarray:
    """Undo `apply_rubik` with its labels: the sub-cubes `(n, 8, pr, pc, pd)` in their cells."""
    o = np.asarray(orientation) > 0.5
    rotations = np.where(o[:, :N_CUBES], 1, 0) + np.where(o[:, N_CUBES:], 2, 0)
    return _puzzle.unshuffle_patches(rotate_cubes(scrambled, rotations),
                                     permutations(options)[ordering])


class RubikDataset(CubeBatchDataset):
    """Batches `(sub-cubes (B, 8, pr, pc, pd, 1), {"ordering": (B,) int32, "orientation":
    (B, 16) float32})`; see `CubeBatchDataset`."""

    def __init__(self, cubes, batch_size: int = 6, *, options: Options, **kwargs):
        super().__init__(cubes, batch_size, **kwargs)
        self.options = options
        permutations(options)

    def make_batch(self, cubes: np.ndarray, rng: np.random.Generator):
        starts, ordering, rotations = sample_rubik_params(len(cubes), cubes.shape[1:],
                                                          self.options, rng=rng)
        x = apply_rubik(cubes, starts, ordering, rotations, self.options)
        return x[..., None], {"ordering": ordering.astype(np.int32),
                              "orientation": orientation_targets(rotations)}


def make_dataset(files, batch_size, *, options: Options, cube_shape=None, seed=0, shuffle=True,
                 validation=False, samples_per_epoch=None, **kwargs) -> RubikDataset:
    """A `RubikDataset` over cube `files` (batch i of epoch e from `default_rng((seed, e, i))`)."""
    return RubikDataset(files, batch_size, options=options, seed=seed, shuffle=shuffle,
                        validation=validation, samples_per_epoch=samples_per_epoch, **kwargs)


def build_model(cube_shape, options: Options, *, n_base_filters=32, depth=4,
                kernel_initializer="glorot_uniform", bn_momentum=0.99):
    """`(encoder, model)`: the U-Net encoder (saved) and the Siamese-Octad with its `ordering`
    and `orientation` heads; the model's input is `(8, pr, pc, pd, 1)`."""
    check(options, cube_shape, 1, depth=depth)
    encoder = _encoder.unet_encoder(n_base_filters=n_base_filters, depth=depth,
                                    kernel_initializer=kernel_initializer, bn_momentum=bn_momentum)
    init = resolve_initializer(kernel_initializer)
    patch = _puzzle.patch_shape(cube_shape, GRID, options.patch_fraction)
    inputs = keras.Input((N_CUBES, *patch, 1), name="cubes")
    x = _puzzle.siamese_features(inputs, encoder, options.patch_units, init)
    ordering = _encoder.float32_dense(options.n_permutations, "softmax", "ordering", init)
    orientation = _encoder.float32_dense(2 * N_CUBES, "sigmoid", "orientation", init)
    outputs = {"ordering": ordering(x), "orientation": orientation(x)}
    return encoder, keras.Model(inputs, outputs, name="rubik")


def loss(options: Options = None) -> dict:
    """Permutation loss (cross-entropy) + `orientation_weight` x rotation loss (binary
    cross-entropy summed over the 16 outputs by default; see the module docstring)."""
    options = options or Options()
    return {"ordering": keras.losses.SparseCategoricalCrossentropy(),
            "orientation": OrientationLoss(options.orientation_weight,
                                           options.orientation_reduction)}


def metrics(options: Options = None) -> dict:
    return {"ordering": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            "orientation": [keras.metrics.BinaryAccuracy(name="accuracy")]}


def callbacks(options, saved, trainable, datasets) -> list:
    return []


def chance_level(options: Options) -> dict:
    """What a model that learned nothing scores: log(K) and 1/K for the ordering; for the
    orientation the (weighted, summed or averaged) entropy of 1/3-probable labels, and 2/3
    accuracy (every output "not rotated")."""
    ordering = math.log(options.n_permutations)
    per_output = _encoder.bernoulli_entropy(1 / 3)
    n = 2 * N_CUBES if options.orientation_reduction == "sum" else 1
    orientation = options.orientation_weight * n * per_output
    return {"loss": ordering + orientation, "ordering_loss": ordering,
            "orientation_loss": orientation, "ordering_accuracy": 1 / options.n_permutations,
            "orientation_accuracy": 2 / 3}
