"""Patch shuffling (App. A.4): T swaps of two equal-size, non-overlapping patches."""

import numpy as np
import pytest

from models_genesis.methods import make_options, patch_shuffling


def _overlap(a, b, size):
    return np.all((a < b + size) & (b < a + size))


def test_patches_are_equal_size_non_overlapping_and_25_to_50_percent(rng):
    shape = np.array((16, 24, 12))
    options = make_options("patch_shuffling")
    for _ in range(200):
        p = patch_shuffling.sample_patch_swaps(rng, tuple(shape), options)
        assert p["sizes"].shape == (10, 3)
        assert np.all(p["sizes"] >= shape // 4) and np.all(p["sizes"] <= shape // 2)
        for a, b, size in zip(p["starts_a"], p["starts_b"], p["sizes"]):
            assert np.all(a >= 0) and np.all(a + size <= shape)
            assert np.all(b >= 0) and np.all(b + size <= shape)
            assert not _overlap(a, b, size)


def test_one_swap_moves_exactly_the_two_patches(rng):
    cube = rng.random((16, 16, 16), dtype=np.float32)
    options = make_options("patch_shuffling", {"n_swaps": 1})
    p = patch_shuffling.sample_patch_swaps(rng, cube.shape, options)
    out = patch_shuffling.apply_patch_swaps(cube, p)
    (a,), (b,), (size,) = p["starts_a"], p["starts_b"], p["sizes"]
    box_a = tuple(slice(s, s + n) for s, n in zip(a, size))
    box_b = tuple(slice(s, s + n) for s, n in zip(b, size))
    np.testing.assert_array_equal(out[box_a], cube[box_b])
    np.testing.assert_array_equal(out[box_b], cube[box_a])
    untouched = np.ones(cube.shape, bool)
    untouched[box_a] = untouched[box_b] = False
    np.testing.assert_array_equal(out[untouched], cube[untouched])


def test_the_multiset_of_voxel_values_is_kept(rng):
    cubes = rng.random((6, 16, 16, 16), dtype=np.float32)
    x, y = patch_shuffling.make_pairs(cubes, rng, make_options("patch_shuffling"))
    assert y is cubes and not np.array_equal(x, cubes)
    np.testing.assert_array_equal(np.sort(x.reshape(6, -1), axis=1),
                                  np.sort(cubes.reshape(6, -1), axis=1))


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="at most"):
        make_options("patch_shuffling", {"max_size": (3, 4)})
    with pytest.raises(ValueError, match="at least 1 voxel"):
        patch_shuffling.check(make_options("patch_shuffling"), (16, 16, 2), 4)
