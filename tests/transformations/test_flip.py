import itertools

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
    draws = [sample_flip_params(rng, (4, 4, 4), choices=(0, 1, 2)) for _ in range(2000)]
    lengths = np.array([len(d) for d in draws])
    assert lengths.max() == 3 and abs((lengths == 0).mean() - 0.6) < 3 * np.sqrt(0.24 / 2000)
    assert set(a for d in draws for a in d) == {0, 1, 2}
    x = np.arange(8, dtype=np.float32).reshape(2, 2, 2) / 8
    assert np.array_equal(apply_flip(x, (0, 0)), x)
    assert np.array_equal(apply_flip(x, (1,)), x[:, ::-1])


def _release_net_flips(prob=0.4, max_flips=3):
    """Exact distribution of the net flipped axes of the release: each draw picks the channel
    (no-op), rows or cols of a (1, rows, cols, deps) sample with probability 1/3."""
    out = {}
    for k in range(max_flips + 1):
        p_k = prob ** k * (1 - prob if k < max_flips else 1.0)
        for seq in itertools.product((None, 0, 1), repeat=k):
            net = frozenset(a for a in (0, 1) if seq.count(a) % 2)
            out[net] = out.get(net, 0.0) + p_k / 3 ** k
    return out


def test_default_flip_matches_the_release_frequencies(rng):
    """A third of the release's draws flip the channel axis (nothing), depth is never flipped."""
    x = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) / 120
    candidates = {frozenset(s): apply_flip(x, s) for r in range(4)
                  for s in itertools.combinations((0, 1, 2), r)}
    n, counts = 4000, {}
    for _ in range(n):
        xf, yf = flip(x, x, rng=rng)
        assert np.array_equal(xf, yf)
        net = next(k for k, v in candidates.items() if np.array_equal(v, xf))
        counts[net] = counts.get(net, 0) + 1
    expected = _release_net_flips()
    assert abs(expected[frozenset()] - 0.7286) < 1e-4  # the target equals the input in ~72.9%
    assert abs(expected[frozenset({0})] + expected[frozenset({0, 1})] - 0.1535) < 1e-4  # rows: ~15%
    assert not any(2 in net for net in counts)  # depth: 0%
    for net, p in expected.items():
        assert abs(counts.get(net, 0) / n - p) < 4 * np.sqrt(p * (1 - p) / n), (net, counts)
    rows = sum(c for net, c in counts.items() if 0 in net) / n
    cols = sum(c for net, c in counts.items() if 1 in net) / n
    assert abs(rows - 0.1535) < 0.03 and abs(cols - 0.1535) < 0.03


def test_flip_choices_can_include_depth(rng):
    x = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) / 120
    axes = [a for _ in range(500) for a in sample_flip_params(rng, x.shape, choices=(0, 1, 2))]
    assert set(axes) == {0, 1, 2}
    with pytest.raises(ValueError, match="choices"):
        sample_flip_params(rng, (4, 4), choices=(0, 2))


def test_flip_errors(rng):
    with pytest.raises(ValueError, match="same shape"):
        flip(np.zeros((4, 4)), np.zeros((4, 5)), rng=rng)
