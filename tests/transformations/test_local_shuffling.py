import numpy as np
import pytest

from models_genesis.transformations.local_shuffling import (
    apply_local_shuffling, local_pixel_shuffling, sample_local_shuffling_params,
)


def _distinct(shape, rng):
    return (rng.permutation(int(np.prod(shape))).reshape(shape) / np.prod(shape)).astype(np.float32)


def test_disjoint_windows_keep_the_multiset_and_stay_in_their_window(rng):
    x = _distinct((12, 12, 6), rng)
    starts = np.array([[0, 0, 0], [4, 4, 2], [8, 0, 3]])
    sizes = np.array([[3, 4, 2], [4, 3, 3], [4, 5, 3]])
    out = apply_local_shuffling(x, {"starts": starts, "sizes": sizes, "seed": 7})
    assert np.array_equal(np.sort(out.ravel()), np.sort(x.ravel()))
    assert not np.array_equal(out, x)
    for a, b in zip(starts, sizes):
        box = tuple(slice(i, i + n) for i, n in zip(a, b))
        assert np.array_equal(np.sort(out[box].ravel()), np.sort(x[box].ravel()))


def test_every_voxel_comes_from_the_last_window_covering_it(rng):
    shape = (20, 20, 10)
    x = _distinct(shape, rng)
    p = sample_local_shuffling_params(rng, shape, n_windows=300)
    out = apply_local_shuffling(x, p)
    src = {v: np.unravel_index(i, shape) for i, v in enumerate(x.ravel())}
    last = -np.ones(shape, dtype=int)  # last window covering each voxel (-1: none)
    for k, (a, b) in enumerate(zip(p["starts"], p["sizes"])):
        last[tuple(slice(i, i + n) for i, n in zip(a, b))] = k
    for v in np.ndindex(shape):
        k = last[v]
        if k < 0:
            assert out[v] == x[v]
            continue
        u = np.array(src[out[v]])
        assert np.all(u >= p["starts"][k]) and np.all(u < p["starts"][k] + p["sizes"][k])
    assert np.isin(out, x).all()


def test_window_sizes_follow_release_bounds(rng):
    p = sample_local_shuffling_params(rng, (64, 64, 32), n_windows=5000)
    assert p["sizes"].min(0).tolist() == [1, 1, 1]
    assert p["sizes"].max(0).tolist() == [6, 6, 3]
    assert np.all(p["starts"] + p["sizes"] <= [64, 64, 32]) and p["starts"].min() == 0


def test_one_window_of_size_one_changes_nothing(rng):
    x = rng.random((8, 8, 4), dtype=np.float32)
    out = local_pixel_shuffling(x, rng=rng, n_windows=1, max_window=(1, 100))
    assert np.array_equal(out, x) and out is not x


def test_prob_zero_copy_2d_and_seed(rng):
    x = rng.random((30, 30), dtype=np.float32)
    assert np.array_equal(local_pixel_shuffling(x, rng=rng, prob=0.0), x)
    a = local_pixel_shuffling(x, rng=np.random.default_rng(3), n_windows=200)
    b = local_pixel_shuffling(x, rng=np.random.default_rng(3), n_windows=200)
    assert a.shape == x.shape and np.array_equal(a, b) and not np.array_equal(a, x)
    before = x.copy()
    local_pixel_shuffling(x, rng=rng)
    assert np.array_equal(x, before)


def test_bad_input(rng):
    with pytest.raises(ValueError, match="min_window"):
        local_pixel_shuffling(np.zeros((4, 4, 4)), rng=rng, min_window=5)
    with pytest.raises(ValueError, match="x.shape"):
        local_pixel_shuffling(np.zeros((4,)), rng=rng)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        local_pixel_shuffling(np.full((4, 4, 4), np.nan), rng=rng)
    with pytest.raises(ValueError, match="max_window"):
        local_pixel_shuffling(np.zeros((4, 4, 4)), rng=rng, max_window=0.1)
