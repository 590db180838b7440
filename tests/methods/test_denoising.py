"""De-noising (App. A.1): the noise level of each cube is in [sigma_min, sigma_max]."""

import numpy as np
import pytest

from models_genesis.methods import denoising, make_options


def test_noise_level_of_each_cube_is_in_range(rng):
    cubes = np.full((64, 16, 16, 16), 0.5, np.float32)
    options = make_options("denoising")
    noisy, sigma = denoising.add_gaussian_noise(cubes, rng, options, return_sigma=True)
    assert sigma.min() >= 0.0 and sigma.max() <= 0.1
    assert sigma.min() < 0.02 and sigma.max() > 0.08  # uniform over the range, not one value
    measured = (noisy - cubes).std(axis=(1, 2, 3))
    np.testing.assert_allclose(measured, sigma, rtol=0.1, atol=2e-3)  # 4096 voxels per cube
    dark = denoising.add_gaussian_noise(np.zeros_like(cubes), rng, options)
    assert dark.min() < 0.0  # the paper's additive noise is not clipped


def test_fixed_sigma_clip_and_determinism(rng):
    cubes = rng.random((8, 16, 16, 16), dtype=np.float32)
    options = make_options("denoising", {"sigma_min": 0.3, "sigma_max": 0.3, "clip": True})
    x, y = denoising.make_pairs(cubes, np.random.default_rng(5), options)
    assert y is cubes and x.min() >= 0.0 and x.max() <= 1.0
    x2, _ = denoising.make_pairs(cubes, np.random.default_rng(5), options)
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(ValueError, match="sigma_max"):
        make_options("denoising", {"sigma_max": -1.0})


def test_dataset_batches_depend_on_seed_epoch_and_index(rng, tmp_path):
    from tests.methods.restoration_helpers import write_cube_files

    write_cube_files(tmp_path, rng, n=4, subsets=["0"])
    files = sorted(str(p) for p in tmp_path.glob("*.npy"))
    options = make_options("denoising")
    a = denoising.make_dataset(files, 2, options=options, seed=3)
    b = denoising.make_dataset(files, 2, options=options, seed=3)
    x, y = a[1]
    assert x.shape == y.shape == (2, 16, 16, 16, 1)
    b.set_epoch(1)
    assert not np.array_equal(b[1][0], x)
    b.set_epoch(0)
    np.testing.assert_array_equal(b[1][0], x)
