import dataclasses

import numpy as np
import pytest

from models_genesis.transformations.outer_cutout import sample_outer_cutout_params
from models_genesis.transformations.unified import (
    COMBINATIONS, SCHEMES, TransformConfig, apply_combination, combination_name, genesis_transform,
)

SMALL = TransformConfig(local_windows=50, local_max_window=(1, 4), margin=1)  # few windows: the statistics below need many draws


def _bound(p, n):
    return 4 * np.sqrt(p * (1 - p) / n) + 1e-9


def test_frequencies_match_release_probabilities(rng):
    x = rng.random((16, 16, 8), dtype=np.float32)
    n = 1500
    logs = [genesis_transform(x, rng=rng, config=SMALL, return_applied=True)[2] for _ in range(n)]
    freq = {k: np.mean([log[k] for log in logs]) for k in ("local_shuffling", "nonlinear",
                                                          "inner_cutout", "outer_cutout")}
    expected = {"local_shuffling": 0.5, "nonlinear": 0.9, "inner_cutout": 0.9 * 0.2, "outer_cutout": 0.9 * 0.8}
    for k, p in expected.items():
        assert abs(freq[k] - p) < _bound(p, n), (k, freq[k])
    assert not any(log["inner_cutout"] and log["outer_cutout"] for log in logs)
    no_flip = np.mean([len(log["flip_axes"]) == 0 for log in logs])
    # No draw (0.6), or only draws of the release's channel axis, a third of the draws.
    p_none = sum(0.4 ** k * (0.6 if k < 3 else 1.0) / 3 ** k for k in range(4))
    assert abs(no_flip - p_none) < _bound(p_none, n)
    assert not any(2 in log["flip_axes"] for log in logs)  # depth is never flipped


def test_identity_scheme_and_flip_alignment(rng):
    x = rng.random((12, 10, 8), dtype=np.float32)
    for _ in range(20):
        a, b, log = genesis_transform(x, rng=rng, scheme="identity", return_applied=True)
        assert np.array_equal(a, b) and a is not b
    a, b = genesis_transform(x, rng=rng, config=TransformConfig.for_scheme("identity", flip_prob=0.0))
    assert np.array_equal(a, x) and np.array_equal(b, x)
    cfg = dataclasses.replace(SMALL, flip_prob=1.0, flip_choices=(0, 1, 2), local_prob=0.0,
                              nonlinear_prob=1.0, paint_prob=0.0)
    for _ in range(10):  # the non-linear map is voxel-wise: a flipped input matches a flipped target
        a, b, log = genesis_transform(x, rng=rng, config=cfg, return_applied=True)
        assert len(log["flip_axes"]) == 3
        order = np.argsort(b, axis=None)
        assert np.all(np.diff(a.ravel()[order]) >= -1e-6) or np.all(np.diff(a.ravel()[order]) <= 1e-6)


def test_single_transformation_schemes(rng):
    x = rng.random((16, 16, 8), dtype=np.float32)
    for name in SCHEMES[2:]:
        _, _, log = genesis_transform(x, rng=rng, scheme=name, return_applied=True,
                                      config=TransformConfig.for_scheme(name, local_windows=20, margin=1))
        assert [k for k in ("nonlinear", "local_shuffling", "outer_cutout", "inner_cutout") if log[k]] == [name]
    with pytest.raises(ValueError, match="genesis"):
        TransformConfig.for_scheme("rubik")


def test_same_seed_same_pair_any_shape(rng):
    for shape in ((16, 16, 8), (32, 32), (16, 16, 8, 1)):
        x = rng.random(shape, dtype=np.float32)
        a = genesis_transform(x, rng=np.random.default_rng(4), config=SMALL)
        b = genesis_transform(x, rng=np.random.default_rng(4), config=SMALL)
        assert a[0].shape == shape and a[0].dtype == np.float32
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_combinations(rng):
    assert len(COMBINATIONS) == len(set(COMBINATIONS)) == 12 and () in COMBINATIONS
    assert not any({"inner_cutout", "outer_cutout"} <= set(c) for c in COMBINATIONS)
    x = rng.random((16, 16, 8), dtype=np.float32)
    for c in COMBINATIONS:
        a = apply_combination(x, combination_name(c), rng=np.random.default_rng(1), config=SMALL)
        b = apply_combination(x, c, rng=np.random.default_rng(1), config=SMALL)
        assert np.array_equal(a, b) and (np.array_equal(a, x) == (c == ()))
    with pytest.raises(ValueError, match="COMBINATIONS"):
        apply_combination(x, ("inner_cutout", "outer_cutout"), rng=rng)


def test_bad_config_and_input(rng):
    with pytest.raises(ValueError, match="paint_prob"):
        TransformConfig(paint_prob=1.5)
    with pytest.raises(ValueError, match="local_windows"):
        TransformConfig(local_windows=-1)
    with pytest.raises(TypeError, match="config"):
        genesis_transform(np.zeros((8, 8, 8)), rng=rng, config={"flip_prob": 0})
    with pytest.raises(ValueError, match="x.shape"):
        genesis_transform(np.zeros((2, 8, 8, 8)), rng=rng)
    with pytest.raises(ValueError, match="min=-1"):
        genesis_transform(-np.ones((8, 8, 8)), rng=rng)


def test_presets_release_and_paper_text():
    release, text = TransformConfig.preset("release"), TransformConfig.preset("paper_text")
    assert release == TransformConfig()
    differ = {f.name for f in dataclasses.fields(TransformConfig)
              if getattr(release, f.name) != getattr(text, f.name)}
    assert differ == {"local_windows", "outer_min_cut", "outer_max_cut", "margin"}
    assert (release.local_windows, text.local_windows) == (10000, 1000)
    # the text's outer cutout hides under 1/4 of a 64x64x32 cube; the release's more than half
    for config, low, high in ((text, 0.0, 0.25), (release, 0.5, 0.95)):
        rng = np.random.default_rng(0)
        for _ in range(20):
            p = sample_outer_cutout_params(rng, (64, 64, 32), min_cut=config.outer_min_cut,
                                           max_cut=config.outer_max_cut, margin=config.margin)
            shown = np.zeros((64, 64, 32), bool)
            for start, size in zip(p["starts"], p["sizes"]):
                shown[tuple(slice(a, a + b) for a, b in zip(start, size))] = True
            assert low < 1 - shown.mean() < high
    with pytest.raises(ValueError, match="Valid presets"):
        TransformConfig.preset("paper")


def test_counts_are_bounded_at_a_hundred_times_the_release():
    """A count far above the release's (e.g. 1e12 shuffling windows) is refused before any pair
    is made, not found by the memory it would need; 100x the release's count is accepted."""
    assert TransformConfig(local_windows=100 * 10_000).local_windows == 1_000_000
    with pytest.raises(ValueError, match=r"local_windows.*\[0, 1000000\]"):
        TransformConfig(local_windows=1_000_001)
    with pytest.raises(ValueError, match="inner_max_boxes"):
        TransformConfig(inner_max_boxes=10**12)
