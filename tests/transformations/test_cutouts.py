import numpy as np
import pytest

from models_genesis.transformations.inner_cutout import (
    apply_inner_cutout, inner_cutout, sample_inner_cutout_params,
)
from models_genesis.transformations.outer_cutout import (
    apply_outer_cutout, outer_cutout, sample_outer_cutout_params,
)

SHAPE = (64, 64, 32)


def _box_mask(params):
    """True inside the union of the boxes of cutout `params` (written out, not `box_slices`)."""
    mask = np.zeros(SHAPE, bool)
    for start, size in zip(params["starts"], params["sizes"]):
        mask[tuple(slice(a, a + s) for a, s in zip(start, size))] = True
    return mask


def test_inner_boxes_sizes_counts_margins_and_noise(rng):
    counts = []
    x = np.full(SHAPE, 2.0, dtype=np.float32)  # outside [0, 1]: noise is easy to spot
    for _ in range(300):
        p = sample_inner_cutout_params(rng, SHAPE)
        n = len(p["sizes"])
        counts.append(n)
        if n:
            assert np.all(p["sizes"] >= [10, 10, 5]) and np.all(p["sizes"] <= [21, 21, 10])
            assert np.all(p["starts"] >= 3) and np.all(p["starts"] + p["sizes"] <= np.array(SHAPE) - 3)
        out = apply_inner_cutout(x, p)
        mask = _box_mask(p)
        assert np.all(out[~mask] == 2.0)
        assert np.all((out[mask] >= 0) & (out[mask] < 1))
    counts = np.array(counts)
    assert counts.max() == 5 and counts.min() >= 0
    p0 = 0.05  # P(no box)
    assert abs((counts == 0).mean() - p0) < 3 * np.sqrt(p0 * (1 - p0) / 300) + 1e-9
    assert abs((counts == 5).mean() - 0.95 ** 5) < 3 * np.sqrt(0.77 * 0.23 / 300)


def test_outer_reveals_the_original_exactly_inside_its_boxes(rng):
    x = np.full(SHAPE, 2.0, dtype=np.float32)
    extra = []
    for _ in range(200):
        p = sample_outer_cutout_params(rng, SHAPE)
        extra.append(len(p["sizes"]) - 1)
        assert np.all(p["sizes"] >= [28, 28, 14]) and np.all(p["sizes"] <= [37, 37, 19])
        assert np.all(p["starts"] >= 3) and np.all(p["starts"] + p["sizes"] <= np.array(SHAPE) - 3)
        out = apply_outer_cutout(x, p)
        mask = _box_mask(p)
        assert np.array_equal(out == 2.0, mask)
        assert np.all((out[~mask] >= 0) & (out[~mask] < 1))
        assert np.array_equal(out[~mask], p["noise"][~mask])
    assert min(extra) == 0 and max(extra) == 4


def test_public_functions_2d_prob_and_errors(rng):
    x = rng.random((40, 40), dtype=np.float32)
    for fn in (inner_cutout, outer_cutout):
        assert np.array_equal(fn(x, rng=rng, prob=0.0), x)
        y = fn(x, rng=rng)
        assert y.shape == x.shape and y.dtype == np.float32 and 0 <= y.min() and y.max() < 1 + 1e-7
        with pytest.raises(ValueError, match="do not fit"):
            fn(np.zeros((6, 6, 6)), rng=rng)
    out = inner_cutout(x, rng=np.random.default_rng(1), max_boxes=2, continue_prob=1.0)
    assert (out != x).any()
    with pytest.raises(ValueError, match="max_size"):
        inner_cutout(x, rng=rng, max_size=(1,))
    with pytest.raises(ValueError, match="continue_prob"):
        outer_cutout(x, rng=rng, continue_prob=1.5)


def test_hidden_fraction_at_release_defaults_against_the_papers_quarter(rng):
    """The paper keeps cut-outs under 1/4 of the sub-volume; the release's sizes do that for the
    inner cutout (at most 5 boxes of (dim//3)^3) but the outer cutout hides most of the cube."""
    inner = [_box_mask(sample_inner_cutout_params(rng, SHAPE)).mean() for _ in range(500)]
    outer = [1 - _box_mask(sample_outer_cutout_params(rng, SHAPE)).mean() for _ in range(500)]
    assert max(inner) < 0.25 and np.mean(inner) > 0.02
    assert min(outer) > 0.5 and np.median(outer) > 0.6
