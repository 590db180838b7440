import numpy as np
import pytest

from models_genesis.transformations.flip import apply_flip, flip, sample_flip_params


def test_flip_hits_input_and_target_alike(rng):
    x = rng.random((6, 5, 4), dtype=np.float32)
    y = x * 0.5
    flipped = 0
    for _ in range(50):
        xf, yf = flip(x, y, rng=rng)
        assert np.array_equal(xf * 0.5, yf)
        flipped += not np.array_equal(xf, x)
    assert flipped > 0


def test_flip_counts_and_axes(rng):
    draws = [sample_flip_params(rng, (4, 4, 4)) for _ in range(2000)]
    lengths = np.array([len(d) for d in draws])
    assert lengths.max() == 3 and abs((lengths == 0).mean() - 0.6) < 3 * np.sqrt(0.24 / 2000)
    assert set(a for d in draws for a in d) == {0, 1, 2}
    x = np.arange(8, dtype=np.float32).reshape(2, 2, 2) / 8
    assert np.array_equal(apply_flip(x, (0, 0)), x)
    assert np.array_equal(apply_flip(x, (1,)), x[:, ::-1])


def test_flip_errors(rng):
    with pytest.raises(ValueError, match="same shape"):
        flip(np.zeros((4, 4)), np.zeros((4, 5)), rng=rng)
