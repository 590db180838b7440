"""Shared by the tests of the encoder methods (jigsaw, rubik, deepcluster): structured tiny cubes
and a short training run measured against the method's chance level."""

import math

import keras
import numpy as np


def ramp_cubes(n, shape, rng, noise=0.05):
    """Cubes `(n, r, c, d)` in [0, 1]: a linear ramp along a random positive direction plus noise,
    so a patch's content tells where in the cube it came from and which way it is turned."""
    grids = np.meshgrid(*[np.linspace(0.0, 1.0, s) for s in shape], indexing="ij")
    w = rng.uniform(0.2, 1.0, size=(n, 3))
    w /= w.sum(axis=1, keepdims=True)
    ramp = sum(w[:, i, None, None, None] * grids[i][None] for i in range(3))
    return np.clip(ramp + noise * rng.standard_normal((n, *shape)), 0, 1).astype(np.float32)


def cell_ramp_cubes(n, shape, rng, grid=2, noise=0.05):
    """`ramp_cubes` at half contrast plus, in each cell of a `grid`^3 grid, a ramp rising along
    all three axes: a 180-degree turn of a cell reverses the ramp along two axes, so every cell's
    orientation is visible on its own (Rubik's cube's orientation head)."""
    local = sum(np.meshgrid(*[(np.arange(s) % (s // grid)) / (s // grid) for s in shape],
                            indexing="ij")) / 3
    cubes = 0.5 * ramp_cubes(n, shape, rng, noise=0.0) + 0.5 * local[None]
    return np.clip(cubes + noise * rng.standard_normal((n, *shape)), 0, 1).astype(np.float32)


def family_cubes(n, shape, rng, n_families=4, noise=0.1):
    """Cubes `(n, r, c, d)` of `n_families` kinds (mean levels 0.2 .. 0.8) plus noise, and their
    kinds `(n,)`: data with the cluster structure DeepCluster looks for."""
    kinds = np.arange(n) % n_families
    levels = np.linspace(0.2, 0.8, n_families)[kinds]
    cubes = levels[:, None, None, None] + noise * rng.standard_normal((n, *shape))
    return np.clip(cubes, 0, 1).astype(np.float32), kinds


def train_and_evaluate(method, options, cubes, val_cubes, *, epochs, batch_size=4,
                       learning_rate=3e-3, depth=2, n_base_filters=4, seed=0,
                       samples_per_epoch=None, loss=None, return_val=False):
    """Train `method` on `cubes` for `epochs` (Adam; BatchNormalization momentum 0.9, the demo's,
    so inference-mode statistics follow a short run), return (validation losses and accuracies,
    chance levels), and with `return_val` the validation dataset too. `loss` replaces the
    method's (e.g. a head's loss by a constant: the check that the accuracy assertions can
    fail)."""
    keras.utils.set_random_seed(seed)
    cube_shape = cubes.shape[1:]
    encoder, model = method.build_model(cube_shape, options, n_base_filters=n_base_filters,
                                        depth=depth, bn_momentum=0.9)
    train = method.make_dataset(cubes, batch_size, options=options, cube_shape=cube_shape,
                                seed=seed, shuffle=True, validation=False,
                                samples_per_epoch=samples_per_epoch)
    val = method.make_dataset(val_cubes, batch_size, options=options, cube_shape=cube_shape,
                              seed=seed + 1, shuffle=False, validation=True)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=method.loss(options) if loss is None else loss,
                  metrics=method.metrics(options), jit_compile=False)
    model.fit(train, validation_data=val, epochs=epochs, verbose=0,
              callbacks=method.callbacks(options, encoder, model, (train, val)))
    result = model.evaluate(val, verbose=0, return_dict=True)
    chance = method.chance_level(options)
    print(f"{method.NAME}: validation {result} vs chance {chance}")
    assert all(math.isfinite(v) for v in result.values())
    return (result, chance, val) if return_val else (result, chance)


def above_chance(accuracy, chance, n_val, margin=0.15):
    """Whether `accuracy` beats `chance` by `margin` and by 3 binomial standard errors over
    `n_val` validation samples: a head that learned nothing cannot (probability ~0.001)."""
    se = math.sqrt(chance * (1 - chance) / n_val)
    return accuracy > chance + max(margin, 3 * se)
