import numpy as np
import pytest

from models_genesis.transformations.nonlinear import (
    apply_nonlinear, bezier_map, nonlinear_table, nonlinear_transformation, sample_nonlinear_params,
)


def test_map_is_monotone_with_fixed_endpoints_and_half_invert(rng):
    v = np.linspace(0, 1, 1001, dtype=np.float32)
    inverted = 0
    for _ in range(400):
        p = sample_nonlinear_params(rng)
        f = apply_nonlinear(v, p)
        d = np.diff(f)
        if p["invert"]:
            inverted += 1
            assert np.all(d <= 1e-6) and f[0] == 1.0 and f[-1] == 0.0
        else:
            assert np.all(d >= -1e-6) and f[0] == 0.0 and f[-1] == 1.0
    assert 200 - 3 * 10 <= inverted <= 200 + 3 * 10  # binomial(400, 0.5): sd 10


def test_lookup_table_matches_the_exact_bezier_curve(rng):
    v = np.linspace(0, 1, 20001)
    worst, mean = [], []
    for _ in range(100):
        p = sample_nonlinear_params(rng)
        err = np.abs(apply_nonlinear(v.astype(np.float32), p) - bezier_map(v, p["points"], p["invert"]))
        worst.append(err.max())
        mean.append(err.mean())
    assert np.median(worst) < 1e-5 and max(mean) < 1e-4 and max(worst) < 2e-2


def test_exact_curve_is_the_parametric_bezier(rng):
    t = np.linspace(0, 1, 50)
    (x1, y1), (x2, y2) = pts = np.array([[0.2, 0.7], [0.6, 0.1]])
    X = 3 * (1 - t) ** 2 * t * x1 + 3 * (1 - t) * t * t * x2 + t ** 3
    Y = 3 * (1 - t) ** 2 * t * y1 + 3 * (1 - t) * t * t * y2 + t ** 3
    assert np.allclose(bezier_map(X, pts, False), Y, atol=1e-9)
    assert np.allclose(bezier_map(X, pts, True), Y[::-1], atol=1e-9)
    assert np.allclose(nonlinear_table({"points": pts, "invert": False}, 5),
                       bezier_map(np.linspace(0, 1, 5), pts, False), atol=1e-6)


def test_public_function(rng):
    x = rng.random((10, 10, 4), dtype=np.float32)
    assert np.array_equal(nonlinear_transformation(x, rng=rng, prob=0.0), x)
    y = nonlinear_transformation(x, rng=rng)
    assert y.dtype == np.float32 and y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert not np.allclose(y, x)
    with pytest.raises(ValueError, match="invert_prob"):
        nonlinear_transformation(x, rng=rng, invert_prob=2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nonlinear_transformation(x + 1, rng=rng)
