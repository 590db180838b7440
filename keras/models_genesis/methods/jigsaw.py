"""3D Jigsaw (paper App. A.3; Noroozi & Favaro 2016, in 3D as Taleb et al. 2020): which
permutation shuffled the 27 patches of a cube?

A cube is cut into a 3x3x3 grid of cells; from each cell a patch `floor(cell * patch_fraction)`
voxels a side is cropped at a random offset inside the cell (the random gap of the original: 64-
pixel tiles in 75-pixel cells, hence 0.85). The 27 patches are shuffled by one of `P = 100`
permutations of the maximal-Hamming-distance set (`_puzzle.maximal_hamming_permutations`: greedy
over 10,000 random permutations of 27, `permutation_seed` 0; its minimal Hamming distance is 24,
a random set of 100 has about 20), and the network classifies which one (P-way cross-entropy).

Network: the U-Net encoder (`depth_0..7` of `unet_model_3d`) applied to each patch with shared
weights (a Siamese network with 27 branches) -> Flatten -> shared Dense(`patch_units`, relu) ->
concatenation -> Dense(`fc_units`, relu) -> Dense(P, softmax). The saved model is the encoder.

Labels: input position `j` holds original patch `perms[label, j]` (`PERMUTATIONS(options)[label]`),
so `_puzzle.unshuffle_patches(x, perms[label])` gives the patches back in their cells.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np

from models_genesis.data.pretraining.restoration_dataset import CubeBatchDataset
from models_genesis.methods import _encoder, _puzzle
from models_genesis.methods._encoder import WRITES  # noqa: F401  (the contract's "encoder")
from models_genesis.models.unet3d import resolve_initializer

NAME = "jigsaw"
GRID = 3


@dataclasses.dataclass(frozen=True)
class Options:
    """Jigsaw's parameters (App. A.3).

    Attributes:
        n_permutations: P, the size of the permutation set and of the classifier. Defaults to 100.
        patch_fraction: patch side / cell side, in (0, 1]; the rest is the random gap. 0.85.
        permutation_seed: seed of the permutation set (the same set for every run with it). 0.
        n_candidates: random permutations of 27 the greedy selection chooses from. 10000.
        patch_units: width of the Dense layer shared by the 27 patches. 256.
        fc_units: width of the Dense layer over the concatenated patches. 1024.
    """

    n_permutations: int = 100
    patch_fraction: float = 0.85
    permutation_seed: int = 0
    n_candidates: int = 10000
    patch_units: int = 256
    fc_units: int = 1024

    def __post_init__(self):
        _encoder.check_positive_int("n_permutations", self.n_permutations, 2)
        _encoder.check_fraction("patch_fraction", self.patch_fraction)
        _encoder.check_positive_int("permutation_seed", self.permutation_seed, 0, 2 ** 32 - 1)
        _encoder.check_positive_int("n_candidates", self.n_candidates, self.n_permutations,
                                    1_000_000)
        _encoder.check_positive_int("patch_units", self.patch_units)
        _encoder.check_positive_int("fc_units", self.fc_units)


def permutations(options: Options) -> np.ndarray:
    """The permutation set `(P, 27)` of `options` (cached; row `l` is label `l`)."""
    return _puzzle.maximal_hamming_permutations(GRID ** 3, options.n_permutations,
                                                seed=options.permutation_seed,
                                                n_candidates=options.n_candidates)


def check(options: Options, cube_shape, n_train_cubes: int, *, depth=None) -> None:
    """Refuse cubes too small for a 3x3x3 grid of patches that pass a depth-`depth` encoder
    (`depth` None: only non-empty patches; `build_model` checks again with its depth).

    Raises:
        ValueError: naming the cube shape and the smallest cube side that fits.
    """
    _puzzle.check_grid(cube_shape, GRID, options.patch_fraction, depth, NAME)


def sample_jigsaw_params(n: int, cube_shape, options: Options, *, rng: np.random.Generator):
    """Draw the puzzles of `n` cubes: patch corners `(n, 27, 3)` and labels `(n,)` in [0, P)."""
    patch = _puzzle.patch_shape(cube_shape, GRID, options.patch_fraction)
    starts = _puzzle.sample_patch_starts(n, cube_shape, GRID, patch, rng=rng)
    labels = rng.integers(0, options.n_permutations, size=n)
    return starts, labels


def apply_jigsaw(cubes: np.ndarray, starts: np.ndarray, labels: np.ndarray,
                 options: Options) -> np.ndarray:
    """Shuffled patches `(n, 27, pr, pc, pd)` of cubes `(n, r, c, d)` (see the module docstring)."""
    patch = _puzzle.patch_shape(cubes.shape[1:], GRID, options.patch_fraction)
    patches = _puzzle.crop_patches(cubes, starts, patch)
    return _puzzle.shuffle_patches(patches, permutations(options)[labels])


class JigsawDataset(CubeBatchDataset):
    """Batches `(patches (B, 27, pr, pc, pd, 1), labels (B,) int32)`; see `CubeBatchDataset`."""

    def __init__(self, cubes, batch_size: int = 6, *, options: Options, **kwargs):
        super().__init__(cubes, batch_size, **kwargs)
        self.options = options
        permutations(options)  # build the set once here, not in every worker

    def make_batch(self, cubes: np.ndarray, rng: np.random.Generator):
        starts, labels = sample_jigsaw_params(len(cubes), cubes.shape[1:], self.options, rng=rng)
        x = apply_jigsaw(cubes, starts, labels, self.options)
        return x[..., None], labels.astype(np.int32)


def make_dataset(files, batch_size, *, options: Options, cube_shape=None, seed=0, shuffle=True,
                 validation=False, samples_per_epoch=None, **kwargs) -> JigsawDataset:
    """A `JigsawDataset` over cube `files` (batch i of epoch e from `default_rng((seed, e, i))`)."""
    return JigsawDataset(files, batch_size, options=options, seed=seed, shuffle=shuffle,
                         validation=validation, samples_per_epoch=samples_per_epoch, **kwargs)


def build_model(cube_shape, options: Options, *, n_base_filters=32, depth=4,
                kernel_initializer="glorot_uniform", bn_momentum=0.99):
    """`(encoder, classifier)`: the U-Net encoder (saved) and the P-way Siamese classifier that
    trains it; the classifier's input is `(27, pr, pc, pd, 1)`."""
    check(options, cube_shape, 1, depth=depth)
    encoder = _encoder.unet_encoder(n_base_filters=n_base_filters, depth=depth,
                                    kernel_initializer=kernel_initializer, bn_momentum=bn_momentum)
    init = resolve_initializer(kernel_initializer)
    patch = _puzzle.patch_shape(cube_shape, GRID, options.patch_fraction)
    inputs = keras.Input((GRID ** 3, *patch, 1), name="patches")
    x = _puzzle.siamese_features(inputs, encoder, options.patch_units, init)
    x = keras.layers.Dense(options.fc_units, activation="relu", kernel_initializer=init, name="fc")(x)
    out = _encoder.float32_dense(options.n_permutations, "softmax", "permutation", init)(x)
    return encoder, keras.Model(inputs, out, name="jigsaw")


def loss(options: Options = None):
    """P-way cross-entropy on the permutation index."""
    return keras.losses.SparseCategoricalCrossentropy()


def metrics(options: Options = None) -> list:
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


def callbacks(options, saved, trainable, datasets) -> list:
    return []


def chance_level(options: Options) -> dict:
    """log(P) and 1/P: the cross-entropy and accuracy of guessing the permutation uniformly."""
    return {"loss": math.log(options.n_permutations), "accuracy": 1 / options.n_permutations}
